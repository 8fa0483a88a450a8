"""The DeltaTwin contract (manifest.json, workflow.yml) checked with DeltaTwin's own code.

delta-core (PyPI, the library behind ``deltatwin-cli``) is the authority on what the
service accepts, how it builds the image and how it fills the command line. Its pins
clash with the project's, so it lives in its own virtual environment
(``.venv-delta``, or the interpreter named by ``DELTA_CORE_PYTHON``) and is driven
through ``tests/deltatwin/delta_check.py``. Without that environment these tests skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "deltatwin" / "delta_check.py"
MANIFEST = ROOT / "manifest.json"
WORKFLOW = ROOT / "workflow.yml"
SAMPLE_ITEM = Path("src") / "component" / "sample" / "item.json"

DELTA_PYTHON = Path(os.environ.get("DELTA_CORE_PYTHON", ROOT / ".venv-delta" / "bin" / "python"))
SETUP_HINT = "python3 -m venv .venv-delta && .venv-delta/bin/pip install delta-core==1.2.7"

pytestmark = pytest.mark.skipif(
    not DELTA_PYTHON.exists(),
    reason=f"delta-core interpreter {DELTA_PYTHON} absent; create it with: {SETUP_HINT}",
)

EXPECTED_INPUTS = {
    "item": "string",
    "stac_url": "string",
    "bbox": "string",
    "datetime": "string",
    "max_cloud_cover": "number",
    "tile": "string",
    "limit": "integer",
    "resolution": "integer",
    "dem": "string",
    "elevation": "string",
    "cirrus_correction": "boolean",
    "super_resolve": "boolean",
    "s3_access_key_id": "secret",
    "s3_secret_access_key": "secret",
}
OPTIONAL_STRINGS = ("item", "bbox", "tile", "dem")


def delta(*args: str | Path, timeout: float = 120) -> dict[str, Any]:
    """Run one delta_check.py sub-command in the delta-core interpreter; return its JSON."""
    proc = subprocess.run(
        [str(DELTA_PYTHON), str(HELPER), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"delta_check {args[0]} failed:\n{proc.stderr[-6000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    """The manifest as delta-core's schema check and parser see it."""
    return delta("validate", MANIFEST)


@pytest.fixture(scope="module")
def model(parsed: dict[str, Any]) -> dict[str, Any]:
    """The single model of the component."""
    assert len(parsed["models"]) == 1
    return next(iter(parsed["models"].values()))


def default_inputs(parsed: dict[str, Any], **overrides: Any) -> dict[str, dict[str, Any]]:
    """Inputs as the orchestrator hands them to the model: manifest defaults + user values."""
    spec: dict[str, dict[str, Any]] = {
        "s3_access_key_id": {"secret": "TESTKEYID"},
        "s3_secret_access_key": {"secret": "TESTSECRET"},
    }
    for name, inp in parsed["inputs"].items():
        if inp["type"] != "secret":
            spec[name] = {"value": inp["value"]}
    for name, value in overrides.items():
        spec[name] = value if isinstance(value, dict) else {"value": value}
    return spec


def build_command(tmp_path: Path, spec: dict[str, dict[str, Any]]) -> dict[str, str]:
    """delta-core's own placeholder substitution of the model command."""
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(spec))
    return delta("command", MANIFEST, inputs)


def test_manifest_passes_delta_core_schema_and_parser(parsed: dict[str, Any]) -> None:
    assert parsed["schema_valid"], parsed["schema_errors"]
    raw = json.loads(MANIFEST.read_text())
    assert raw["deltaVersion"] == "1.4"
    assert re.fullmatch(r"[a-z0-9-]+", parsed["name"])
    assert raw["license"]["name"] == "Apache-2.0"
    assert raw["license"]["copyrights"][0]["years"] == [2026]


def test_inputs_are_described_and_mirror_the_model_ports(
    parsed: dict[str, Any], model: dict[str, Any]
) -> None:
    inputs = parsed["inputs"]
    assert {k: v["type"] for k, v in inputs.items()} == EXPECTED_INPUTS
    assert all(v["description"] for v in inputs.values())
    # The orchestrator refuses a run when an input has no default and no user value,
    # and cannot build a default secret: secrets are required, the rest have defaults.
    for name, inp in inputs.items():
        assert (inp["value"] is None) == (inp["type"] == "secret"), name
    for name in OPTIONAL_STRINGS:
        assert inputs[name]["value"] == "", f"optional {name} must default to empty"
    assert inputs["resolution"]["value"] == 60
    assert inputs["cirrus_correction"]["value"] is False  # Sen2Cor's default
    assert inputs["elevation"]["value"] == "auto"
    assert inputs["super_resolve"]["value"] is False  # the native grids only, as CDSE's L2A
    assert isinstance(inputs["max_cloud_cover"]["value"], float)  # a JSON int is not "number"
    assert inputs["stac_url"]["value"] == "https://stac.dataspace.copernicus.eu/v1/"
    # Every port carries a prefix: an empty value then drops the flag along with it.
    assert {k: v["type"] for k, v in model["inputs"].items()} == EXPECTED_INPUTS
    assert all(v["prefix"] and v["prefix"].startswith("--") for v in model["inputs"].values())


def test_outputs_are_single_files_at_the_working_dir_root(
    parsed: dict[str, Any], model: dict[str, Any]
) -> None:
    # delta-core copies `./<glob>` flat into the run folder, then requires that the same
    # glob matches exactly one file there: a glob must be a bare file name pattern.
    assert set(model["outputs"]) == set(parsed["outputs"])
    assert all(v["type"] == "Data" for v in parsed["outputs"].values())
    globs = {k: v["glob"] for k, v in model["outputs"].items()}
    assert all(g and "/" not in g for g in globs.values()), globs
    assert globs["l2a_catalog"].endswith(".tar.gz")


def test_workflow_is_a_dag_over_existing_refs(
    parsed: dict[str, Any], model: dict[str, Any]
) -> None:
    wf = delta("workflow", MANIFEST, WORKFLOW)
    assert wf["loaded"], wf.get("error")
    assert wf["dag"]
    nodes = wf["nodes"]
    by_kind: dict[str, set[str]] = {}
    for node in nodes.values():
        by_kind.setdefault(node["kind"], set()).add(node["name"])
    assert by_kind["Input"] == set(parsed["inputs"])
    assert by_kind["Output"] == set(parsed["outputs"])
    assert by_kind["Model"] == set(parsed["models"])
    (model_node,) = (n for n in nodes.values() if n["kind"] == "Model")
    assert sorted(model_node["in_ports"]) == sorted(model["inputs"])
    assert sorted(model_node["out_ports"]) == sorted(model["outputs"])
    for node in nodes.values():
        if node["kind"] == "Output":
            assert node["in_ports"] == ["data"] and not node["out_ports"]


def _requirement_names(lines: list[str]) -> dict[str, str]:
    reqs = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.match(r"[A-Za-z0-9_.-]+", line).group().lower().replace("_", "-")
            reqs[name] = line
    return reqs


def test_generated_image_installs_what_the_command_needs(model: dict[str, Any]) -> None:
    dockerfile = delta("dockerfile", MANIFEST)["dockerfile"]
    params = model["parameters"]
    assert params["pythonVersion"] == "3.11"
    for req_file in params["pipRequirementFiles"]:
        assert (ROOT / req_file).is_file()
        assert f"-r /root/{req_file}" in dockerfile
    assert "COPY . /delta\nWORKDIR /delta" in dockerfile
    # Requirements are installed before the sources are copied, so the package runs
    # from /delta/src: the command's module must be there and importable.
    assert "ENV PYTHONPATH=/delta/src" in dockerfile
    assert params["command"].startswith("python -m component run ")
    assert (ROOT / "src" / "component" / "__main__.py").is_file()
    # The image gets the same runtime dependencies as `pip install .`.
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"])
    req_lines: list[str] = []
    for req_file in params["pipRequirementFiles"]:
        req_lines += (ROOT / req_file).read_text().splitlines()
    assert _requirement_names(req_lines) == wanted


def _tokens(command: str) -> list[str]:
    return command.split("&&", 1)[0].split()


def test_defaults_render_a_search_command(tmp_path: Path, parsed: dict[str, Any]) -> None:
    rendered = build_command(tmp_path, default_inputs(parsed))
    tokens = _tokens(rendered["command"])
    for flag in ("--item", "--bbox", "--tile", "--dem", "--cirrus-correction", "--super-resolve"):
        assert flag not in tokens, "an empty optional input (or a false switch) drops its flag"
    joined = " ".join(tokens)
    assert "--stac-url https://stac.dataspace.copernicus.eu/v1/" in joined
    assert "--datetime P1D" in joined
    assert "--max-cloud-cover 20.0" in joined
    assert "--limit 1 --resolution 60" in joined
    assert "--elevation auto" in joined
    assert "--output catalog --archive l2a_catalog.tar.gz" in joined
    assert "--s3-access-key-id TESTKEYID" in joined
    assert "TESTSECRET" not in rendered["secure_command"]
    assert "TESTKEYID" not in rendered["secure_command"]


def test_user_values_render_each_flag(tmp_path: Path, parsed: dict[str, Any]) -> None:
    spec = default_inputs(
        parsed,
        bbox="12.4,52.4,12.8,52.6",
        datetime="2024-06-01/2024-06-30",
        tile="33UUU",
        item="https://example.org/item.json",
        resolution=10,
        max_cloud_cover=35.5,
        limit=3,
        cirrus_correction=True,
        super_resolve=True,
        dem="https://example.org/dem.vrt",
        elevation="copernicus-30",
    )
    joined = " ".join(_tokens(build_command(tmp_path, spec)["command"]))
    for expected in (
        "--bbox 12.4,52.4,12.8,52.6",
        "--datetime 2024-06-01/2024-06-30",
        "--tile 33UUU",
        "--item https://example.org/item.json",
        "--resolution 10",
        "--max-cloud-cover 35.5",
        "--limit 3",
        "--cirrus-correction",
        "--super-resolve",
        "--dem https://example.org/dem.vrt",
        "--elevation copernicus-30",
    ):
        assert expected in joined


def test_band_outputs_pick_the_native_band_beside_the_sharpened_one(
    model: dict[str, Any],
) -> None:
    """A product made with super_resolve holds ``B05_20m.tif`` and ``B05_10m.tif``: each band
    output's glob matches exactly one file of it (the band on its native grid), as of a plain
    product at any resolution."""
    import fnmatch

    globs = {k: v["glob"] for k, v in model["outputs"].items()}
    bands = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    native = {"B01": 60, "B09": 60, "B02": 10, "B03": 10, "B04": 10, "B08": 10}
    sharpened = [f"{b}_10m.tif" for b in bands if native.get(b, 20) > 10]
    for resolution, extra in ((10, []), (20, []), (60, []), (10, sharpened)):
        own = {b: f"{b}_{max(resolution, native.get(b, 20))}m.tif" for b in bands}
        files = [*own.values(), *extra]
        for band in bands:
            matches = fnmatch.filter(files, globs[f"l2a_{band.lower()}"])
            assert matches == [own[band]], (resolution, band, matches)


def _copy_model_folder(dest: Path) -> Path:
    """What DeltaTwin copies to /delta: the working tree without ignored files."""
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.slow
def test_delta_core_run_produces_every_output(
    tmp_path: Path, parsed: dict[str, Any], model: dict[str, Any]
) -> None:
    """A whole run through delta-core's orchestrator on the embedded L1C sample."""
    workdir = _copy_model_folder(tmp_path / "delta")
    storage = tmp_path / "storage"
    spec = default_inputs(parsed, item=str(workdir / SAMPLE_ITEM), datetime="")
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(spec))

    # The image's ENV lines, with /delta mapped to the copy and `python` the project's.
    env = dict(os.environ)
    for key, value in model["parameters"].get("environment", {}).items():
        env[key] = str(value).replace("/delta", str(workdir))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    proc = subprocess.run(
        [str(DELTA_PYTHON), str(HELPER), "run", MANIFEST, WORKFLOW, workdir, inputs, storage],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "success", json.dumps(result, indent=1)[-8000:]

    outputs = {name: storage / rel for name, rel in result["outputs"].items()}
    assert set(outputs) == set(parsed["outputs"])
    for name, path in outputs.items():
        assert path.is_file() and path.stat().st_size > 0, name

    with tarfile.open(outputs["l2a_catalog"], "r:gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("catalog.json") for n in names), names
    # every L2A band, TCI, AOT, WVP, SCL, CLD
    assert sum(n.endswith(".tif") for n in names) == 12 + 5

    item = json.loads(outputs["l2a_item"].read_text())
    assert item["type"] == "Feature" and "MSIL2A" in item["id"]
    # The item's relative asset links resolve among the files delivered next to it.
    delivered = {p.name for p in outputs.values()}
    assert len(item["assets"]) == 18 and all(f"{k}.tif" in delivered for k in item["assets"]
                                             if k != "thumbnail")  # fmt: skip
    for key, asset in item["assets"].items():
        href = asset["href"]
        if "://" not in href and href.endswith((".tif", ".png")):
            assert href.removeprefix("./") in delivered, (key, href)
