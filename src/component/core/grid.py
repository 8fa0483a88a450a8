"""The one raster grid type: where pixels are, for readers, the corrector and writers alike."""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine

_EPS = 1e-6


@dataclass(frozen=True)
class Grid:
    """A north-up grid of square pixels: CRS, affine transform (pixel corners) and shape.

    *epsg* is ``None`` where only relative positions matter (a chip's bands on one grid, the
    corrector's coarse and fine grids of one scene share its CRS).
    """

    epsg: int | None
    transform: Affine
    width: int
    height: int

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the CRS."""
        left, top = self.transform.c, self.transform.f
        return (
            left,
            top + self.transform.e * self.height,
            left + self.transform.a * self.width,
            top,
        )

    def rows(self, start: int, stop: int) -> Grid:
        """The grid of rows ``start:stop`` (a strip)."""
        return Grid(
            self.epsg, self.transform @ Affine.translation(0, start), self.width, stop - start
        )

    def offset_in(self, coarse: Grid) -> tuple[int, int, int]:
        """``(k, row0, col0)``: *coarse*'s pixel is ``k x k`` of this grid's, and this grid's
        first pixel lies ``row0`` rows and ``col0`` columns from *coarse*'s origin (both
        anchored on the same origin, so the offsets are whole pixels)."""
        ratio = coarse.resolution / self.resolution
        k = round(ratio)
        if k < 1 or abs(ratio - k) > _EPS:
            raise ValueError(f"{coarse.resolution} m is not a multiple of {self.resolution} m")
        res = self.resolution
        row0 = round((coarse.transform.f - self.transform.f) / res)
        col0 = round((self.transform.c - coarse.transform.c) / res)
        return k, row0, col0


def snapped(
    bounds: tuple[float, float, float, float],
    resolution: float,
    origin: tuple[float, float],
    epsg: int | None,
) -> Grid:
    """The grid of *resolution* anchored at *origin* ``(x, y)`` that covers *bounds* ``(left,
    bottom, right, top)``, snapped outward (a tile's grid at any resolution, or a window of
    it: Sentinel-2 tile origins are not multiples of 60 m, so snapping to multiples of the
    resolution would shift the pixels)."""
    c, f = origin
    left, bottom, right, top = bounds
    x0 = c + math.floor((left - c) / resolution + _EPS) * resolution
    y0 = f - math.floor((f - top) / resolution + _EPS) * resolution
    x1 = c + math.ceil((right - c) / resolution - _EPS) * resolution
    y1 = f - math.ceil((f - bottom) / resolution - _EPS) * resolution
    width, height = round((x1 - x0) / resolution), round((y0 - y1) / resolution)
    return Grid(epsg, Affine(resolution, 0.0, x0, 0.0, -resolution, y0), width, height)
