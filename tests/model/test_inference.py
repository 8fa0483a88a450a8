"""Tiled inference: full coverage, no seams, NaN handling, any scene size."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from component.model.card import load_card
from component.model.inference import Corrector, axis_layout, blend_window, layout
from component.model.network import build_model, save_weights

SHIPPED_CARD = Path(__file__).resolve().parents[1] / "models" / "model_card.json"


def identity_engine(batch: np.ndarray) -> np.ndarray:
    """A model-independent engine: any seam or gap in the blending would show in its output."""
    return batch.copy()


def make_corrector(engine=identity_engine, tile: int = 64, overlap: int = 16) -> Corrector:
    return Corrector(engine, out_channels=3, tile_size=tile, tile_overlap=overlap, batch_size=3)


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "expected"),
    [
        (10980, 1024, 64, (12, 992)),
        (1830, 1024, 64, (2, 960)),
        (40, 1024, 64, (1, 64)),
        (64, 64, 16, (1, 64)),
        (100, 64, 16, (2, 64)),
    ],
)
def test_axis_layout(size: int, tile: int, overlap: int, expected: tuple[int, int]) -> None:
    length, starts = axis_layout(size, tile, overlap)
    assert (len(starts), length) == expected
    assert length % 32 == 0 and length <= tile
    assert starts[0] == 0
    if len(starts) > 1:
        assert starts[-1] + length == size  # no tile runs off the scene
        assert max(b - a for a, b in itertools.pairwise(starts)) <= length - overlap


@pytest.mark.parametrize(("height", "width"), [(45, 70), (130, 97), (20, 33), (64, 64)])
def test_tiles_cover_every_pixel(height: int, width: int) -> None:
    cover = np.zeros((height, width), int)
    for t in layout(height, width, 64, 16):
        cover[t.y : t.y + t.h, t.x : t.x + t.w] += 1
    assert cover.min() >= 1


def test_blend_window_is_positive_and_smooth() -> None:
    w = blend_window(64, 16)
    assert w.min() > 0 and w.max() == 1
    assert np.all(np.diff(w[:16]) > 0)


@pytest.mark.parametrize(("height", "width"), [(45, 70), (150, 97), (13, 5)])
def test_identity_engine_reproduces_input_without_seams(height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    toa = rng.uniform(0.0, 1.0, (3, height, width)).astype(np.float32)
    out = make_corrector().correct(toa)
    assert out.shape == toa.shape
    np.testing.assert_allclose(out, toa, rtol=1e-5, atol=1e-6)


def test_nan_in_any_band_gives_nan_in_all_bands() -> None:
    toa = np.full((3, 40, 50), 0.2, np.float32)
    toa[1, 5, 7] = np.nan
    out = make_corrector().correct(toa)
    assert np.isnan(out[:, 5, 7]).all()
    assert np.isfinite(np.delete(out.reshape(3, -1), 5 * 50 + 7, axis=1)).all()
    # the filled value, not NaN, reached the engine: the neighbours are untouched
    assert out[0, 5, 8] == pytest.approx(0.2)


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    data = json.loads(SHIPPED_CARD.read_text())
    torch.manual_seed(0)
    sha = save_weights(build_model(load_card(SHIPPED_CARD)), folder / "w.safetensors")
    data["weights"] = {"file": "w.safetensors", "sha256": sha, "format": "safetensors"}
    data["tiling"] = {"tile_size": 64, "overlap": 16}
    (folder / "model_card.json").write_text(json.dumps(data))
    return folder


def test_real_forward_pass_tiled(card_dir: Path) -> None:
    corrector = Corrector.from_card(load_card(card_dir / "model_card.json"), device="cpu")
    rng = np.random.default_rng(1)
    toa = rng.uniform(0.05, 0.4, (3, 50, 83)).astype(np.float32)
    toa[:, 0, 0] = np.nan
    out = corrector.correct(toa)
    assert out.shape == (3, 50, 83) and out.dtype == np.float32
    assert np.isnan(out[:, 0, 0]).all()
    assert np.isfinite(out[:, 1:, 1:]).all() and np.nanmin(out) >= 0


def test_small_scene_is_one_padded_tile(card_dir: Path) -> None:
    shutil.copy(card_dir / "model_card.json", card_dir / "copy.json")
    corrector = Corrector.from_card(load_card(card_dir / "copy.json"), device="cpu")
    calls: list[tuple[int, ...]] = []
    engine = corrector.engine

    def spy(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return engine(batch)

    corrector.engine = spy
    out = corrector.correct(np.full((3, 24, 42), 0.1, np.float32))
    assert calls == [(1, 3, 32, 64)]
    assert out.shape == (3, 24, 42)
