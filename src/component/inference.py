"""Tiled, overlapped, blended inference over scenes of any size.

A full Sentinel-2 tile (10980² px at 10 m) does not fit a network at once, and cutting it into
hard-edged tiles leaves seams because a CNN sees less context near a tile border. Tiles therefore
overlap and are blended with weights that fall smoothly towards tile edges, then normalised by the
summed weights, so every pixel is a convex combination of the predictions that cover it. The scene
is never resized; scenes smaller than a tile become one reflect-padded tile.

The network runs behind a tiny :class:`Engine` seam (batch in, batch out, numpy) so other runtimes
can be plugged in without touching the tiling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from component.errors import InvalidParameterError
from component.model import load_model
from component.modelcard import ModelCard

MULTIPLE = 32  # the U-Net downsamples 5 times


class Engine(Protocol):
    """Runs the network on a batch ``(N, C_in, h, w)`` float32 and returns ``(N, C_out, h, w)``."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchEngine:
    """PyTorch execution: inference mode, channels_last on CPU (faster convolutions there)."""

    def __init__(self, model: torch.nn.Module, device: str = "auto") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.channels_last = self.device.type == "cpu"
        model = model.to(self.device).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    def __call__(self, batch: np.ndarray) -> np.ndarray:
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


class Corrector:
    """TOA -> BOA over arbitrary (bands, H, W) arrays, NaN marking invalid pixels."""

    def __init__(
        self,
        engine: Engine,
        *,
        out_channels: int,
        tile_size: int,
        tile_overlap: int,
        clip_min: float = 0.0,
        clip_max: float = 1.5,
        nodata_fill: float = 0.0,
        batch_size: int = 4,
    ) -> None:
        self.engine = engine
        self.out_channels = out_channels
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.clip_min, self.clip_max = clip_min, clip_max
        self.nodata_fill = nodata_fill
        self.batch_size = max(1, batch_size)

    @classmethod
    def from_card(
        cls, card: ModelCard, weights: str | Path | None = None, device: str = "auto"
    ) -> Corrector:
        """The component's corrector: card's network, weights, normalization and tiling."""
        engine = TorchEngine(load_model(card, weights), device)
        return cls(
            engine,
            out_channels=card.out_channels,
            tile_size=card.tile_size,
            tile_overlap=card.tile_overlap,
            clip_min=card.clip_min,
            clip_max=card.clip_max,
            nodata_fill=card.nodata_fill,
            batch_size=card.batch_size,
        )

    def normalize(self, toa: np.ndarray) -> np.ndarray:
        """Card normalization: clip reflectance, replace invalid pixels by the fill value."""
        x = np.clip(toa.astype(np.float32, copy=False), self.clip_min, self.clip_max)
        return np.where(np.isfinite(x), x, np.float32(self.nodata_fill)).astype(np.float32)

    def correct(self, toa: np.ndarray) -> np.ndarray:
        """BOA reflectance on the same grid; NaN wherever any input band was invalid."""
        if toa.ndim != 3:
            raise InvalidParameterError(f"expected a (bands, H, W) array, got shape {toa.shape}")
        _, height, width = toa.shape
        invalid = ~np.all(np.isfinite(toa), axis=0)
        scene = self.normalize(toa)
        acc = np.zeros((self.out_channels, height, width), dtype=np.float32)
        wsum = np.zeros((height, width), dtype=np.float32)
        tiles = layout(height, width, self.tile_size, self.tile_overlap)
        weight = np.outer(
            blend_window(tiles[0].h, self.tile_overlap), blend_window(tiles[0].w, self.tile_overlap)
        ).astype(np.float32)
        for group in _batches(tiles, self.batch_size):
            batch = np.stack([_extract(scene, t) for t in group])
            pred = self.engine(batch)
            for t, p in zip(group, pred, strict=True):
                h, w = min(t.h, height - t.y), min(t.w, width - t.x)
                acc[:, t.y : t.y + h, t.x : t.x + w] += p[:, :h, :w] * weight[:h, :w]
                wsum[t.y : t.y + h, t.x : t.x + w] += weight[:h, :w]
        out = acc / wsum
        out[:, invalid] = np.nan
        return out
