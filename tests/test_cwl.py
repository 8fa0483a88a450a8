"""The OGC EO Application Package: ``app-package.cwl`` is valid CWL, and a run of it (without
a container, on this interpreter) turns a STAC catalog of the sample into a valid L2A catalog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from component.sample import item_path as sample_item_path
from support.nrt import models_dir  # noqa: F401 (fixture)
from support.validation import assert_valid_stac

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "app-package.cwl"

pytest.importorskip("cwltool")
CWLTOOL = Path(sys.executable).with_name("cwltool")


def _cwltool(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT) -> str:
    command = [str(CWLTOOL) if CWLTOOL.exists() else "cwltool", *args]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_package_validates() -> None:
    """One Workflow and one CommandLineTool with a DockerRequirement; Directory in and out."""
    _cwltool("--validate", str(PACKAGE))
    text = PACKAGE.read_text()
    assert "class: Workflow" in text and "class: CommandLineTool" in text
    assert "DockerRequirement" in text and "type: Directory" in text


def test_switches_reach_the_command_line() -> None:
    """The workflow's boolean inputs (cirrus_correction, super_resolve) default to false and
    reach the tool's flags of the same name through the step."""
    import yaml

    graph = {node["id"]: node for node in yaml.safe_load(PACKAGE.read_text())["$graph"]}
    workflow, tool = graph["s2-l1c2l2a"], graph["correct"]
    for name, flag in (
        ("cirrus_correction", "--cirrus-correction"),
        ("super_resolve", "--super-resolve"),
    ):
        assert workflow["inputs"][name]["type"] == "boolean?"
        assert workflow["inputs"][name]["default"] is False
        assert workflow["steps"]["correct"]["in"][name] == name
        assert tool["inputs"][name] == {"type": "boolean?", "inputBinding": {"prefix": flag}}
    assert "resolution 10" in workflow["inputs"]["super_resolve"]["doc"]
    # the elevation source: an enum of the CLI's choices, auto by default, to --elevation
    from component.core.settings import ELEVATION_SOURCES

    assert workflow["inputs"]["elevation"]["default"] == "auto"
    for node in (workflow["inputs"]["elevation"], tool["inputs"]["elevation"]):
        assert node["type"][1]["symbols"] == list(ELEVATION_SOURCES)
    assert workflow["steps"]["correct"]["in"]["elevation"] == "elevation"
    assert tool["inputs"]["elevation"]["inputBinding"] == {"prefix": "--elevation"}


def _l1c_catalog(folder: Path) -> Path:
    """A static catalog linking a copy of the embedded sample (item and JPEG 2000 bands)."""
    shutil.copytree(
        sample_item_path().parent,
        folder / "sample",
        ignore=shutil.ignore_patterns("*.py", "__pycache__"),
    )
    catalog = {
        "type": "Catalog",
        "stac_version": "1.1.0",
        "id": "l1c",
        "description": "L1C input",
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "item", "href": "./sample/item.json", "type": "application/geo+json"},
        ],
    }
    (folder / "catalog.json").write_text(json.dumps(catalog))
    return folder


@pytest.mark.slow
def test_package_runs_on_the_sample(tmp_path: Path, models_dir: Path) -> None:  # noqa: F811
    """``cwltool --no-container``: the output Directory holds a valid catalog.json linking one
    valid L2A Item with geometry, bbox and datetime."""
    l1c = _l1c_catalog(tmp_path / "l1c")
    (tmp_path / "job.json").write_text(
        json.dumps({"l1c": {"class": "Directory", "path": str(l1c)}})
    )
    env = {
        **os.environ,
        "COMPONENT_MODELS_DIR": str(models_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    out = tmp_path / "out"
    stdout = _cwltool(
        "--no-container",
        "--preserve-entire-environment",
        "--outdir",
        str(out),
        f"{PACKAGE}#s2-l1c2l2a",
        str(tmp_path / "job.json"),
        env=env,
        cwd=tmp_path,
    )
    l2a = Path(json.loads(stdout)["l2a"]["path"])
    catalog = json.loads((l2a / "catalog.json").read_text())
    assert_valid_stac(catalog)
    items = [link["href"] for link in catalog["links"] if link["rel"] == "item"]
    assert len(items) == 1
    item = json.loads((l2a / items[0]).read_text())
    assert_valid_stac(item)
    assert item["geometry"] and item["bbox"] and item["properties"]["datetime"]
    assert "B04_60m" in item["assets"] and (l2a / items[0]).parent.joinpath("B04_60m.tif").is_file()


def test_catalog_mode_errors(tmp_path: Path, models_dir: Path) -> None:  # noqa: F811
    """``--catalog``: no catalog.json is a bad parameter (2), a catalog without items found
    nothing (3); one line each."""
    from support.nrt import component_env, run_cli

    env = component_env(models_dir)
    done = run_cli(["--catalog", str(tmp_path / "absent"), "--output", str(tmp_path / "o")], env)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: --catalog")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "catalog.json").write_text(
        json.dumps({"type": "Catalog", "id": "x", "stac_version": "1.1.0", "links": []})
    )
    done = run_cli(["--catalog", str(empty), "--output", str(tmp_path / "o")], env)
    assert done.returncode == 3 and done.stderr.strip().splitlines()[-1].startswith("error: ")
