"""Helpers for the scheduled-run (NRT) tests: a seeded model folder and CLI subprocesses.

The shipped weights may not exist in a fresh checkout, so tests that run the pipeline write a
small seeded, randomly initialised model with a copy of the shipped model card whose sha256
matches it, and point ``COMPONENT_MODELS_DIR`` at that folder. Forward passes are real: only
the numbers the network produces are meaningless, which these tests do not look at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC = REPO_ROOT / "src"

__all__ = [
    "SRC",
    "catalog_problems",
    "component_env",
    "linked_ids",
    "run_cli",
    "start_cli",
    "wait_for_file",
    "write_seeded_model",
]


def write_seeded_model(folder: Path, seed: int = 0, version: str | None = None) -> Path:
    """Write ``model_card.json`` + seeded safetensors into *folder*; return the folder.

    ``version`` overrides the card's version (a new model version must publish new items).
    """
    import torch

    from component.model import build_model
    from component.modelcard import card_from_dict, models_dir

    data: dict[str, Any] = json.loads((models_dir() / "model_card.json").read_text())
    if version is not None:
        data["version"] = version
    folder.mkdir(parents=True, exist_ok=True)
    card = card_from_dict(data, folder / "model_card.json")
    torch.manual_seed(seed)
    from component.model import save_weights

    digest = save_weights(build_model(card), folder / data["weights"]["file"])
    data["weights"]["sha256"] = digest
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
    from component.catalog import verify_product

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
