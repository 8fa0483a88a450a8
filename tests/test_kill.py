"""A run killed with SIGKILL at any moment leaves a valid catalog, and the next run finishes.

Real ``python -m component run`` processes are stopped at known stages through the pause seam
(``COMPONENT_TEST_PAUSE_AT``, see ``component.io.catalog.pause_point``) and killed there with
SIGKILL: no handler, no ``finally`` runs, as when a scheduler's node dies or the OOM killer
strikes. After each kill the catalog must be valid STAC whose links resolve to whole products,
with no half-written product linked; a final ordinary run must publish the product.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from component import cli
from component.io import catalog
from support.nrt import (
    catalog_problems,
    component_env,
    kill_when_paused,
    linked_ids,
    models_dir,  # noqa: F401 (fixture)
    nrt_models,  # noqa: F401 (fixture)
    start_cli,
)

SIZE_10M = 192
# One point per kind of state a crash can leave: headers read, nothing in staging yet; COG
# drafts half-way in staging (pixels corrected, files not finished); a complete product with
# its Item in staging; the product moved into place but the catalog not updated; and the new
# catalog.json written beside the old one but not renamed over it.
KILL_AT = ("read", "correct", "describe", "publish", "catalog")


def _kill_at(stage: str, item: str, output: Path, models: Path, tmp: Path) -> None:
    marker = tmp / f"paused-{stage}"
    log = tmp / f"run-{stage}.log"
    env = component_env(
        models,
        COMPONENT_TEST_PAUSE_AT=stage,
        COMPONENT_TEST_PAUSE_MARKER=str(marker),
    )
    process = start_cli(["--item", item, "--output", str(output)], env, log)
    kill_when_paused(process, marker, log)


@pytest.mark.usefixtures("nrt_models")
def test_sigkill_at_any_stage_leaves_a_valid_catalog_and_the_next_run_completes(
    models_dir: Path,  # noqa: F811
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "out"
    items = []
    for seed in (1, 2):
        data = l1c_product(size_10m=SIZE_10M, seed=seed, relative_orbit=seed)
        path = tmp_path / f"item-{seed}.json"
        path.write_text(json.dumps(data))
        items.append(str(path))
    # A first product, published normally: the catalog a crash must not damage.
    assert cli.main(["run", "--device", "cpu", "--item", items[0], "--output", str(output)]) == 0
    first = json.loads(capsys.readouterr().out)["processed"]
    assert linked_ids(output) == first

    for stage in KILL_AT:
        _kill_at(stage, items[1], output, models_dir, tmp_path)
        assert catalog_problems(output) == [], stage
        assert linked_ids(output) == first, stage  # the old catalog, whole
        published = [p.name for p in output.iterdir() if p.is_dir() and p.name[0] != "."]
        if stage in ("read", "correct", "describe"):
            assert published == first, stage  # nothing half-written outside staging
            if stage != "read":  # the kill really interrupted a product being written
                assert list((output / catalog.STAGING).rglob("*.tif")), stage
        else:  # moved into place whole, not yet linked: the next run links it
            assert len(published) == 2, stage
            assert all(catalog.verify_product(output, name) is None for name in published)
        # A killed run leaves only what the next run clears: staging and temp files.
        leftovers = {p.name for p in output.iterdir()} - set(published)
        assert leftovers <= {"catalog.json", "run-summary.json", catalog.LOCK, catalog.STAGING} | {
            p.name for p in output.glob(".catalog.json.*.tmp")
        }, stage

    code = cli.main(["run", "--device", "cpu", "--item", items[1], "--output", str(output)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["skipped"][0]["reason"] == "already published, checksums verified"
    assert len(linked_ids(output)) == 2
    assert catalog_problems(output) == []
    assert not list(output.glob(".*.tmp"))
    assert not (output / catalog.STAGING).exists() or not any((output / catalog.STAGING).iterdir())
