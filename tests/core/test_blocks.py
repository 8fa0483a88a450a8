"""Block means: block sums, the strip accumulator, whole-array means and nearest sampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from affine import Affine

from component.core import blocks
from component.core.blocks import (
    BlockMean,
    block_mean,
    block_mean_and_count,
    block_sums,
    nearest,
)
from component.core.grid import Grid


def _padded_nanmean(
    array: np.ndarray, k: int, row0: int, col0: int, shape: tuple[int, int] | None = None
) -> np.ndarray:
    """The reference: *array* (h, w) placed at (row0, col0) in NaN padding that fills whole
    ``k x k`` blocks (*shape* of them, default just enough), then NumPy's NaN-aware mean of
    each block."""
    height, width = array.shape
    bh, bw = shape or (-(-(row0 + height) // k), -(-(col0 + width) // k))
    full = np.full((bh * k, bw * k), np.nan, np.float32)
    full[row0 : row0 + height, col0 : col0 + width] = array
    blocks = full.reshape(bh, k, bw, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice"
        return np.nanmean(blocks, axis=(1, 3))


@pytest.mark.parametrize("k", [1, 2, 3, 6, 12])
def test_block_sums_match_a_brute_force_sum_at_any_offset(k: int) -> None:
    """Strips that start and end inside blocks, at offsets before and after the blocks'
    origin, with invalid pixels: every block sum and count as a plain loop computes it."""
    rng = np.random.default_rng(k)
    for first_row, first_col, n, w in [(0, 0, 24, 36), (-5, 7, 17, 29), (13, -3, 1, 11)]:
        toa = rng.uniform(0, 0.5, (n, w)).astype(np.float32)
        toa[rng.uniform(size=(n, w)) < 0.2] = np.nan
        rows, c0, sums, counts = block_sums(toa, first_row, first_col, k)
        expected_sum: dict[tuple[int, int], float] = {}
        expected_count: dict[tuple[int, int], int] = {}
        for i in range(n):
            for j in range(w):
                key = ((first_row + i) // k, (first_col + j) // k)
                expected_count[key] = expected_count.get(key, 0) + int(np.isfinite(toa[i, j]))
                value = float(toa[i, j]) if np.isfinite(toa[i, j]) else 0.0
                expected_sum[key] = expected_sum.get(key, 0.0) + value
        assert list(rows) == sorted({key[0] for key in expected_sum})
        for (r, c), total in expected_sum.items():
            i, j = int(np.flatnonzero(rows == r)[0]), c - c0
            assert sums[i, j] == pytest.approx(total, abs=1e-5)
            assert counts[i, j] == expected_count[(r, c)]


@pytest.mark.parametrize(("col0", "row0"), [(0, 0), (5, 7)])
def test_block_mean_accumulates_the_nan_aware_block_mean(col0: int, row0: int) -> None:
    """Its own float64 sums: strips of any height, a window offset inside the coarse grid,
    the plain block mean."""
    rng = np.random.default_rng(0)
    k, coarse = 6, Grid(32631, Affine(60, 0, 300000, 0, -60, 4900020), 9, 8)
    height, width = coarse.height * k - row0 - 3, coarse.width * k - col0 - 2
    grid = Grid(32631, Affine(10, 0, 300000 + 10 * col0, 0, -10, 4900020 - 10 * row0), width,
                height)  # fmt: skip
    toa = rng.uniform(0, 0.3, (height, width)).astype(np.float32)
    toa[rng.random(toa.shape) < 0.2] = np.nan
    toa[: 2 * k, : 2 * k] = np.nan  # whole coarse pixels without a valid one
    mean = BlockMean(grid, coarse)
    assert mean.out.dtype == np.float64
    for y0 in range(0, height, 13):
        mean.add(y0, toa[y0 : y0 + 13])
    full = np.full((coarse.height * k, coarse.width * k), np.nan, np.float32)
    full[row0 : row0 + height, col0 : col0 + width] = toa
    blocks = full.reshape(coarse.height, k, coarse.width, k)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmean(blocks, axis=(1, 3))
    means = mean.finish()
    assert means.dtype == np.float32 and means.shape == coarse.shape
    np.testing.assert_allclose(means, expected, rtol=1e-5)
    assert np.isnan(means[0, 0])


@pytest.mark.parametrize(("col0", "row0"), [(0, 0), (1, 1), (3, 2)])
def test_block_mean_into_a_float32_slice_is_the_float64_mean(col0: int, row0: int) -> None:
    """The lean use (the caller's float32 slice of the scene stack) agrees with the float64
    one, whatever the band window's offset (bbox windows snap each grid on its own), strips
    included; the means land in the slice itself."""
    rng = np.random.default_rng(3)
    band = Grid(32633, Affine(10, 0, 1000 + 10 * col0, 0, -10, 9000 - 10 * row0), 37, 29)
    scene = Grid(32633, Affine(20, 0, 1000, 0, -20, 9000), 21, 17)
    toa = rng.uniform(0.0, 0.5, (29, 37)).astype(np.float32)
    toa[rng.random(toa.shape) < 0.2] = np.nan
    stack = np.zeros((2, scene.height, scene.width), np.float32)
    out = stack[1]
    lean, reference = BlockMean(band, scene, out), BlockMean(band, scene)
    for y0 in range(0, 29, 7):
        lean.add(y0, toa[y0 : y0 + 7])
        reference.add(y0, toa[y0 : y0 + 7])
    finished = lean.finish()
    assert finished is out, "the means are written in place into the caller's slice"
    expected = reference.finish()
    np.testing.assert_allclose(stack[1], expected, rtol=1e-6, equal_nan=True)
    assert (stack[0] == 0).all(), "nothing outside the slice is touched"
    reference_mean = _padded_nanmean(toa, 2, row0, col0, scene.shape)
    np.testing.assert_allclose(expected, reference_mean, rtol=1e-5, equal_nan=True)


def test_block_mean_rejects_grids_that_are_not_whole_blocks() -> None:
    band = Grid(32633, Affine(20, 0, 0, 0, -20, 0), 10, 10)
    with pytest.raises(ValueError, match="not a multiple"):
        BlockMean(band, Grid(32633, Affine(50, 0, 0, 0, -50, 0), 4, 4))
    with pytest.raises(ValueError, match="not a multiple"):
        BlockMean(band, Grid(32633, Affine(10, 0, 0, 0, -10, 0), 20, 20))


@pytest.mark.parametrize(("factor", "row0", "col0"), [(3, 0, 0), (3, 1, 2), (4, 3, 0), (1, 0, 0)])
def test_block_mean_of_an_array_counts_partial_edge_blocks(
    factor: int, row0: int, col0: int
) -> None:
    """(..., H, W) arrays, H and W not multiples of the factor, the first pixel anywhere in
    its block: each block's mean of the values it has; NaN where it has none."""
    rng = np.random.default_rng(factor + 10 * row0 + col0)
    array = rng.uniform(0, 1, (2, 3, 13, 11)).astype(np.float32)
    array[rng.random(array.shape) < 0.25] = np.nan
    array[0, 0, :, :] = np.nan  # a plane without any valid value
    means = block_mean(array, factor, row0, col0)
    shape = (-(-(row0 + 13) // factor), -(-(col0 + 11) // factor))
    assert means.shape == (2, 3, *shape) and means.dtype == np.float32
    assert np.isnan(means[0, 0]).all()
    for i in range(2):
        for j in range(3):
            if i == j == 0:
                continue
            if factor == 1:
                np.testing.assert_array_equal(means[i, j], array[i, j])
                continue
            expected = _padded_nanmean(array[i, j], factor, row0, col0)
            np.testing.assert_allclose(means[i, j], expected, rtol=1e-6, equal_nan=True)


def test_block_mean_edge_blocks_by_hand() -> None:
    """Partial blocks average what they hold, on either side of the array."""
    row = np.array([[1, 2, 3, 4, 5]], np.float32)
    np.testing.assert_array_equal(block_mean(row, 2), [[1.5, 3.5, 5.0]])
    np.testing.assert_array_equal(block_mean(row, 2, col0=1), [[1.0, 2.5, 4.5]])
    np.testing.assert_array_equal(block_mean(row.T, 2, row0=1), [[1.0], [2.5], [4.5]])
    with_nan = np.array([[np.nan, 2, np.nan, np.nan]], np.float32)
    np.testing.assert_array_equal(block_mean(with_nan, 2), [[2.0, np.nan]])


def test_block_mean_of_an_integer_array_is_float32() -> None:
    values = np.arange(16, dtype=np.uint16).reshape(4, 4)
    np.testing.assert_array_equal(block_mean(values, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert block_mean(values, 1).dtype == np.float32


def test_block_mean_and_count_of_selected_pixels() -> None:
    """Means of the pixels *where* selects, band by band, and how many each block holds."""
    rng = np.random.default_rng(7)
    bands = [rng.uniform(0, 1, (10, 7)).astype(np.float32) for _ in range(3)]
    where = rng.random((10, 7)) < 0.5
    where[:4, :4] = False  # a block without any selected pixel
    means, counts = block_mean_and_count(bands, 4, where)
    assert means.shape == (3, 3, 2) and counts.shape == (3, 2)
    for b, band in enumerate(bands):
        expected = _padded_nanmean(np.where(where, band, np.nan), 4, 0, 0)
        np.testing.assert_allclose(means[b], expected, rtol=1e-6, equal_nan=True)
    expected_counts = np.zeros((3, 2), int)
    for i, j in zip(*np.nonzero(where), strict=True):
        expected_counts[i // 4, j // 4] += 1
    np.testing.assert_array_equal(counts, expected_counts)
    assert counts[0, 0] == 0 and np.isnan(means[:, 0, 0]).all()
    with pytest.raises(ValueError, match="overflow"):
        block_mean_and_count(bands, 256, where)


def test_block_mean_and_count_in_strips_equals_whole_bands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Summed a few block rows at a time or all at once: the same bits (each block lies in one
    strip), strips ending inside the last, partial block included."""
    rng = np.random.default_rng(3)
    bands = [rng.uniform(0, 1, (53, 29)).astype(np.float32) for _ in range(2)]
    bands[1][5:9] = np.nan
    where = rng.random((53, 29)) < 0.7
    whole = block_mean_and_count(bands, 3, where)
    monkeypatch.setattr(blocks, "STRIP_BLOCK_ROWS", 7)  # strips of 6 rows: 2 block rows
    strips = block_mean_and_count(bands, 3, where)
    np.testing.assert_array_equal(strips[0], whole[0])
    np.testing.assert_array_equal(strips[1], whole[1])


def test_nearest_samples_a_coarser_band_at_pixel_centres() -> None:
    source = Grid(32633, Affine(60, 0, 940, 0, -60, 9060), 4, 3)
    target = Grid(32633, Affine(20, 0, 1000, 0, -20, 9000), 12, 10)
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = np.empty((10, 12), np.float32)
    nearest(values, source, target, out)
    # Target pixel (0, 0) has its centre at (1010, 8990): source column 1, row 1.
    assert out[0, 0] == out[0, 2] == out[2, 0] == values[1, 1]
    assert out[0, 3] == values[1, 2] and out[3, 0] == values[2, 1]  # centres 1070, 8930
    assert np.isnan(out[:, 9:]).all() and np.isnan(out[6:]).all(), "outside the source"
    assert not np.isnan(out[:6, :9]).any()
