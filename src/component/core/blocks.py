"""Block means: one implementation and one edge rule for every coarse view of a band.

A coarse grid anchored on the same origin as a band's grid, with a pixel ``k`` times the
band's, holds ``k x k`` blocks of band pixels, so its means need no resampling. The rule,
everywhere (the pipeline's coarse and scene grids, the Python API's dask reductions, chips in
``evaluate``, training surfaces, the cloud detector's block spectra): the mean of the *valid*
(finite) values of each block; a block cut by the edge of the band counts the pixels it has;
a block without any valid value is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from component.core.grid import Grid


def block_sums(
    values: np.ndarray, first_row: int, first_col: int, k: int
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Sums and counts of the valid (finite) values of *values* (rows, cols) over ``k x k``
    blocks.

    *first_row* / *first_col*: where the first pixel lies, in pixels from the blocks' origin
    (negative before it). Returns the block row of each output row, the block column of the
    first output column, the float32 sums and the uint16 counts. Columns are summed first (k
    strided adds), which shrinks the array k-fold before the rows are; strips need not start
    or end on a block edge.
    """
    n, w = values.shape
    left = first_col % k
    valid = np.isfinite(values)
    columns = -(-(left + w) // k) * k
    if not left and columns == w and valid.all():
        # whole blocks, every value valid (a sharpened strip): no masked copy, counts known
        column_sums = _every(values.astype(np.float32, copy=False), k, axis=1)
        column_counts = np.full(column_sums.shape, k, np.uint16)
    else:
        filled = np.where(valid, values, np.float32(0)).astype(np.float32, copy=False)
        if left or columns != w:
            padded = np.zeros((n, columns), np.float32)
            padded[:, left : left + w] = filled
            present = np.zeros((n, columns), bool)
            present[:, left : left + w] = valid
            filled, valid = padded, present
        column_sums = _every(filled, k, axis=1)
        column_counts = _every(valid.astype(np.uint16), k, axis=1)
    # Blocks of rows: a partial one where the strip starts inside a block, whole ones, a
    # partial one where it ends inside a block.
    head = min((-first_row) % k, n)
    whole = (n - head) // k * k
    sums, counts = [], []
    if head:
        sums.append(column_sums[:head].sum(axis=0, keepdims=True))
        counts.append(column_counts[:head].sum(axis=0, keepdims=True, dtype=np.uint16))
    if whole:
        sums.append(_every(column_sums[head : head + whole], k, axis=0))
        counts.append(_every(column_counts[head : head + whole], k, axis=0))
    if head + whole < n:
        sums.append(column_sums[head + whole :].sum(axis=0, keepdims=True))
        counts.append(column_counts[head + whole :].sum(axis=0, keepdims=True, dtype=np.uint16))
    block_sum, block_count = np.concatenate(sums), np.concatenate(counts)
    block_rows = first_row // k + np.arange(len(block_sum))
    return block_rows, (first_col - left) // k, block_sum, block_count


def _every(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Sums of *k* consecutive entries along *axis* (its length a multiple of *k*): k strided
    adds, each over 1/k of the array, instead of a reduction over a short inner axis."""
    if k == 1:
        return a
    index = [slice(None), slice(None)]
    index[axis] = slice(0, None, k)
    total = a[tuple(index)].copy()
    for j in range(1, k):
        index[axis] = slice(j, None, k)
        total += a[tuple(index)]
    return total


def _means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    out = np.full(sums.shape, np.nan, np.float32)
    seen = counts > 0
    out[seen] = sums[seen] / counts[seen]
    return out


def block_mean(array: np.ndarray, factor: int, row0: int = 0, col0: int = 0) -> np.ndarray:
    """(..., H, W) -> (..., ceil((row0 + H) / f), ceil((col0 + W) / f)) valid-value block means.

    *row0*, *col0*: where the array's first pixel lies in its first block (0 = on a block
    corner; both below *factor*).
    """
    if not (0 <= row0 < factor and 0 <= col0 < factor):
        raise ValueError(f"offsets ({row0}, {col0}) must lie within a block of {factor}")
    array = np.asarray(array, np.float32)
    if factor == 1 and not (row0 or col0):
        return array
    lead = array.shape[:-2]
    planes = array.reshape(-1, *array.shape[-2:])
    out = [_means(*block_sums(plane, row0, col0, factor)[2:]) for plane in planes]
    return np.stack(out).reshape(*lead, *out[0].shape)


STRIP_BLOCK_ROWS = 256
"""About how many rows :func:`block_mean_and_count` masks and sums at once."""


def block_mean_and_count(
    bands: Sequence[np.ndarray], factor: int, where: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Block means (bands, bh, bw) of the valid pixels *where* is true, band by band (no stack
    of the full-size bands is made), and how many such pixels each block holds (bh, bw), for
    bands valid at the same pixels (the last band's count otherwise)."""
    if factor > 255:
        raise ValueError(f"blocks of {factor} px overflow the uint16 counts")
    # A few block rows at a time: the masked copy and block_sums' temporaries stay small (on a
    # full 20 m tile, whole bands would take 0.4 GB at once); each block lies in one strip,
    # so its sum is added up in the same order.
    step = factor * max(1, STRIP_BLOCK_ROWS // factor)
    means, counts = [], np.zeros(0, np.uint16)
    for band in bands:
        sums, tallies = [], []
        for y0 in range(0, len(band), step):
            rows = slice(y0, y0 + step)
            selected = np.where(where[rows], band[rows], np.float32(np.nan))
            _, _, strip_sums, strip_counts = block_sums(selected.astype(np.float32), 0, 0, factor)
            sums.append(strip_sums)
            tallies.append(strip_counts)
        counts = np.concatenate(tallies)
        means.append(_means(np.concatenate(sums), counts))
    return np.stack(means), counts


def _inside(
    block_rows: np.ndarray, c0: int, width: int, height: int, n_cols: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Where :func:`block_sums`' blocks fall in a (height, width) grid, as slices: the target
    region and the part of the sums inside it (block rows are consecutive, so no fancy
    indexing: a scatter by index arrays cost 10 ns per value, more than the sums)."""
    first = int(block_rows[0])
    r0, r1 = max(first, 0), min(first + len(block_rows), height)
    c_start, c_stop = max(c0, 0), min(c0 + n_cols, width)
    r1, c_stop = max(r1, r0), max(c_stop, c_start)
    target = (slice(r0, r1), slice(c_start, c_stop))
    inner = (slice(r0 - first, r1 - first), slice(c_start - c0, c_stop - c0))
    return target, inner


class BlockMean:
    """The mean of a band's valid values over each pixel of a coarser grid, strip by strip.

    The sums go into *out* (the caller's float32 slice, e.g. of the scene stack the classifier
    needs whole, or a fresh float64 array), the counts into uint16; :meth:`finish` turns the
    sums into means in place.
    """

    def __init__(self, grid: Grid, target: Grid, out: np.ndarray | None = None) -> None:
        self.k, self.row0, self.col0 = grid.offset_in(target)
        shape = (target.height, target.width)
        self.out = np.zeros(shape, np.float64) if out is None else out
        self.count = np.zeros(shape, np.uint16)

    def add(self, y0: int, values: np.ndarray) -> None:
        """Rows ``y0:y0 + len(values)`` of the band's grid (NaN = invalid)."""
        height, width = self.out.shape
        rows, c0, sums, hits = block_sums(values, y0 + self.row0, self.col0, self.k)
        target, inner = _inside(rows, c0, width, height, sums.shape[1])
        self.out[target] += sums[inner]
        self.count[target] += hits[inner]

    def finish(self) -> np.ndarray:
        """The (h, w) float32 means; NaN where no valid pixel fell."""
        means = _means(self.out, self.count)
        if self.out.dtype == np.float32:
            self.out[...] = means
            return self.out
        return means


def nearest(values: np.ndarray, source: Grid, target: Grid, out: np.ndarray) -> None:
    """*values* on *source* sampled at the centres of *target*'s pixels into *out* (for a
    band coarser than the target: B01, B09 and B10 at 60 m under a 20 m scene grid); NaN
    outside *source*."""
    sres, tres = source.resolution, target.resolution
    x = target.transform.c + (np.arange(target.width) + 0.5) * tres
    y = target.transform.f - (np.arange(target.height) + 0.5) * tres
    cols = np.floor((x - source.transform.c) / sres).astype(np.int64)
    rows = np.floor((source.transform.f - y) / sres).astype(np.int64)
    inside_r = (rows >= 0) & (rows < source.height)
    inside_c = (cols >= 0) & (cols < source.width)
    taken = values[np.clip(rows, 0, source.height - 1)][:, np.clip(cols, 0, source.width - 1)]
    out[...] = taken
    out[~inside_r] = np.nan
    out[:, ~inside_c] = np.nan
