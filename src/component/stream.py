"""Streaming correction: read, infer and write overlap; memory is one strip of tiles.

The scene is cut into the same overlapping tiles as :meth:`Corrector.correct`, processed one
row of tiles (a strip) at a time. Rows above the next strip's first row receive no more
contributions once a strip is done, so they are normalised and handed to the writer at once.
A reader thread fetches the next strip (JPEG 2000 decode, S3 range requests) while the
engine runs on the current one, and a writer thread compresses the finished rows meanwhile,
so end-to-end time approaches the slowest stage rather than the sum of the three. Memory
holds two input strips, one accumulator strip and one output block: for a 10 m tile (10980
px wide, 3 bands, 1024 px tiles) about 0.5 GB, whatever the scene height.

The arithmetic is the in-memory corrector's, tile for tile and in the same order, so both
give the same numbers (tested), except that tiles without a single valid pixel are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from component.inference import Corrector, Tile, _batches, _extract, axis_layout, blend_window

ReadRows = Callable[[int, int], np.ndarray]
"""``read(y0, y1)`` -> (bands, y1 - y0, width) float32 TOA reflectance, NaN where invalid."""
WriteRows = Callable[[int, np.ndarray], None]
"""``write(y0, block)`` with a (bands, h, width) float32 BOA block, NaN where invalid."""


def correct_stream(
    corrector: Corrector,
    read: ReadRows,
    write: WriteRows,
    height: int,
    width: int,
    timings: dict[str, float] | None = None,
) -> None:
    """Correct a scene of *height* x *width* strip by strip (see the module docstring)."""
    import time

    timings = timings if timings is not None else {}
    for stage in ("read_wait", "infer", "write_wait"):
        timings.setdefault(stage, 0.0)
    tile_h, ys = axis_layout(height, corrector.tile_size, corrector.tile_overlap)
    tile_w, xs = axis_layout(width, corrector.tile_size, corrector.tile_overlap)
    weight = np.outer(
        blend_window(tile_h, corrector.tile_overlap), blend_window(tile_w, corrector.tile_overlap)
    ).astype(np.float32)
    channels = corrector.out_channels
    top = 0  # first scene row not yet written
    acc = np.zeros((channels, 0, width), np.float32)
    wsum = np.zeros((0, width), np.float32)
    invalid = np.zeros((0, width), bool)

    def span(i: int) -> tuple[int, int]:
        return ys[i], min(ys[i] + tile_h, height)

    with ThreadPoolExecutor(1, "read") as reader, ThreadPoolExecutor(1, "write") as writer:
        upcoming: Future[np.ndarray] = reader.submit(read, *span(0))
        written: Future[None] | None = None
        for i, y in enumerate(ys):
            started = time.perf_counter()
            rows = upcoming.result()
            timings["read_wait"] += time.perf_counter() - started
            if i + 1 < len(ys):
                upcoming = reader.submit(read, *span(i + 1))
            started = time.perf_counter()
            h = rows.shape[1]
            grow = y + h - top - acc.shape[1]
            if grow > 0:
                acc = np.concatenate([acc, np.zeros((channels, grow, width), np.float32)], 1)
                wsum = np.concatenate([wsum, np.zeros((grow, width), np.float32)], 0)
                invalid = np.concatenate([invalid, np.zeros((grow, width), bool)], 0)
            local = y - top
            rows_invalid = ~np.isfinite(rows).all(axis=0)
            invalid[local : local + h] |= rows_invalid
            scene = corrector.normalize(rows)
            # A tile with no valid pixel only predicts pixels that end up nodata: skip it.
            # Sentinel-2 tiles at the edge of a swath are often half empty.
            tiles = [
                Tile(0, x, tile_h, tile_w) for x in xs if not rows_invalid[:, x : x + tile_w].all()
            ]
            for group in _batches(tiles, corrector.batch_size):
                predictions = corrector.engine(np.stack([_extract(scene, t) for t in group]))
                for tile, prediction in zip(group, predictions, strict=True):
                    th, tw = min(tile_h, h), min(tile_w, width - tile.x)
                    block = weight[:th, :tw]
                    cols = slice(tile.x, tile.x + tw)
                    acc[:, local : local + th, cols] += prediction[:, :th, :tw] * block
                    wsum[local : local + th, cols] += block
            done = ys[i + 1] if i + 1 < len(ys) else height
            count = done - top
            out = np.full((channels, count, width), np.nan, np.float32)
            np.divide(acc[:, :count], wsum[:count], out=out, where=wsum[:count] > 0)
            out[:, invalid[:count]] = np.nan
            acc, wsum, invalid = acc[:, count:], wsum[count:], invalid[count:]
            timings["infer"] += time.perf_counter() - started
            started = time.perf_counter()
            if written is not None:
                written.result()
            timings["write_wait"] += time.perf_counter() - started
            written = writer.submit(write, top, out)
            top = done
        if written is not None:
            started = time.perf_counter()
            written.result()
            timings["write_wait"] += time.perf_counter() - started
