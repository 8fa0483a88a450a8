"""Pass 1: every band decoded once onto the coarse and scene grids, its DN spilled."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.blocks import block_mean
from component.core.settings import Settings
from component.engine.decode import (
    CLEAR_SKY_B10,
    decode_bands,
    decode_order,
    decode_pixels,
    read_toa,
    scene_grid,
    scene_stack,
    strip_count,
)
from component.io import l1c, load
from component.io.load import STRIP_ROWS

Factory = Callable[..., dict[str, Any]]
SETTINGS = Settings()


def test_decode_cost_and_order(l1c_product: Factory) -> None:
    product = l1c.from_item(l1c_product(size_10m=96))
    at_60 = load.plan(product, 60, None, 120, SETTINGS)
    # the 40 m levels of the 10 m and 20 m bands, then the native 60 m bands
    assert decode_pixels(at_60, "B02") == decode_pixels(at_60, "B05") > decode_pixels(at_60, "B01")
    assert decode_order(at_60)[-2:] == ["B01", "B09"]
    at_10 = load.plan(product, 10, None, 120, SETTINGS)
    assert decode_order(at_10)[:4] == ["B02", "B03", "B04", "B08"]
    assert sorted(decode_order(at_10)) == sorted(at_10.grids)
    assert strip_count(at_10) == sum(-(-g.height // STRIP_ROWS) for g in at_10.grids.values())


def test_scene_stack_fills_missing_bands() -> None:
    given = {"B02": np.full((2, 3), 0.1, np.float32), "B12": np.full((2, 3), 0.2, np.float32)}
    stack = scene_stack(given, (2, 3))
    assert stack.shape == (13, 2, 3) and stack.dtype == np.float32
    assert (stack[L1C_BANDS.index("B02")] == np.float32(0.1)).all()
    assert (stack[L1C_BANDS.index("B12")] == np.float32(0.2)).all()
    assert (stack[L1C_BANDS.index("B10")] == np.float32(CLEAR_SKY_B10)).all()
    others = [i for i, b in enumerate(L1C_BANDS) if b not in ("B02", "B12", "B10")]
    assert np.isnan(stack[others]).all()


def test_decode_puts_every_input_band_on_the_scene_grid(
    l1c_product: Factory, tmp_path: Path
) -> None:
    """At 10 m the scene grid is B05's 20 m grid: 10 m bands averaged 2 x 2, 20 m bands as
    they are, B01, B09 and B10 (60 m) repeated, all from the one decode."""
    item = l1c_product(size_10m=96, seed=2, nodata_fraction=0.1)
    product = l1c.from_item(item)
    plan = load.plan(product, 10, None, 120, SETTINGS)
    grid = scene_grid(plan)
    assert grid == plan.grids["B05"] and grid.resolution == 20
    radiometry = product.radiometry
    strips: list[str] = []
    decoded = decode_bands(product, plan, SETTINGS, tmp_path, grid, on_strip=strips.append)
    assert decoded.scene_toa is not None and decoded.scene_toa.shape == (13, 48, 48)
    for band in ("B02", "B05", "B01", "B10"):
        with rasterio.open(item["assets"][band]["href"]) as source:
            toa = load.to_toa(source.read(1), radiometry)
        k = 20 // NATIVE_RESOLUTION[band] if band in ("B02", "B05") else 0
        if k:
            expected = block_mean(toa[None], k)[0] if k > 1 else toa
        else:
            expected = np.repeat(np.repeat(toa, 3, 0), 3, 1)
        got = decoded.scene_toa[L1C_BANDS.index(band)]
        np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True, err_msg=band)
    assert set(decoded.coarse_toa) == set(L1C_BANDS)
    # The progress of pass 1: one call per strip of each product band (not B10).
    assert len(strips) == strip_count(plan)
    assert Counter(strips) == {b: -(-g.height // STRIP_ROWS) for b, g in plan.grids.items()}


def test_decode_spills_the_dn_and_averages_onto_the_coarse_grid(
    l1c_product: Factory, tmp_path: Path
) -> None:
    """Without a scene grid: each product band's DN as read, raw on scratch, and each input
    band's valid-TOA mean on the coarse grid (B10 read there directly)."""
    item = l1c_product(size_10m=96, seed=3, nodata_fraction=0.1, saturated_fraction=0.02)
    product = l1c.from_item(item)
    plan = load.plan(product, 10, None, 120, SETTINGS)
    decoded = decode_bands(product, plan, SETTINGS, tmp_path)
    assert decoded.scene_toa is None
    assert set(decoded.scratch) == set(plan.grids) and set(decoded.coarse_toa) == set(L1C_BANDS)
    for band in ("B02", "B05", "B09"):
        grid = plan.grids[band]
        with rasterio.open(item["assets"][band]["href"]) as source:
            dn = source.read(1)
        spilled = np.fromfile(decoded.scratch[band], np.uint16).reshape(grid.shape)
        np.testing.assert_array_equal(spilled, dn, err_msg=band)
        k = round(plan.coarse.resolution / grid.resolution)
        expected = block_mean(load.to_toa(dn, product.radiometry), k)
        np.testing.assert_allclose(decoded.coarse_toa[band], expected, rtol=1e-5,
                                   equal_nan=True, err_msg=band)  # fmt: skip
        assert decoded.coarse_toa[band].shape == plan.coarse.shape
    assert decoded.coarse_toa["B10"].shape == plan.coarse.shape
    assert np.isfinite(decoded.coarse_toa["B10"]).any()


def test_read_toa_reads_a_window_as_pass_1_does(l1c_product: Factory) -> None:
    item = l1c_product(size_10m=96, seed=6, nodata_fraction=0.1)
    product = l1c.from_item(item)
    plan = load.plan(product, 10, None, 120, SETTINGS)
    grid = plan.grids["B03"]
    with rasterio.open(item["assets"]["B03"]["href"]) as source:
        dn = source.read(1)
    toa = read_toa(product, "B03", grid, 17, 53, SETTINGS)
    assert toa.shape == (36, grid.width)
    expected = load.to_toa(dn[17:53], product.radiometry)
    np.testing.assert_array_equal(toa, expected)
    assert np.isnan(toa[dn[17:53] == 0]).all()


def test_without_b10_a_clear_sky_stands_in(l1c_product: Factory, tmp_path: Path) -> None:
    item = l1c_product(size_10m=96, seed=2)
    del item["assets"]["B10"]
    product = l1c.from_item(item)
    plan = load.plan(product, 60, None, 120, SETTINGS)
    assert "B10" not in plan.inputs
    decoded = decode_bands(product, plan, SETTINGS, tmp_path, scene_grid(plan))
    assert decoded.scene_toa is not None
    assert (decoded.scene_toa[L1C_BANDS.index("B10")] == np.float32(CLEAR_SKY_B10)).all()
    assert "B10" not in decoded.coarse_toa
