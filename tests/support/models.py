"""A model for tests: the shipped weights when present, else a seeded random-initialised one.

The shipped ``models/*.safetensors`` are produced by training and may be absent from a checkout.
Tests about plumbing (reading, writing, describing, publishing, the CLI) do not depend on what the
network learned, only on a real forward pass through the card's architecture, so
:func:`write_random_model` builds the card's network with random weights (seeded), saves them as
safetensors and writes a copy of the card whose ``weights.sha256`` matches, next to a copy of the
card's 6S table (the real one: its values matter for the physics). The fixtures point
``COMPONENT_MODELS_DIR`` at that folder, which subprocesses inherit.

Use them from a test module with ``@pytest.mark.usefixtures("test_model")`` after importing the
fixtures (``from support.models import random_models_dir, test_model  # noqa: F401``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

__all__ = [
    "model_dir",
    "random_model",
    "random_models_dir",
    "shipped_weights_present",
    "test_model",
    "write_random_model",
]

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
CARD_FILE = "model_card.json"


def shipped_weights_present() -> bool:
    """True when the repository's card names weights that exist and carry a sha256."""
    card_path = REPO_MODELS / CARD_FILE
    if not card_path.is_file():
        return False
    card = json.loads(card_path.read_text())
    weights = card.get("weights") or {}
    return bool(weights.get("sha256")) and (REPO_MODELS / str(weights.get("file"))).is_file()


def write_random_model(folder: Path, seed: int = 0) -> Path:
    """Write a random-initialised model (weights + matching card) into *folder*; return it."""
    import shutil

    import torch

    from component.model.card import card_from_dict
    from component.model.network import build_model, save_weights

    data = json.loads((REPO_MODELS / CARD_FILE).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    lut = data["atmosphere"]["lut"]["file"]
    shutil.copyfile(REPO_MODELS / lut, folder / lut)
    # The super-resolution networks the card names (small, checksummed): the shipped ones.
    for network in (data.get("super_resolution") or {}).get("networks", []):
        for kind in ("weights", "onnx"):
            name = network[kind]["file"]
            shutil.copyfile(REPO_MODELS / name, folder / name)
    data.pop("onnx", None)  # the shipped graph belongs to the shipped weights
    card = card_from_dict(data, folder / CARD_FILE)
    torch.manual_seed(seed)
    model = build_model(card)
    weights = (data.get("weights") or {}).get("file") or "random.safetensors"
    digest = save_weights(model, folder / weights)
    data["weights"] = {"file": weights, "sha256": digest, "format": "safetensors"}
    (folder / CARD_FILE).write_text(json.dumps(data, indent=2))
    return folder


@pytest.fixture(scope="session")
def random_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with a seeded random-initialised network, built once per session."""
    return write_random_model(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def model_dir(random_models_dir: Path) -> Path:
    """The models folder plumbing tests use: the shipped one if complete, else the random one.

    For subprocesses: pass ``COMPONENT_MODELS_DIR=<this>`` in their environment.
    """
    return REPO_MODELS if shipped_weights_present() else random_models_dir


@pytest.fixture
def test_model(monkeypatch: pytest.MonkeyPatch, random_models_dir: Path) -> Path:
    """Point ``COMPONENT_MODELS_DIR`` at the shipped models, or at the random one if absent.

    Plumbing tests do not depend on accuracy; a forward pass through the real architecture
    happens either way.
    """
    folder = REPO_MODELS if shipped_weights_present() else random_models_dir
    monkeypatch.setenv("COMPONENT_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def random_model(monkeypatch: pytest.MonkeyPatch, random_models_dir: Path) -> Path:
    """Always the random model: for tests that must not depend on the shipped weights at all."""
    monkeypatch.setenv("COMPONENT_MODELS_DIR", str(random_models_dir))
    return random_models_dir
