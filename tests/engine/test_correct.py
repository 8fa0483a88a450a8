"""One window of one band corrected (DN or TOA in), and AOT / water vapour on a window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import rasterio

from component.core.settings import Settings
from component.engine.correct import correct_window, field_window
from component.engine.decode import decode_bands
from component.io import l1c, load
from component.io.write import atmosphere_to_dn, reflectance_to_dn
from component.model.card import load_card
from component.model.engines import build_scene_corrector
from support.synthetic import make_l1c_product

SETTINGS = Settings()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A synthetic 10 m product (nodata and saturated pixels), its plan and atmosphere."""
    card = load_card()
    corrector = build_scene_corrector(card)[0]
    root = tmp_path_factory.mktemp("correct")
    item = make_l1c_product(
        root / "l1c", size_10m=192, seed=4, nodata_fraction=0.1, saturated_fraction=0.02
    )
    product = l1c.from_item(item)
    plan = load.plan(product, 10, None, card.atmosphere_grid_m, SETTINGS)
    decoded = decode_bands(product, plan, SETTINGS, root)
    toa = np.stack([decoded.coarse_toa[b] for b in corrector.input_bands])
    state = corrector.estimate(toa, plan.coarse, None)
    return item, product, plan, corrector, state


def _dn(item: dict[str, Any], band: str) -> np.ndarray:
    with rasterio.open(item["assets"][band]["href"]) as source:
        return source.read(1)


@pytest.mark.parametrize("band", ["B02", "B05", "B01"])
@pytest.mark.parametrize(("y0", "y1"), [(0, None), (17, 53), (5, 6)])
def test_a_dn_window_is_the_band_corrected_and_quantized(
    scene: Any, band: str, y0: int, y1: int | None
) -> None:
    """DN in, L2A DN out: the rows of the whole band's correction, as written; L1C nodata
    and saturated pixels are nodata (0)."""
    item, product, plan, corrector, state = scene
    grid = plan.grids[band]
    y1 = grid.height if y1 is None else min(y1, grid.height)
    dn = _dn(item, band)
    assert dn.shape == grid.shape
    out = correct_window(corrector, state, band, grid, y0, dn[y0:y1], product.radiometry)
    assert out.dtype == np.uint16 and out.shape == (y1 - y0, grid.width)
    whole = corrector.correct(band, load.to_toa(dn, product.radiometry), grid, state)
    np.testing.assert_array_equal(out, reflectance_to_dn(whole)[y0:y1])
    invalid = (dn[y0:y1] == 0) | (dn[y0:y1] == 65535)
    assert ((out == 0) == invalid).all()


@pytest.mark.parametrize("band", ["B04", "B11"])
def test_a_toa_window_is_surface_reflectance(scene: Any, band: str) -> None:
    item, product, plan, corrector, state = scene
    grid = plan.grids[band]
    toa = load.to_toa(_dn(item, band), product.radiometry)
    out = correct_window(corrector, state, band, grid, 9, toa[9:31])
    assert out.dtype == np.float32 and out.shape == (22, grid.width)
    whole = corrector.correct(band, toa, grid, state)
    np.testing.assert_array_equal(out, whole[9:31])
    assert (np.isnan(out) == np.isnan(toa[9:31])).all(), "NaN stays NaN, valid stays valid"
    # The DN path makes the same reflectance, quantized.
    dn = _dn(item, band)[9:31]
    quantized = correct_window(corrector, state, band, grid, 9, dn, product.radiometry)
    np.testing.assert_array_equal(quantized, reflectance_to_dn(out))


@pytest.mark.parametrize("name", ["aot", "water"])
def test_field_window_is_the_bilinear_field_of_the_rows(scene: Any, name: str) -> None:
    item, _, plan, corrector, state = scene
    grid = plan.grids["B02"]
    no_data = _dn(item, "B02") == 0
    assert no_data.any()
    field = corrector.field(name, grid, state)
    for y0, y1 in ((0, grid.height), (17, 53), (100, 101)):
        written = field_window(state, name, grid, y0, no_data[y0:y1], True)
        assert written.dtype == np.uint16
        np.testing.assert_array_equal(written, atmosphere_to_dn(field, no_data)[y0:y1])
        assert (written[no_data[y0:y1]] == 0).all() and (written[~no_data[y0:y1]] > 0).all()
        values = field_window(state, name, grid, y0, no_data[y0:y1], False)
        assert values.dtype == np.float32
        expected = np.where(no_data, np.float32(np.nan), field)[y0:y1]
        np.testing.assert_array_equal(values, expected)
