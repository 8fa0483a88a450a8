"""Tiled, overlapped, blended inference of a fully convolutional network over any grid.

The atmosphere network runs on the coarse grid (1830² px for a full tile at 60 m), which does not
fit the network at once on every machine, and cutting it into hard-edged tiles leaves seams
because a CNN sees less context near a tile border. Tiles therefore overlap and are blended with
weights that fall smoothly towards tile edges, then normalised by the summed weights, so every
pixel is a convex combination of the predictions that cover it. The grid is never resized; grids
smaller than a tile become one reflect-padded tile.

The network runs behind a tiny :class:`Engine` seam (batch in, batch out, numpy) so runtimes
(ONNX Runtime, PyTorch on CPU or CUDA) can be plugged in without touching the tiling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from component.errors import InvalidParameterError

if TYPE_CHECKING:
    import torch

MULTIPLE = 32  # the U-Net downsamples 5 times


class Engine(Protocol):
    """Runs the network on a batch ``(N, C_in, h, w)`` float32 and returns ``(N, C_out, h, w)``."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchEngine:
    """PyTorch execution: inference mode, channels_last on CPU (faster convolutions there)."""

    def __init__(self, model: torch.nn.Module, device: str = "auto", threads: int = 0) -> None:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.channels_last = self.device.type == "cpu"
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)  # e.g. Dask workers sharing the cores
        model = model.to(self.device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()


def axis_layout(size: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Tile length and start offsets along one axis.

    ``n = ceil((size - overlap) / (tile - overlap))`` tiles are needed; the tile is then shrunk
    (in steps of 32) to the smallest length that still covers ``size`` with at least ``overlap``
    between neighbours, which minimises computation on padding and duplicated pixels. Starts are
    spread evenly, so overlaps are at least ``overlap``. A short axis gets one tile of
    ``ceil32(size)`` that is padded.
    """
    if tile % MULTIPLE or tile <= overlap or overlap < 0:
        raise InvalidParameterError(
            f"tile size {tile} must be a multiple of {MULTIPLE} and larger than overlap {overlap}"
        )
    n = max(1, math.ceil((size - overlap) / (tile - overlap)))
    if n == 1:
        length = min(tile, MULTIPLE * math.ceil(size / MULTIPLE))
        return length, [0]
    needed = math.ceil((size + (n - 1) * overlap) / n)
    length = min(tile, MULTIPLE * math.ceil(needed / MULTIPLE))
    starts = [round(i * (size - length) / (n - 1)) for i in range(n)]
    return length, starts


def blend_window(length: int, overlap: int) -> np.ndarray:
    """1-D weights: a raised-cosine ramp over ``overlap`` px at each end, 1 elsewhere, never 0."""
    w = np.ones(length, dtype=np.float64)
    ramp = min(overlap, length // 2)
    if ramp > 0:
        i = np.arange(ramp)
        edge = 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / ramp)
        w[:ramp] = edge
        w[length - ramp :] = edge[::-1]
    return w


@dataclass(frozen=True)
class Tile:
    """One tile window in scene coordinates (may extend past a short axis: then padded)."""

    y: int
    x: int
    h: int
    w: int


def layout(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """All tiles of a scene, row-major."""
    th, ys = axis_layout(height, tile, overlap)
    tw, xs = axis_layout(width, tile, overlap)
    return [Tile(y, x, th, tw) for y in ys for x in xs]


def _extract(scene: np.ndarray, t: Tile) -> np.ndarray:
    """The tile's pixels, reflect-padded where the tile is larger than the scene."""
    part = scene[:, t.y : t.y + t.h, t.x : t.x + t.w]
    pad_y, pad_x = t.h - part.shape[1], t.w - part.shape[2]
    if pad_y or pad_x:
        part = np.pad(part, ((0, 0), (0, pad_y), (0, pad_x)), mode="reflect")
    return part


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for i in range(0, len(tiles), size):
        yield tiles[i : i + size]


class TiledNetwork:
    """A network over arbitrary (channels, H, W) arrays, tile by tile, blended."""

    def __init__(
        self,
        engine: Engine,
        *,
        out_channels: int,
        tile_size: int,
        tile_overlap: int,
        batch_size: int = 1,
    ) -> None:
        self.engine = engine
        self.out_channels = out_channels
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.batch_size = max(1, batch_size)

    def __call__(self, x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Outputs (out_channels, H, W) for finite inputs *x*; tiles where *valid* (H, W) has
        no True pixel are skipped and left NaN (half-empty swath-edge tiles cost half)."""
        if x.ndim != 3:
            raise InvalidParameterError(f"expected a (channels, H, W) array, got {x.shape}")
        _, height, width = x.shape
        tiles = layout(height, width, self.tile_size, self.tile_overlap)
        th, tw = tiles[0].h, tiles[0].w
        weight = np.outer(
            blend_window(th, self.tile_overlap), blend_window(tw, self.tile_overlap)
        ).astype(np.float32)
        acc = np.zeros((self.out_channels, height, width), np.float32)
        wsum = np.zeros((height, width), np.float32)
        if valid is not None:
            tiles = [t for t in tiles if valid[t.y : t.y + t.h, t.x : t.x + t.w].any()]
        for group in _batches(tiles, self.batch_size):
            predictions = self.engine(np.stack([_extract(x, t) for t in group]))
            for tile, prediction in zip(group, predictions, strict=True):
                h, w = min(th, height - tile.y), min(tw, width - tile.x)
                rows, cols = slice(tile.y, tile.y + h), slice(tile.x, tile.x + w)
                acc[:, rows, cols] += prediction[:, :h, :w] * weight[:h, :w]
                wsum[rows, cols] += weight[:h, :w]
        out = np.full_like(acc, np.nan)
        np.divide(acc, wsum, out=out, where=wsum > 0)
        return out
