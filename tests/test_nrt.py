"""Scheduled (NRT) runs: incremental, idempotent, and never crashed by one bad input.

Runs go through ``component.cli.main`` in this process (exit code, printed summary and
``run-summary.json`` as a scheduler sees them) on tiny synthetic products: 192 px at 10 m,
processed at 60 m (32 x 32 px). The model is the shipped one, loaded once
(``support.nrt.nrt_models``); every run still estimates and corrects for real.
Multi-item runs process their items in this process (``support.nrt.items_in_process``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from component import cli
from component.core.settings import LOCK_TIMEOUT_ENV, Settings
from component.io import catalog
from support.nrt import (
    catalog_problems,
    items_in_process,  # noqa: F401 (fixture)
    linked_ids,
    model_version,
    models_dir,  # noqa: F401 (fixture)
    nrt_models,  # noqa: F401 (fixture)
)

SIZE_10M = 192
pytestmark = pytest.mark.usefixtures("nrt_models", "items_in_process")


def write_item(folder: Path, item: dict[str, Any]) -> str:
    path = folder / f"{item['id']}.json"
    path.write_text(json.dumps(item))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], output: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``python -m component run`` in-process: exit code and the summary printed on stdout."""
    capsys.readouterr()
    code = cli.main(["run", "--device", "cpu", "--output", str(output), *args])
    out = capsys.readouterr().out
    summary = json.loads(out) if out.strip() else {}
    return code, summary


def by_input(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["input_id"]: entry for entry in summary["items"]}


def test_runs_are_incremental_and_redo_only_what_fails_its_checksums(
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = l1c_product(size_10m=SIZE_10M, seed=1)
    second = l1c_product(size_10m=SIZE_10M, seed=2, relative_orbit=8)
    a, b = write_item(tmp_path, first), write_item(tmp_path, second)
    output = tmp_path / "out"
    both = ("--item", a, "--item", b)

    code, summary = run(capsys, output, "--item", a)
    assert code == 0 and summary["found"] == 1 and len(summary["processed"]) == 1
    out_a = summary["processed"][0]
    catalog_mtime = (output / "catalog.json").stat().st_mtime_ns

    # Next scheduled run: the window now holds a new item too.
    code, summary = run(capsys, output, *both)
    assert code == 0
    assert summary["found"] == 2
    assert summary["skipped"] == [{"id": out_a, "reason": "already published, checksums verified"}]
    assert len(summary["processed"]) == 1
    out_b = summary["processed"][0]
    assert json.loads((output / "run-summary.json").read_text()) == summary
    assert linked_ids(output) == sorted([out_a, out_b])
    assert catalog_problems(output) == []

    # Nothing new: nothing is written, not even the catalog.
    catalog_mtime = (output / "catalog.json").stat().st_mtime_ns
    code, summary = run(capsys, output, *both)
    assert code == 0 and summary["processed"] == [] and len(summary["skipped"]) == 2
    assert (output / "catalog.json").stat().st_mtime_ns == catalog_mtime

    # A product whose file was damaged after publishing fails verification and is redone.
    cog = next((output / out_a).glob("*.tif"))
    data = bytearray(cog.read_bytes())
    data[-1] ^= 0xFF
    cog.write_bytes(bytes(data))
    assert catalog.verify_product(output, out_a) is not None
    code, summary = run(capsys, output, *both)
    assert code == 0 and summary["processed"] == [out_a]
    assert [s["id"] for s in summary["skipped"]] == [out_b]
    assert catalog.verify_product(output, out_a) is None
    assert catalog_problems(output) == []
    assert not (output / catalog.STAGING).exists() or not any((output / catalog.STAGING).iterdir())


def test_a_new_model_version_publishes_beside_the_old_products(
    models_dir: Path,  # noqa: F811
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = write_item(tmp_path, l1c_product(size_10m=SIZE_10M, seed=3))
    output = tmp_path / "out"
    code, old = run(capsys, output, "--item", a)
    assert code == 0
    newer = model_version(models_dir, tmp_path / "models-1.1", "1.1.0")
    monkeypatch.setenv("COMPONENT_MODELS_DIR", str(newer))
    code, new = run(capsys, output, "--item", a)
    assert code == 0 and new["skipped"] == []
    shipped = json.loads((models_dir / "model_card.json").read_text())["version"]
    assert new["processed"][0].endswith("-1.1.0")
    assert old["processed"][0].endswith(f"-{shipped}")
    assert linked_ids(output) == sorted(old["processed"] + new["processed"])
    assert catalog_problems(output) == []


def test_bad_inputs_are_skipped_or_failed_with_reasons_and_the_others_go_on(
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = l1c_product(size_10m=SIZE_10M, seed=4, nodata_fraction=1.0, relative_orbit=1)
    saturated = l1c_product(size_10m=SIZE_10M, seed=5, saturated_fraction=0.2, relative_orbit=2)
    corrupt = l1c_product(size_10m=SIZE_10M, seed=6, relative_orbit=3)
    healthy = l1c_product(size_10m=SIZE_10M, seed=7, relative_orbit=4)
    band = Path(corrupt["assets"]["B03"]["href"])
    band.write_bytes(band.read_bytes()[:200] + b"\0" * 500)  # truncated codestream
    items = [write_item(tmp_path, i) for i in (empty, saturated, corrupt, healthy)]
    output = tmp_path / "out"

    args = [arg for i in items for arg in ("--item", i)]
    code, summary = run(capsys, output, *args)

    assert code == 10  # partial failure
    results = by_input(summary)
    assert results[empty["id"]]["status"] == "skipped"
    assert "no valid pixel" in results[empty["id"]]["reason"]
    assert results[corrupt["id"]]["status"] == "failed"
    assert results[corrupt["id"]]["exit_code"] == 5
    assert "B03" in results[corrupt["id"]]["reason"]
    assert summary["failed"] == [{"id": corrupt["id"], "reason": results[corrupt["id"]]["reason"]}]
    assert results[healthy["id"]]["status"] == "processed"
    assert results[saturated["id"]]["status"] == "processed"
    # Saturated pixels are masked: nodata in the output where any input band was 65535.
    out_dir = output / results[saturated["id"]]["output_id"]
    with rasterio.open(next(p for p in out_dir.glob("*.tif") if "B0" in p.name)) as src:
        values = src.read(1)
    assert src.nodata == 0
    assert 0 < np.count_nonzero(values == 0) < values.size
    assert sorted(linked_ids(output)) == sorted(
        results[i["id"]]["output_id"] for i in (saturated, healthy)
    )
    assert catalog_problems(output) == []
    assert not any((output / catalog.STAGING).glob("*"))


def test_an_item_partly_outside_the_bbox_is_clipped(
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    item = l1c_product(size_10m=SIZE_10M, seed=8)
    west, south, east, north = item["bbox"]
    # The western half of the product, and as much again outside it to the west and north.
    bbox = (west - 0.05, (south + north) / 2, (west + east) / 2, north + 0.05)
    code, summary = run(
        capsys,
        tmp_path / "out",
        "--item",
        write_item(tmp_path, item),
        "--bbox",
        ",".join(f"{v:.6f}" for v in bbox),
    )
    assert code == 0 and len(summary["processed"]) == 1
    out = json.loads(Path(summary["items"][0]["item"]).read_text())
    shapes = {tuple(a["proj:shape"]) for a in out["assets"].values() if "proj:shape" in a}
    full = SIZE_10M * 10 // 60
    assert shapes and all(h < full and w < full for h, w in shapes)
    assert out["bbox"][0] >= west - 1e-3 and out["bbox"][3] <= north + 1e-3


def test_lock_wait_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second holder waits at most COMPONENT_LOCK_TIMEOUT_S, then fails with exit code 9; a
    malformed value is refused with exit code 9 when the settings are read."""
    timeout = Settings.from_environ({LOCK_TIMEOUT_ENV: "0.3"}).lock_timeout_s
    assert timeout == 0.3
    # flock locks belong to the open file description: a second open() competes.
    with (
        catalog.locked(tmp_path, timeout),
        pytest.raises(catalog.OutputError) as raised,
        catalog.locked(tmp_path, timeout),
    ):
        pass
    assert raised.value.exit_code == 9
    assert "another run is writing" in str(raised.value)
    with catalog.locked(tmp_path, timeout):  # released: free again
        pass
    with pytest.raises(catalog.OutputError, match=LOCK_TIMEOUT_ENV) as raised:
        Settings.from_environ({LOCK_TIMEOUT_ENV: "soon"})
    assert raised.value.exit_code == 9


def test_fallbacks_are_reported_in_the_summary_and_the_lineage(
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No B10 and no geometry are processed, each fallback said in the summary and the Item."""
    no_b10 = l1c_product(size_10m=SIZE_10M, seed=9, relative_orbit=5)
    no_b10["assets"].pop("B10")
    no_angles = l1c_product(size_10m=SIZE_10M, seed=10, relative_orbit=6, angles=False)
    assert "granule_metadata" not in no_angles["assets"]
    assert not any(key.startswith("view:") for key in no_angles["properties"])
    items = [write_item(tmp_path, i) for i in (no_b10, no_angles)]
    code, summary = run(capsys, tmp_path / "out", "--item", items[0], "--item", items[1])
    assert code == 0, summary
    results = by_input(summary)
    cases = {no_b10["id"]: "no B10", no_angles["id"]: "no sun/view geometry"}
    for input_id, expected in cases.items():
        result = results[input_id]
        assert result["status"] == "processed"
        assert any(expected in note for note in result["notes"]), result["notes"]
        item = json.loads(Path(result["item"]).read_text())
        assert expected in item["properties"]["processing:lineage"]
    with_b10 = json.loads(Path(results[no_b10["id"]]["item"]).read_text())
    assert "MTD_TL.xml" in with_b10["properties"]["processing:lineage"]
    assert with_b10["properties"]["view:incidence_angle"] > 0
    unknown = json.loads(Path(results[no_angles["id"]]["item"]).read_text())
    assert "Geometry: unknown" in unknown["properties"]["processing:lineage"]
    assert "view:incidence_angle" not in unknown["properties"]
