"""Tiled inference: full coverage, no seams, skipped empty tiles, any grid size."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from component.model.card import load_card
from component.model.inference import TiledNetwork, TorchEngine, axis_layout, blend_window, layout
from component.model.network import load_model
from support.models import random_models_dir  # noqa: F401


def identity_engine(batch: np.ndarray) -> np.ndarray:
    """A model-independent engine: any seam or gap in the blending would show in its output."""
    return batch.copy()


def make_network(engine=identity_engine, tile: int = 64, overlap: int = 16) -> TiledNetwork:
    return TiledNetwork(engine, out_channels=3, tile_size=tile, tile_overlap=overlap, batch_size=3)


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
    x = rng.uniform(0.0, 1.0, (3, height, width)).astype(np.float32)
    out = make_network()(x)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)


def test_tiles_without_a_valid_pixel_are_skipped() -> None:
    calls: list[tuple[int, ...]] = []

    def spy(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return batch.copy()

    x = np.full((3, 40, 200), 0.2, np.float32)
    valid = np.zeros((40, 200), bool)
    valid[:, :30] = True  # only the first tile column has data (a swath edge)
    out = make_network(spy)(x, valid)
    assert sum(shape[0] for shape in calls) < len(layout(40, 200, 64, 16))
    assert np.isfinite(out[:, :, :30]).all() and np.isnan(out[:, :, -10:]).all()


def test_real_forward_pass_tiled_and_bounded(random_models_dir: Path) -> None:  # noqa: F811
    card = load_card(random_models_dir / "model_card.json")
    network = TiledNetwork(
        TorchEngine(load_model(card), "cpu"),
        out_channels=card.out_channels,
        tile_size=64,
        tile_overlap=16,
    )
    x = np.random.default_rng(1).uniform(0.0, 0.5, (card.in_channels, 50, 83)).astype(np.float32)
    out = network(x)
    assert out.shape == (2, 50, 83) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert (out[0] >= 0).all() and (out[0] <= 1.2).all()  # AOT within the table
    assert (out[1] >= 0).all() and (out[1] <= 6.5).all()  # water vapour, cm


def test_small_grid_is_one_padded_tile() -> None:
    calls: list[tuple[int, ...]] = []

    def spy(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.shape)
        return batch.copy()

    out = make_network(spy)(np.full((3, 24, 42), 0.1, np.float32))
    assert calls == [(1, 3, 32, 64)]
    assert out.shape == (3, 24, 42)
