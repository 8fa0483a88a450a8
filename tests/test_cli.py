"""The CLI's failure contract, one subprocess per bad input, and secrets never written out.

For each bad input ``python -m component run`` must print exactly one line starting with
``error:`` on stderr (log lines may precede it; no traceback), exit with the code of the
failure's class, and leave no product and no half-written file in ``--output``.

What may remain in ``--output`` after a failed run, precisely:

* failures found before any work starts (bad parameters, a failed search, an unreadable item
  file, an unreachable API) leave nothing: the folder is not even created;
* failures of an item (a missing band, a missing or corrupt asset, missing S3 keys, an
  atmosphere table missing or tampered with) happen under the output lock and leave only
  ``catalog.json`` linking no item, ``run-summary.json`` listing the failure, an empty ``.lock``
  file and an empty ``.staging`` folder.

The subprocesses of a table run concurrently (they are mostly start-up time).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from support.nrt import model_version, models_dir  # noqa: F401 (fixture)
from support.s3 import S3Server
from support.stac_api import start_stac_api
from support.synthetic import cdse_s3_base, make_l1c_product

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "Zq7-distinctive-SECRET-4f1e9c"
ALLOWED_AFTER_ITEM_FAILURE = {"catalog.json", "run-summary.json", ".lock", ".staging"}


@dataclass
class Case:
    """One CLI invocation and, once finished, what it did."""

    name: str
    args: list[str]
    expected_code: int
    nothing_written: bool
    env: dict[str, str] = field(default_factory=dict)
    output: Path = Path()
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


def _clean_env(models: Path) -> dict[str, str]:
    """The parent's environment without any AWS setting, plus the test model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["COMPONENT_MODELS_DIR"] = str(models)
    # Concurrent runs share few cores: one compute thread each avoids oversubscription.
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GDAL_NUM_THREADS": "1"}
    return env


def _run_all(cases: list[Case], root: Path, models: Path) -> None:
    """Start every case at once, then wait for all."""
    processes = []
    for case in cases:
        case.output = root / case.name / "out"
        case.output.parent.mkdir(parents=True)
        command = [sys.executable, "-m", "component", "run", "--device", "cpu"]
        command += ["--output", str(case.output), *case.args]
        env = {**_clean_env(models), **case.env}
        processes.append(
            subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=REPO_ROOT,
            )
        )
    for case, process in zip(cases, processes, strict=True):
        case.stdout, case.stderr = process.communicate(timeout=300)
        case.returncode = process.returncode


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lut_name(models: Path) -> str:
    card = json.loads((models / "model_card.json").read_text())
    return str(card["atmosphere"]["lut"]["file"])


def _models_copy(models: Path, folder: Path) -> Path:
    """A copy of the models folder (card and the files it names), to damage on purpose."""
    return model_version(
        models, folder, json.loads((models / "model_card.json").read_text())["version"]
    )


def _write_item(path: Path, item: dict[str, Any]) -> str:
    path.write_text(json.dumps(item))
    return str(path)


@pytest.fixture(scope="module")
def table(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,  # noqa: F811
) -> Iterator[dict[str, Case]]:
    """Run the whole bad-input table once, concurrently."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    data.mkdir()
    good = make_l1c_product(data / "good", size_10m=60)
    api = start_stac_api([good])
    bbox_elsewhere = "-60,-30,-59,-29"
    malformed = data / "malformed.json"
    malformed.write_text('{"type": "Feature", "id": "x", "properties": {')
    no_b04 = make_l1c_product(data / "no_b04", size_10m=60, bands=("B02", "B03"))
    no_b05 = json.loads(json.dumps(good))
    del no_b05["assets"]["B05"]
    tampered = _models_copy(models_dir, root / "models-tampered")
    lut = tampered / _lut_name(tampered)
    lut.write_bytes(lut.read_bytes()[:-1] + bytes([lut.read_bytes()[-1] ^ 0xFF]))
    lut_missing = _models_copy(models_dir, root / "models-no-lut")
    (lut_missing / _lut_name(lut_missing)).unlink()
    good_path = _write_item(data / "good.json", good)
    missing = json.loads(json.dumps(good))
    missing["assets"]["B03"]["href"] = str(data / "absent" / "B03.jp2")
    corrupt_file = data / "corrupt.jp2"
    corrupt_file.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"not a codestream" * 64)
    corrupt = json.loads(json.dumps(good))
    corrupt["assets"]["B04"]["href"] = str(corrupt_file)
    on_s3 = json.loads(json.dumps(good))
    for asset in on_s3["assets"].values():
        asset["href"] = (
            "s3://eodata/Sentinel-2/MSI/L1C/2024/01/16/x.SAFE/" + Path(asset["href"]).name
        )
    cases = [
        Case("no_results", ["--stac-url", api.url, "--bbox", bbox_elsewhere], 3, True),
        Case("malformed_item", ["--item", str(malformed)], 4, True),
        Case("missing_band", ["--item", _write_item(data / "no_b04.json", no_b04)], 4, False),
        Case("missing_b05", ["--item", _write_item(data / "no_b05.json", no_b05)], 4, False),
        Case(
            "tampered_lut",
            ["--item", good_path],
            8,
            False,
            {"COMPONENT_MODELS_DIR": str(tampered)},
        ),
        Case(
            "missing_lut",
            ["--item", good_path],
            8,
            False,
            {"COMPONENT_MODELS_DIR": str(lut_missing)},
        ),
        Case("missing_asset", ["--item", _write_item(data / "missing.json", missing)], 5, False),
        Case("corrupt_asset", ["--item", _write_item(data / "corrupt.json", corrupt)], 5, False),
        Case("bad_bbox", ["--bbox", "1,2,3"], 2, True),
        Case("bad_datetime", ["--datetime", "2024-02-30/2024-03-01"], 2, True),
        Case("bad_resolution", ["--resolution", "30"], 2, True),
        Case("bad_engine", ["--engine", "tensorrt"], 2, True),
        Case(
            "super_resolve_at_60m",
            ["--item", good_path, "--super-resolve", "--resolution", "60"],
            2,
            True,
        ),
        Case("bad_super_resolve", ["--super-resolve", "maybe", "--resolution", "10"], 2, True),
        Case(
            "unreachable_api",
            ["--stac-url", f"http://127.0.0.1:{_closed_port()}/", "--bbox", "1,43,2,44"],
            6,
            True,
            {"COMPONENT_STAC_RETRIES": "1", "COMPONENT_STAC_BACKOFF_MAX_S": "0.5"},
        ),
        Case("s3_without_keys", ["--item", _write_item(data / "s3.json", on_s3)], 7, False),
    ]
    try:
        _run_all(cases, root, models_dir)
    finally:
        api.stop()
    yield {case.name: case for case in cases}


CASES = [
    "no_results",
    "malformed_item",
    "missing_band",
    "missing_b05",
    "tampered_lut",
    "missing_lut",
    "missing_asset",
    "corrupt_asset",
    "bad_bbox",
    "bad_datetime",
    "bad_resolution",
    "bad_engine",
    "super_resolve_at_60m",
    "bad_super_resolve",
    "unreachable_api",
    "s3_without_keys",
]


def assert_no_product(case: Case) -> None:
    """The output holds no product and no partial file (see the module docstring)."""
    if case.nothing_written:
        assert not case.output.exists(), sorted(p.name for p in case.output.iterdir())
        return
    assert case.output.is_dir()
    entries = {p.name for p in case.output.iterdir()}
    assert entries <= ALLOWED_AFTER_ITEM_FAILURE, entries
    files = sorted(p.relative_to(case.output).as_posix() for p in case.output.rglob("*"))
    assert set(files) <= ALLOWED_AFTER_ITEM_FAILURE, files
    assert (case.output / ".lock").stat().st_size == 0
    staging = case.output / ".staging"
    assert not staging.exists() or not any(staging.iterdir())
    catalog = json.loads((case.output / "catalog.json").read_text())
    assert [link for link in catalog["links"] if link["rel"] == "item"] == []
    summary = json.loads((case.output / "run-summary.json").read_text())
    assert summary["processed"] == [] and len(summary["failed"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_bad_input(table: dict[str, Case], name: str) -> None:
    """One 'error:' line, no traceback, the failure's exit code, no product written."""
    case = table[name]
    assert "Traceback" not in case.stderr, case.stderr
    errors = [line for line in case.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, case.stderr
    assert case.stderr.rstrip("\n").splitlines()[-1] == errors[0], "the error line comes last"
    assert case.returncode == case.expected_code, case.stderr
    assert_no_product(case)


@pytest.mark.slow
def test_error_lines_name_the_problem(table: dict[str, Case]) -> None:
    """Messages say what is wrong: the band, the option, the credentials to set."""

    def line(name: str) -> str:
        return next(x for x in table[name].stderr.splitlines() if x.startswith("error:"))

    assert "B04" in line("missing_band")
    assert "B05" in line("missing_b05") and "B04" not in line("missing_b05")
    assert "atmosphere table" in line("tampered_lut") and "sha256" in line("tampered_lut")
    assert "atmosphere table" in line("missing_lut") and "not found" in line("missing_lut")
    assert "B03" in line("missing_asset")
    assert "B04" in line("corrupt_asset")
    assert "--bbox" in line("bad_bbox")
    assert "--datetime" in line("bad_datetime")
    assert "--resolution" in line("bad_resolution")
    assert "--engine" in line("bad_engine")
    assert "--super-resolve needs --resolution 10" in line("super_resolve_at_60m")
    assert "--super-resolve" in line("bad_super_resolve")
    assert "AWS_SECRET_ACCESS_KEY" in line("s3_without_keys")
    assert "STAC API" in line("unreachable_api")


def test_a_missing_dem_file_is_refused_before_any_work(tmp_path: Path) -> None:
    """``--dem`` naming a local file that does not exist: exit 2, one line naming it."""
    from component import cli

    assert cli.main(["run", "--dem", str(tmp_path / "none.tif"), "--output", "unused"]) == 2


def test_a_bad_elevation_source_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--elevation`` unknown, or beside ``--dem``: exit 2; a Copernicus DEM source without
    S3 keys: exit 7, one line that names the keys."""
    from component import cli

    assert cli.main(["run", "--elevation", "srtm", "--output", "unused"]) == 2
    both = ["run", "--dem", "https://example.org/dem.tif", "--elevation", "offline"]
    assert cli.main([*both, "--output", "unused"]) == 2
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    assert cli.main(["run", "--elevation", "copernicus-30", "--output", "unused"]) == 7
    assert "AWS_ACCESS_KEY_ID" in capsys.readouterr().err


def test_negative_bbox_value_is_parsed() -> None:
    """``--bbox -60,-30,-59,-29`` (a value starting with '-') reaches the bbox parser."""
    from component import cli

    bad = cli.main(["run", "--bbox", "-60,-30,-59", "--output", "unused"])
    assert bad == 2
    good_bbox_bad_resolution = cli.main(
        ["run", "--bbox", "-60,-30,-59,-29", "--resolution", "30", "--output", "unused"]
    )
    assert good_bbox_bad_resolution == 2


@pytest.mark.slow
def test_secret_never_leaks(
    s3_server: S3Server,
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """A distinctive S3 secret (env and flag) appears in no stream and no output file.

    Checked on a successful S3 run and on a run that fails reading an S3 asset.
    """
    date = datetime(2024, 3, 9, 10, 53, 29, tzinfo=timezone.utc)
    root = tmp_path / "l1c"
    root.mkdir()
    item = make_l1c_product(root, size_10m=60, date=date, href_base=cdse_s3_base(date))
    s3_server.upload_tree(root, cdse_s3_base(date).removeprefix("s3://eodata/"))
    broken = json.loads(json.dumps(item))
    broken["assets"]["B03"]["href"] = broken["assets"]["B03"]["href"].replace("B03", "B3X")
    env = s3_server.gdal_env() | {"AWS_SECRET_ACCESS_KEY": SECRET}
    secret_flags = ["--s3-access-key-id", "test-access-key", "--s3-secret-access-key", SECRET]
    cases = [
        Case(
            "ok", ["--item", _write_item(tmp_path / "ok.json", item), *secret_flags], 0, False, env
        ),
        Case(
            "fails",
            ["--item", _write_item(tmp_path / "bad.json", broken), *secret_flags],
            5,
            False,
            env,
        ),
    ]
    _run_all(cases, tmp_path / "runs", models_dir)
    for case in cases:
        assert case.returncode == case.expected_code, case.stderr
        assert SECRET not in case.stdout and SECRET not in case.stderr
        files = [p for p in case.output.rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert SECRET.encode() not in path.read_bytes(), path
    assert len(json.loads(cases[0].stdout)["processed"]) == 1
