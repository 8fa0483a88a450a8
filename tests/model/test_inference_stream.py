"""Corrector.stream: the in-memory corrector's numbers, read and written strip by strip."""

from __future__ import annotations

import numpy as np
import pytest

from component.model.inference import Corrector


class BlurEngine:
    """A deterministic, context-dependent stand-in network: a 5x5 box blur per channel.

    It makes a seam visible (a blur sees across tile borders, so tiles that were not blended
    would disagree), and it counts the tiles it is asked to run.
    """

    def __init__(self) -> None:
        self.tiles = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.tiles += batch.shape[0]
        padded = np.pad(batch, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
        out = np.zeros_like(batch)
        for dy in range(5):
            for dx in range(5):
                out += padded[:, :, dy : dy + batch.shape[2], dx : dx + batch.shape[3]]
        return out / 25.0


def _corrector(engine: BlurEngine, tile: int = 64, overlap: int = 16) -> Corrector:
    return Corrector(engine, out_channels=3, tile_size=tile, tile_overlap=overlap, batch_size=3)


def _stream(corrector: Corrector, toa: np.ndarray) -> tuple[np.ndarray, list[int]]:
    out = np.full(toa.shape, -1.0, np.float32)
    heights: list[int] = []

    def read(y0: int, y1: int) -> np.ndarray:
        heights.append(y1 - y0)
        return toa[:, y0:y1]

    def write(y0: int, block: np.ndarray) -> None:
        out[:, y0 : y0 + block.shape[1]] = block

    corrector.stream(read, write, toa.shape[1], toa.shape[2])
    return out, heights


@pytest.mark.parametrize("shape", [(3, 200, 170), (3, 45, 300), (3, 64, 64), (3, 7, 9)])
def test_stream_equals_in_memory(shape: tuple[int, int, int]) -> None:
    """Every pixel written exactly once, equal to Corrector.correct, NaN kept."""
    rng = np.random.default_rng(1)
    toa = rng.uniform(0.02, 0.5, shape).astype(np.float32)
    toa[:, : shape[1] // 3, : shape[2] // 4] = np.nan
    reference = _corrector(BlurEngine()).correct(toa)
    streamed, heights = _stream(_corrector(BlurEngine()), toa)
    assert not (streamed == -1).any(), "a row was never written"
    np.testing.assert_allclose(streamed, reference, rtol=0, atol=1e-6, equal_nan=True)
    assert max(heights) <= 64, "a read was larger than one tile row"


def test_stream_skips_tiles_without_valid_pixels() -> None:
    """Half-empty swaths cost half: all-nodata tiles are not run through the network."""
    toa = np.full((3, 192, 192), 0.2, np.float32)
    toa[:, :, :96] = np.nan
    engine = BlurEngine()
    out, _ = _stream(_corrector(engine, tile=64, overlap=0), toa)
    assert engine.tiles == 6  # 3 tile rows x the 2 of 3 tile columns that hold valid pixels
    assert np.isnan(out[:, :, :96]).all()
    np.testing.assert_allclose(out[:, :, 100:], 0.2, atol=1e-6)


def test_stream_has_no_seams() -> None:
    """A smooth input stays smooth across strip and tile borders."""
    y, x = np.mgrid[0:150, 0:150].astype(np.float32)
    toa = np.stack([0.1 + 0.001 * (x + y)] * 3).astype(np.float32)
    out, _ = _stream(_corrector(BlurEngine(), tile=64, overlap=16), toa)
    inner = out[:, 3:-3, 3:-3]
    # The blur of a plane is the plane: away from the scene border nothing may deviate.
    np.testing.assert_allclose(inner, toa[:, 3:-3, 3:-3], atol=1e-5)


def test_detail_transfer_keeps_input_detail_and_the_network_smooth_correction() -> None:
    """An identity network stays identity; a smooth offset network keeps its offset exactly."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.1, 0.4, (1, 3, 64, 64)).astype(np.float32)
    corrector = Corrector(
        BlurEngine(),
        out_channels=3,
        tile_size=64,
        tile_overlap=16,
        detail_sigma=3.0,
        detail_gain=1.0,
        detail_source=(0, 1, 2),
    )
    np.testing.assert_allclose(corrector.transfer_detail(x, x), x, atol=1e-6)
    shifted = corrector.transfer_detail(x, x - 0.05)
    np.testing.assert_allclose(shifted, x - 0.05, atol=1e-5)
    # A blurring network gets its detail back: the output is closer to the input than the blur.
    blurred = BlurEngine()(x)
    restored = corrector.transfer_detail(x, blurred)
    assert np.abs(restored - x).mean() < 0.5 * np.abs(blurred - x).mean()
    off = Corrector(BlurEngine(), out_channels=3, tile_size=64, tile_overlap=16)
    assert off.transfer_detail(x, blurred) is blurred
