"""The engines: ONNX Runtime matches the reference fp32 PyTorch model; the builder's choices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from component.errors import InvalidParameterError
from component.model import engines
from component.model.card import load_card
from component.model.engines import (
    build_scene_corrector,
    gpu_may_be_present,
    make_engine,
    onnx_graph,
    resolve_device,
)
from support.models import random_models_dir  # noqa: F401

TOLERANCE = 1e-5
"""AOT and water-vapour units: far below the 0.001 quantisation of the AOT/WVP outputs."""


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
def card(random_models_dir: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The random model's card, with ONNX exports cached once for this module."""
    monkeypatch.setenv("COMPONENT_CACHE_DIR", str(onnx_cache))
    return load_card(random_models_dir / "model_card.json")


@pytest.mark.slow
def test_onnx_matches_torch(card) -> None:  # type: ignore[no-untyped-def]
    """The same tiles through both engines agree; the ONNX graph is exported once and reused."""
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 0.6, (2, card.in_channels, 96, 160)).astype(np.float32)
    torch_engine, torch_name = make_engine(card, None, "cpu", "torch")
    onnx_engine, onnx_name = make_engine(card, None, "cpu", "onnx")
    assert (torch_name, onnx_name) == ("torch-cpu", "onnxruntime-cpu")
    expected, actual = torch_engine(batch), onnx_engine(batch)
    assert actual.shape == expected.shape == (2, card.out_channels, 96, 160)
    assert np.abs(actual - expected).max() < TOLERANCE
    graph = onnx_graph(card, None)
    mtime = graph.stat().st_mtime_ns
    assert onnx_graph(card, None).stat().st_mtime_ns == mtime, "graph exported twice"


@pytest.mark.slow
def test_scene_through_both_engines(card) -> None:  # type: ignore[no-untyped-def]
    """Whole-scene outputs (tiling, blending, NaN) agree between engines too."""
    rng = np.random.default_rng(3)
    toa = rng.uniform(0.02, 0.4, (13, 70, 90)).astype(np.float32)
    toa[:, :5, :5] = np.nan
    torch_corrector, _ = build_scene_corrector(card, None, "cpu", "torch")
    onnx_corrector, _ = build_scene_corrector(card, None, "cpu", "onnx")
    a, _ = torch_corrector.correct_array(toa, 60.0)
    b, _ = onnx_corrector.correct_array(toa, 60.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4, equal_nan=True)


def test_auto_picks_onnx_on_cpu(card) -> None:  # type: ignore[no-untyped-def]
    _, name = make_engine(card, None, "cpu", "auto")
    assert name == "onnxruntime-cpu"


def test_bad_engine_and_device(card) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError, match="--engine"):
        make_engine(card, None, "cpu", "tensorrt")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="no CUDA GPU"):
            make_engine(card, None, "cuda", "torch")


def test_tampered_weights_refused_on_the_onnx_path(
    random_models_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The graph runs, but only as the export of the card's weights: one flipped byte stops it."""
    import shutil

    from component.errors import ModelError

    folder = tmp_path / "models"
    shutil.copytree(random_models_dir, folder)
    card = load_card(folder / "model_card.json")
    data = bytearray(card.weights_path.read_bytes())
    data[-1] ^= 0xFF
    card.weights_path.write_bytes(bytes(data))
    monkeypatch.setenv("COMPONENT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="match the model card"):
        make_engine(card, None, "cpu", "onnx")


def test_a_card_without_weights_is_the_physics_only_model(
    random_models_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import json
    import shutil

    folder = tmp_path / "models"
    shutil.copytree(random_models_dir, folder)
    data = json.loads((folder / "model_card.json").read_text())
    data["weights"] = None
    (folder / "model_card.json").write_text(json.dumps(data))
    corrector, name = build_scene_corrector(load_card(folder / "model_card.json"))
    assert name == "standard-atmosphere"
    assert corrector.estimator.name == "standard-atmosphere"


def test_tampered_table_is_refused(
    random_models_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import shutil

    from component.errors import ModelError

    folder = tmp_path / "models"
    shutil.copytree(random_models_dir, folder)
    card = load_card(folder / "model_card.json")
    assert card.lut_path is not None
    data = bytearray(card.lut_path.read_bytes())
    data[200] ^= 0xFF
    card.lut_path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        build_scene_corrector(card, None, "cpu", "onnx")


def test_auto_device_without_a_gpu_does_not_import_torch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``auto`` with every GPU hidden is the CPU, decided without torch; a whole run of the
    embedded sample on that path never imports torch (2 s of start-up)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not gpu_may_be_present()
    assert resolve_device("auto") == "cpu"
    code = (
        "import sys\n"
        "from component.cli import main\n"
        f"code = main(['run', '--output', {str(tmp_path / 'out')!r}])\n"
        "assert code == 0, code\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-2000:]


def test_auto_device_asks_torch_when_a_driver_is_present(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where an NVIDIA driver exists, ``auto`` is what torch says (cuda only if it sees one)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(engines, "gpu_may_be_present", lambda: True)
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
