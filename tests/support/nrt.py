"""Helpers for the run tests: the model folder, model versions, CLI subprocesses, catalog checks.

The model is the shipped one (``models/``: its card and atmosphere table, plus weights when
the card names some), built through the same ``build_scene_corrector`` a run uses; these
tests are about plumbing and do not look at the numbers. :func:`model_version` derives
another model version from it (same files, another version in the card).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC = REPO_ROOT / "src"

SHIPPED_MODELS = REPO_ROOT / "models"

__all__ = [
    "SHIPPED_MODELS",
    "SRC",
    "catalog_problems",
    "component_env",
    "items_in_process",
    "linked_ids",
    "model_files",
    "model_version",
    "models_dir",
    "nrt_models",
    "run_cli",
    "start_cli",
    "wait_for_file",
]


@pytest.fixture
def items_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Multi-item runs process their items one after the other in this process.

    Production hands several items to ``component.distribute`` (a Dask LocalCluster of worker
    processes, each importing torch and loading the model: too heavy for these tests on a
    shared two-core machine). Each item still goes through the same task function the
    pipeline hands to Dask (``pipeline.process_on_worker``) and the same result callback;
    only the Dask transport is left out (``tests/test_distribute.py`` covers it).
    """
    from component import pipeline

    def sequential(inputs: list[Any], params: Any, task: Any, on_result: Any) -> None:
        for source in inputs:
            try:
                outcome = task(source, params, None, None)
            except Exception as error:  # as distribute reports a task that raised
                outcome = error
            on_result(source, outcome)

    monkeypatch.setattr(pipeline, "process_many", sequential)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The shipped models folder (card, atmosphere table, weights if any)."""
    return SHIPPED_MODELS


@pytest.fixture
def nrt_models(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> Iterator[Path]:
    """``COMPONENT_MODELS_DIR`` at the shipped model, each models folder loaded once.

    ``pipeline.load_model`` keeps returning the real model it loaded for a folder, so runs do
    not rebuild it; their corrections are real.
    """
    from component import pipeline
    from component.params import RunParams

    monkeypatch.setenv("COMPONENT_MODELS_DIR", str(models_dir))
    real = pipeline.load_model

    def cached(params: RunParams) -> pipeline.Model:
        key = f"{os.environ['COMPONENT_MODELS_DIR']}|{params.weights}"
        if key not in _LOADED:
            _LOADED[key] = real(params)
        return _LOADED[key]

    monkeypatch.setattr(pipeline, "load_model", cached)
    yield models_dir


_LOADED: dict[str, Any] = {}


def model_files(card: dict[str, Any]) -> list[str]:
    """The files a card names (weights, ONNX graph, atmosphere table), relative to it."""
    entries = [card.get("weights"), card.get("onnx"), (card.get("atmosphere") or {}).get("lut")]
    return [
        str(entry["file"]) for entry in entries if isinstance(entry, dict) and entry.get("file")
    ]


def model_version(models: Path, folder: Path, version: str) -> Path:
    """A copy of the models folder *models* whose card says ``version`` (same files)."""
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = json.loads((models / "model_card.json").read_text())
    data["version"] = version
    for name in model_files(data):
        shutil.copyfile(models / name, folder / name)
    (folder / "model_card.json").write_text(json.dumps(data, indent=2))
    return folder


def component_env(models: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this interpreter's, plus the model folder.

    Threads are capped so that several subprocesses share a small machine politely.
    """
    env = dict(os.environ)
    env.update(
        {
            "COMPONENT_MODELS_DIR": str(models),
            "PYTHONPATH": str(SRC) + os.pathsep + env.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "GDAL_NUM_THREADS": "1",
        }
    )
    env.pop("COMPONENT_TEST_PAUSE_AT", None)
    env.pop("COMPONENT_TEST_PAUSE_MARKER", None)
    env.update(extra)
    return env


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "component", "run", "--device", "cpu", *args]


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m component run ARGS`` to the end and capture stdout/stderr."""
    return subprocess.run(
        _command(args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m component run ARGS`` in the background, output into *log*."""
    with log.open("wb") as stream:
        return subprocess.Popen(_command(args), env=env, stdout=stream, stderr=subprocess.STDOUT)


def wait_for_file(
    path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    """Wait until *path* exists; fail with the process's output if it exits or times out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(
                f"process exited {process.returncode} before {path.name}:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path.name} never appeared:\n{log.read_text()}")
        time.sleep(0.05)


def kill_when_paused(
    process: subprocess.Popen[bytes], marker: Path, log: Path, timeout: float = 120
) -> None:
    """SIGKILL *process* once it has written its pause *marker* (``COMPONENT_TEST_PAUSE_AT``)
    holding its pid, and check it died of it; never leave it running."""
    try:
        wait_for_file(marker, process, log, timeout=timeout)
        assert int(marker.read_text()) == process.pid
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _core_schema_errors(data: dict[str, Any], kind: str) -> list[str]:
    """Errors of *data* against the STAC 1.1 core schema (offline: pystac's bundled copy)."""
    import jsonschema
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource

    cache = get_local_schema_cache()
    registry: Registry[Any] = Registry().with_resources(
        (uri, Resource.from_contents(schema)) for uri, schema in cache.items()
    )
    uri = f"https://schemas.stacspec.org/v1.1.0/{kind}-spec/json-schema/{kind}.json"
    validator = jsonschema.Draft7Validator(cache[uri], registry=registry)
    return [error.message[:200] for error in validator.iter_errors(data)]


def catalog_problems(output: Path) -> list[str]:
    """What is wrong with the output catalog (empty list: valid).

    ``catalog.json`` must be valid JSON against the STAC core schema, every item link must
    resolve to a core-valid item outside ``.staging``, and every published product must verify
    against its checksums (a product is whole or absent).
    """
    from component.io.catalog import verify_product

    path = output / "catalog.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return [f"catalog.json: {type(error).__name__}: {error}"]
    problems = [f"catalog.json: {e}" for e in _core_schema_errors(data, "catalog")]
    for link in data.get("links", []):
        if link.get("rel") != "item":
            continue
        item_file = (output / link["href"]).resolve()
        if ".staging" in item_file.parts:
            problems.append(f"{link['href']} points into staging")
        if not item_file.is_file():
            problems.append(f"{link['href']} does not resolve")
            continue
        item = json.loads(item_file.read_text())
        problems += [f"{link['href']}: {e}" for e in _core_schema_errors(item, "item")]
        reason = verify_product(output, item["id"])
        if reason is not None:
            problems.append(f"{link['href']}: {reason}")
    return problems


def linked_ids(output: Path) -> list[str]:
    """Ids of the items ``catalog.json`` links (from their folder names)."""
    data = json.loads((output / "catalog.json").read_text())
    return sorted(Path(link["href"]).parent.name for link in data["links"] if link["rel"] == "item")
