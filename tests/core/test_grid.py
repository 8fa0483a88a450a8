"""The one grid type: strips, bounds, offsets in a coarser grid, and snapping onto a tile."""

from __future__ import annotations

import pytest
from affine import Affine

from component.core.grid import Grid, snapped

ORIGIN = (300010.0, 4900030.0)
"""A tile origin that is not a multiple of 60 m (nor of 120 m)."""


def test_rows_bounds_and_shape() -> None:
    grid = Grid(32631, Affine(10, 0, 300000, 0, -10, 5000000), 100, 50)
    assert grid.resolution == 10.0 and grid.shape == (50, 100)
    assert grid.bounds == (300000, 4999500, 301000, 5000000)
    strip = grid.rows(5, 12)
    assert strip == Grid(32631, Affine(10, 0, 300000, 0, -10, 4999950), 100, 7)
    assert strip.bounds == (300000, 4999880, 301000, 4999950)
    assert grid.rows(0, 50) == grid
    assert Grid(None, Affine(20, 0, 0, 0, -20, 0), 3, 2).bounds == (0, -40, 60, 0)


def test_offset_in_a_coarser_grid() -> None:
    coarse = Grid(32631, Affine(60, 0, 300000, 0, -60, 5000000), 10, 10)
    window = Grid(32631, Affine(10, 0, 300000 + 70, 0, -10, 5000000 - 130), 20, 20)
    assert window.offset_in(coarse) == (6, 13, 7)
    assert coarse.offset_in(coarse) == (1, 0, 0)
    before = Grid(32631, Affine(20, 0, 300000 - 40, 0, -20, 5000000 + 20), 5, 5)
    assert before.offset_in(coarse) == (3, -1, -2), "a grid starting before the coarse origin"
    with pytest.raises(ValueError, match="not a multiple"):
        Grid(32631, Affine(25, 0, 300000, 0, -25, 5000000), 4, 4).offset_in(coarse)
    with pytest.raises(ValueError, match="not a multiple"):
        coarse.offset_in(window)  # the "coarse" grid is finer


@pytest.mark.parametrize("resolution", [60, 120])
def test_a_tile_grid_stays_on_its_origin(resolution: int) -> None:
    """A whole tile (1230 m: not a whole number of pixels) at 60 m and 120 m: anchored on the
    origin, not on multiples of the resolution, its last pixel covering the edge."""
    left, top = ORIGIN
    bounds = (left, top - 1230, left + 1230, top)
    grid = snapped(bounds, resolution, ORIGIN, 32631)
    assert grid.epsg == 32631 and grid.resolution == resolution
    assert (grid.transform.c, grid.transform.f) == ORIGIN
    assert grid.transform.e == -resolution and grid.transform.b == grid.transform.d == 0
    n = -(-1230 // resolution)
    assert grid.shape == (n, n)
    assert grid.bounds[2] >= bounds[2] and grid.bounds[1] <= bounds[1]
    assert grid.bounds[2] - bounds[2] < resolution and bounds[1] - grid.bounds[1] < resolution
    ten = snapped(bounds, 10, ORIGIN, 32631)
    assert ten.shape == (123, 123) and ten.bounds == bounds
    assert grid.offset_in(grid) == (1, 0, 0)
    assert ten.offset_in(grid) == (resolution // 10, 0, 0)


def test_a_window_snaps_outward_onto_the_tile_grid() -> None:
    left, top = ORIGIN
    window = (left + 70, top - 430, left + 250, top - 130)
    grid = snapped(window, 60, ORIGIN, 32631)
    # Left 70 m in -> pixel 1 (60 m); top 130 m down -> row 2 (120 m); right 250 m -> 300 m;
    # bottom 430 m -> 480 m.
    assert grid.bounds == (left + 60, top - 480, left + 300, top - 120)
    assert grid.shape == (6, 4)
    coarse = snapped(window, 120, ORIGIN, 32631)
    assert coarse.bounds == (left, top - 480, left + 360, top - 120)
    assert grid.offset_in(coarse) == (2, 0, 1)
    # Edges already on the grid (up to rounding) do not grow by a pixel.
    exact = (left + 60 + 1e-9, top - 480, left + 300 - 1e-9, top - 120)
    assert snapped(exact, 60, ORIGIN, None) == Grid(None, grid.transform, 4, 6)
