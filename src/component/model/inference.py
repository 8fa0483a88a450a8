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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from component.errors import InvalidParameterError
from component.model.card import ModelCard
from component.model.network import load_model

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


ReadRows = Callable[[int, int], np.ndarray]
"""``read(y0, y1)`` -> (bands, y1 - y0, width) float32 TOA reflectance, NaN where invalid."""
WriteRows = Callable[[int, np.ndarray], None]
"""``write(y0, block)`` with a (bands, h, width) float32 BOA block, NaN where invalid."""


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
        detail_sigma: float = 0.0,
        detail_gain: float = 1.0,
        detail_source: tuple[int | None, ...] = (),
    ) -> None:
        self.engine = engine
        self.detail_sigma, self.detail_gain = detail_sigma, detail_gain
        self.detail_source = detail_source
        self.out_channels = out_channels
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.clip_min, self.clip_max = clip_min, clip_max
        self.nodata_fill = nodata_fill
        self.batch_size = max(1, batch_size)

    @classmethod
    def for_card(cls, engine: Engine, card: ModelCard, batch_size: int | None = None) -> Corrector:
        """*engine* with the card's normalization and tiling (the one place that maps them)."""
        return cls(
            engine,
            out_channels=card.out_channels,
            tile_size=card.tile_size,
            tile_overlap=card.tile_overlap,
            clip_min=card.clip_min,
            clip_max=card.clip_max,
            nodata_fill=card.nodata_fill,
            batch_size=card.batch_size if batch_size is None else batch_size,
            detail_sigma=card.detail_sigma,
            detail_gain=card.detail_gain,
            detail_source=tuple(
                card.input_bands.index(b) if b in card.input_bands else None
                for b in card.output_bands
            ),
        )

    @classmethod
    def from_card(
        cls, card: ModelCard, weights: str | Path | None = None, device: str = "auto"
    ) -> Corrector:
        """The card's network and weights through PyTorch (see ``engines`` for the choice)."""
        return cls.for_card(TorchEngine(load_model(card, weights), device), card)

    def transfer_detail(self, inputs: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Keep the network's smooth correction, take pixel-scale detail from the input.

        The atmosphere varies over kilometres: path reflectance is additive and smooth, so at
        pixel scale surface detail is TOA detail scaled by about the inverse two-way
        transmittance. The network (trained briefly, on little data) reproduces the smooth
        part well and blurs the detail. So, per output band with a matching input band:
        ``out = g*x + blur(pred - g*x)``, i.e. the network's prediction below the Gaussian
        scale ``sigma`` and the input's detail above it, times the gain ``g``. Both come from
        the card (``detail_transfer``); sigma 0 turns this off. Tiles overlap by more than
        3 sigma, so reflect padding at tile borders is blended away.
        """
        if self.detail_sigma <= 0 or not self.detail_source:
            return predictions
        out = predictions.copy()
        sigma = (0, self.detail_sigma, self.detail_sigma)
        for index, source in enumerate(self.detail_source):
            if source is None:
                continue
            detail = self.detail_gain * inputs[:, source]
            smooth = gaussian_filter(predictions[:, index] - detail, sigma, truncate=3.0)
            out[:, index] = detail + smooth
        return np.maximum(out, 0.0)

    def normalize(self, toa: np.ndarray) -> np.ndarray:
        """Card normalization: clip reflectance, replace invalid pixels by the fill value."""
        x = np.clip(toa.astype(np.float32, copy=False), self.clip_min, self.clip_max)
        return np.where(np.isfinite(x), x, np.float32(self.nodata_fill)).astype(np.float32)

    def correct(self, toa: np.ndarray) -> np.ndarray:
        """BOA reflectance on the same grid; NaN wherever any input band was invalid."""
        if toa.ndim != 3:
            raise InvalidParameterError(f"expected a (bands, H, W) array, got shape {toa.shape}")
        _, height, width = toa.shape
        out = np.empty((self.out_channels, height, width), np.float32)

        def write(y0: int, block: np.ndarray) -> None:
            out[:, y0 : y0 + block.shape[1]] = block

        self.stream(lambda y0, y1: toa[:, y0:y1], write, height, width)
        return out

    def stream(
        self,
        read: ReadRows,
        write: WriteRows,
        height: int,
        width: int,
        timings: dict[str, float] | None = None,
    ) -> None:
        """Correct a scene strip by strip: read, infer and write overlap; memory is one strip.

        The scene's tiles are processed one row of tiles (a strip) at a time. Rows above the
        next strip's first row receive no more contributions once a strip is done, so they are
        normalised and handed to *write* at once. A reader thread fetches the next strip (JPEG
        2000 decode, S3 range requests) while the engine runs on the current one, and a writer
        thread compresses finished rows meanwhile, so end-to-end time approaches the slowest
        stage rather than the sum of the three. Memory holds two input strips, one accumulator
        strip and one output block: for a 10 m tile (10980 px wide, 3 bands, 1024 px tiles)
        well under 1 GB, whatever the scene height. Tiles without a valid pixel are skipped:
        Sentinel-2 tiles at the edge of a swath are often half empty.
        """
        timings = timings if timings is not None else {}
        for stage in ("read_wait", "infer", "write_wait"):
            timings.setdefault(stage, 0.0)
        tile_h, ys = axis_layout(height, self.tile_size, self.tile_overlap)
        tile_w, xs = axis_layout(width, self.tile_size, self.tile_overlap)
        weight = np.outer(
            blend_window(tile_h, self.tile_overlap), blend_window(tile_w, self.tile_overlap)
        ).astype(np.float32)
        channels = self.out_channels
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
                scene = self.normalize(rows)
                # A tile with no valid pixel only predicts pixels that end up nodata: skip it.
                # Sentinel-2 tiles at the edge of a swath are often half empty.
                tiles = [
                    Tile(0, x, tile_h, tile_w)
                    for x in xs
                    if not rows_invalid[:, x : x + tile_w].all()
                ]
                for group in _batches(tiles, self.batch_size):
                    inputs = np.stack([_extract(scene, t) for t in group])
                    predictions = self.transfer_detail(inputs, self.engine(inputs))
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
