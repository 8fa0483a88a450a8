"""One product's rasters: coarse means, both passes over the bands, and what lands in the files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

from component.io import load, stac_bridge
from component.io.load import Grid
from component.io.product import (
    CoarseMean,
    Product,
    decode_bands,
    job_order,
    sampling,
    write_product,
)
from component.io.write import (
    ProductWriter,
    atmosphere_to_dn,
    quicklook_bytes,
    reflectance_to_dn,
)
from component.model.card import load_card
from component.model.engines import build_scene_corrector

Factory = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(("col0", "row0"), [(0, 0), (5, 7)])
def test_coarse_mean_is_the_nan_aware_block_mean(col0: int, row0: int) -> None:
    """Strips of any height, a window offset inside the coarse grid: the plain block mean."""
    rng = np.random.default_rng(0)
    k, coarse = 6, Grid(32631, Affine(60, 0, 300000, 0, -60, 4900020), 9, 8)
    height, width = coarse.height * k - row0 - 3, coarse.width * k - col0 - 2
    grid = Grid(32631, Affine(10, 0, 300000 + 10 * col0, 0, -10, 4900020 - 10 * row0), width,
                height)  # fmt: skip
    toa = rng.uniform(0, 0.3, (height, width)).astype(np.float32)
    toa[rng.random(toa.shape) < 0.2] = np.nan
    toa[: 2 * k, : 2 * k] = np.nan  # whole coarse pixels without a valid one
    mean = CoarseMean(grid, coarse)
    for y0 in range(0, height, 13):
        mean.add(y0, toa[y0 : y0 + 13])
    full = np.full((coarse.height * k, coarse.width * k), np.nan, np.float32)
    full[row0 : row0 + height, col0 : col0 + width] = toa
    blocks = full.reshape(coarse.height, k, coarse.width, k)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmean(blocks, axis=(1, 3))
    np.testing.assert_allclose(mean.mean(), expected, rtol=1e-5)
    assert np.isnan(mean.mean()[0, 0])


def test_sampling_and_job_order(l1c_product: Factory) -> None:
    assert sampling(10, 10) == "original"
    assert sampling(60, 10) == "downsampled" and sampling(10, 120) == "upsampled"
    item = l1c_product(size_10m=96)
    order = job_order(load.plan(item, 10, None, 120))
    assert order[:3] == ["B02", "B03", "B04"] and order[3] == "B08"
    assert set(order[-2:]) == {"B01", "B09"} and len(order) == 12


@pytest.fixture(scope="module")
def corrector() -> Any:
    card = load_card()
    return build_scene_corrector(card)[0], card.atmosphere_grid_m


def _product(item: dict[str, Any], resolution: int, corrector: Any, folder: Path) -> Any:
    corrector, coarse_m = corrector
    plan = load.plan(item, resolution, None, coarse_m)
    radiometry = stac_bridge.radiometry(item)
    decoded = decode_bands(item, plan, radiometry, load.gdal_env(), folder)
    toa = np.stack([decoded.coarse_toa[b] for b in corrector.input_bands])
    state = corrector.estimate(toa, plan.coarse.raster(), None)
    writer = ProductWriter(folder)
    write_product(Product(plan, corrector, state, radiometry, decoded.scratch), writer)
    assets = writer.finish()
    writer.close()
    return plan, state, {a.key: a for a in assets}, decoded


def test_both_passes_write_every_band_on_its_grid(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    """At 10 m: each band's file is its product grid, its DN the corrector's BOA of its TOA."""
    item = l1c_product(size_10m=192, seed=4, nodata_fraction=0.1, saturated_fraction=0.02)
    plan, state, assets, decoded = _product(item, 10, corrector, tmp_path)
    keys = {f"{b}_{round(g.resolution)}m" for b, g in plan.grids.items()}
    assert set(assets) == keys | {"TCI_10m", "AOT_10m", "WVP_10m", "thumbnail"}
    assert not list(tmp_path.glob(".*")), "scratch files and drafts are removed"
    assert set(decoded.coarse_toa) == set(load.INPUT_BANDS)
    radiometry = stac_bridge.radiometry(item)
    model = corrector[0]
    for band, grid in plan.grids.items():
        asset = assets[f"{band}_{round(grid.resolution)}m"]
        with rasterio.open(asset.path) as dataset:
            assert dataset.transform == grid.transform
            assert dataset.shape == (grid.height, grid.width)
            written = dataset.read(1)
        with rasterio.open(item["assets"][band]["href"]) as source:
            dn = source.read(1)
        assert dn.shape == written.shape, band
        expected = model.correct(band, load.to_toa(dn, radiometry), grid.raster(), state)
        np.testing.assert_array_equal(written, reflectance_to_dn(expected), err_msg=band)
        assert ((written == 0) == ((dn == 0) | (dn == 65535))).all(), band
    grid = plan.grids["B02"]
    with rasterio.open(item["assets"]["B02"]["href"]) as source:
        no_data = source.read(1) == 0
    for name, key in (("aot", "AOT_10m"), ("water", "WVP_10m")):
        with rasterio.open(assets[key].path) as dataset:
            values = dataset.read(1)
        field = model.field(name, grid.raster(), state)
        np.testing.assert_array_equal(values, atmosphere_to_dn(field, no_data))
        assert (values[no_data] == 0).all() and (values[~no_data] > 0).all()
    with rasterio.open(assets["TCI_10m"].path) as dataset:
        tci = dataset.read()
    rgb = []
    for band in ("B04", "B03", "B02"):
        with rasterio.open(assets[f"{band}_10m"].path) as dataset:
            dn = dataset.read(1).astype(np.float32)
        rgb.append(np.where(dn == 0, np.nan, dn * np.float32(1e-4) - np.float32(0.1)))
    np.testing.assert_array_equal(tci, quicklook_bytes(np.stack(rgb)))


def test_at_60m_every_band_is_written_at_60m(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    item = l1c_product(size_10m=192, seed=5)
    _, _, assets, _ = _product(item, 60, corrector, tmp_path)
    assert {a.grid.resolution for a in assets.values() if a.grid is not None} == {60}
    assert assets["B01_60m"].sampling == "original"
    assert assets["B05_60m"].sampling == "downsampled"
    with rasterio.open(assets["B05_60m"].path) as dataset:
        assert dataset.shape == (32, 32)
