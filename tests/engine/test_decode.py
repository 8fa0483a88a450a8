"""The survey: every input band read once at 60 m, onto the coarse grid and the survey's scene
grid, before any finer decode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import rasterio

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.core.blocks import block_mean
from component.core.settings import Settings
from component.engine.decode import (
    CLEAR_SKY_B10,
    decode_pixels,
    fine_scene_stack,
    read_toa,
    scene_grid,
    scene_stack,
    survey,
    survey_grid,
)
from component.io import l1c, load

Factory = Callable[..., dict[str, Any]]
SETTINGS = Settings()


def test_survey_grids_and_decode_cost(l1c_product: Factory) -> None:
    product = l1c.from_item(l1c_product(size_10m=96))
    at_10 = load.plan(product, 10, None, 120, SETTINGS)
    at_60 = load.plan(product, 60, None, 120, SETTINGS)
    assert at_10.survey == at_60.survey and set(at_10.survey) == set(L1C_BANDS)
    assert {g.resolution for g in at_10.survey.values()} == {60}
    assert {b: at_60.grids[b] for b in L2A_BANDS} == {b: at_60.survey[b] for b in L2A_BANDS}
    assert survey_grid(at_10) == survey_grid(at_60) == scene_grid(at_60)
    assert scene_grid(at_10).resolution == 20
    survey_10m = decode_pixels(at_10.survey["B02"], "B02")
    # the 40 m levels of the 10 m and 20 m bands, then the native 60 m bands
    assert survey_10m == decode_pixels(at_10.survey["B05"], "B05")
    assert survey_10m > decode_pixels(at_10.survey["B01"], "B01")
    assert decode_pixels(at_10.grids["B02"], "B02") == 36 * survey_10m // 2.25


def test_scene_stack_fills_missing_bands() -> None:
    given = {"B02": np.full((2, 3), 0.1, np.float32), "B12": np.full((2, 3), 0.2, np.float32)}
    stack = scene_stack(given, (2, 3))
    assert stack.shape == (13, 2, 3) and stack.dtype == np.float32
    assert (stack[L1C_BANDS.index("B02")] == np.float32(0.1)).all()
    assert (stack[L1C_BANDS.index("B12")] == np.float32(0.2)).all()
    assert (stack[L1C_BANDS.index("B10")] == np.float32(CLEAR_SKY_B10)).all()
    others = [i for i, b in enumerate(L1C_BANDS) if b not in ("B02", "B12", "B10")]
    assert np.isnan(stack[others]).all()


@pytest.mark.parametrize("resolution", [10, 60])
def test_survey_reads_every_input_band_at_60m(l1c_product: Factory, resolution: int) -> None:
    """Each input band as read on its 60 m survey grid (a 10 m band averaged 6 x 6, B01 as it
    is in its file), on the survey's scene grid and averaged 2 x 2 onto the coarse grid; the
    DN kept of the bands whose product grid is the survey's (B01 and B09; all at 60 m)."""
    item = l1c_product(size_10m=96, seed=3, nodata_fraction=0.1, saturated_fraction=0.02)
    product = l1c.from_item(item)
    plan = load.plan(product, resolution, None, 120, SETTINGS)
    seen: list[str] = []
    surveyed = survey(product, plan, SETTINGS, on_band=seen.append)
    assert sorted(seen) == sorted(L1C_BANDS), "one progress call per input band"
    assert surveyed.toa.shape == (13, 16, 16) and set(surveyed.coarse_toa) == set(L1C_BANDS)
    kept = {"B01", "B09"} if resolution == 10 else set(L2A_BANDS)
    assert set(surveyed.dn) == kept
    for band in ("B02", "B05", "B01", "B10"):
        with rasterio.open(item["assets"][band]["href"]) as source:
            native = source.read(1)
        dn = load.read_band(product, band, plan.survey[band], SETTINGS)
        if band in ("B01", "B10"):
            np.testing.assert_array_equal(dn, native)
        else:  # averaged from the file's pixels, nodata left out
            toa = load.to_toa(native, product.radiometry)
            k = 60 // (10 if band == "B02" else 20)
            close = np.abs(load.to_toa(dn, product.radiometry) - block_mean(toa, k)) < 2e-4
            assert close[np.isfinite(block_mean(toa, k)) & (dn > 0)].mean() > 0.9, band
        toa = load.to_toa(dn, product.radiometry)
        index = L1C_BANDS.index(band)
        np.testing.assert_array_equal(surveyed.toa[index], toa, err_msg=band)
        np.testing.assert_allclose(surveyed.coarse_toa[band], block_mean(toa, 2), rtol=1e-6,
                                   equal_nan=True, err_msg=band)  # fmt: skip
        if band in kept:
            np.testing.assert_array_equal(surveyed.dn[band], dn, err_msg=band)


def test_the_fine_scene_stack_takes_the_60m_bands_from_the_survey(l1c_product: Factory) -> None:
    """At 10 m the scene grid is 20 m: the bands the pass decodes finer are left to it, B01,
    B09 and B10 are the survey's, each 60 m pixel repeated 3 x 3."""
    product = l1c.from_item(l1c_product(size_10m=96, seed=2, nodata_fraction=0.1))
    plan = load.plan(product, 10, None, 120, SETTINGS)
    surveyed = survey(product, plan, SETTINGS)
    decoded = tuple(b for b in L2A_BANDS if plan.grids[b].resolution < 60)
    stack = fine_scene_stack(surveyed, plan, decoded)
    assert stack.shape == (13, 48, 48)
    for band in L1C_BANDS:
        got = stack[L1C_BANDS.index(band)]
        if band in decoded:
            assert (got == 0).all(), band
        else:
            values = surveyed.toa[L1C_BANDS.index(band)]
            expected = np.repeat(np.repeat(values, 3, 0), 3, 1)
            np.testing.assert_array_equal(got, expected, err_msg=band)


def test_read_toa_reads_a_window_as_the_pass_does(l1c_product: Factory) -> None:
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


def test_without_b10_a_clear_sky_stands_in(l1c_product: Factory) -> None:
    item = l1c_product(size_10m=96, seed=2)
    del item["assets"]["B10"]
    product = l1c.from_item(item)
    plan = load.plan(product, 60, None, 120, SETTINGS)
    assert "B10" not in plan.inputs and "B10" not in plan.survey
    surveyed = survey(product, plan, SETTINGS)
    assert (surveyed.toa[L1C_BANDS.index("B10")] == np.float32(CLEAR_SKY_B10)).all()
    assert "B10" not in surveyed.coarse_toa
