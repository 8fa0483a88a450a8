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
    CLEAR_SKY_B10,
    CoarseMean,
    Product,
    SceneMean,
    block_sums,
    classify_scene,
    coarse_exclude,
    decode_bands,
    decode_order,
    decode_pixels,
    job_order,
    nearest,
    sampling,
    scene_grid,
    write_product,
)
from component.io.write import (
    CLOUD_NODATA,
    ProductWriter,
    atmosphere_to_dn,
    quicklook_bytes,
    reflectance_to_dn,
)
from component.model.card import load_card
from component.model.correction import L1C_BANDS, block_mean
from component.model.engines import build_scene_corrector
from component.model.scene_classification import SceneClass, classify

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
    at_60 = load.plan(item, 60, None, 120)
    # the 40 m levels of the 10 m and 20 m bands, then the native 60 m bands
    assert decode_pixels(at_60, "B02") == decode_pixels(at_60, "B05") > decode_pixels(at_60, "B01")
    assert decode_order(at_60)[-2:] == ["B01", "B09"]
    assert decode_order(load.plan(item, 10, None, 120))[:4] == ["B02", "B03", "B04", "B08"]


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


@pytest.mark.parametrize(("col0", "row0"), [(0, 0), (1, 1), (3, 2)])
def test_scene_mean_is_the_coarse_mean_in_float32(col0: int, row0: int) -> None:
    """The lean accumulator of the scene grid agrees with :class:`CoarseMean`, whatever the
    band window's offset (bbox windows snap each grid on its own), strips included."""
    rng = np.random.default_rng(3)
    band = Grid(32633, Affine(10, 0, 1000 + 10 * col0, 0, -10, 9000 - 10 * row0), 37, 29)
    scene = Grid(32633, Affine(20, 0, 1000, 0, -20, 9000), 21, 17)
    toa = rng.uniform(0.0, 0.5, (29, 37)).astype(np.float32)
    toa[rng.random(toa.shape) < 0.2] = np.nan
    out = np.zeros((scene.height, scene.width), np.float32)
    lean, reference = SceneMean(band, scene, out), CoarseMean(band, scene)
    for y0 in range(0, 29, 7):
        lean.add(y0, toa[y0 : y0 + 7])
        reference.add(y0, toa[y0 : y0 + 7])
    lean.finish()
    np.testing.assert_allclose(out, reference.mean(), rtol=1e-6, equal_nan=True)


def test_nearest_samples_a_coarser_band_at_pixel_centres() -> None:
    source = Grid(32633, Affine(60, 0, 940, 0, -60, 9060), 4, 3)
    target = Grid(32633, Affine(20, 0, 1000, 0, -20, 9000), 12, 10)
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = np.empty((10, 12), np.float32)
    nearest(values, source, target, out)
    # Target pixel (0, 0) has its centre at (1010, 8990): source column 1, row 1.
    assert out[0, 0] == out[0, 2] == out[2, 0] == values[1, 1]
    assert out[0, 3] == values[1, 2] and out[3, 0] == values[2, 1]  # centres 1070, 8930
    assert np.isnan(out[:, 9:]).all() and np.isnan(out[6:]).all(), "outside the source"
    assert not np.isnan(out[:6, :9]).any()


def test_decode_puts_every_input_band_on_the_scene_grid(
    l1c_product: Factory, tmp_path: Path
) -> None:
    """At 10 m the scene grid is B05's 20 m grid: 10 m bands averaged 2 x 2, 20 m bands as
    they are, B01, B09 and B10 (60 m) repeated, all from the one decode."""
    item = l1c_product(size_10m=96, seed=2, nodata_fraction=0.1)
    plan = load.plan(item, 10, None, 120)
    grid = scene_grid(plan)
    assert grid == plan.grids["B05"] and grid.resolution == 20
    radiometry = stac_bridge.radiometry(item)
    decoded = decode_bands(item, plan, radiometry, load.gdal_env(), tmp_path, grid)
    assert decoded.scene_toa is not None and decoded.scene_toa.shape == (13, 48, 48)
    for band in ("B02", "B05", "B01", "B10"):
        with rasterio.open(item["assets"][band]["href"]) as source:
            toa = load.to_toa(source.read(1), radiometry)
        k = 20 // load.NATIVE_RESOLUTION[band] if band in ("B02", "B05") else 0
        if k:
            expected = block_mean(toa[None], k)[0] if k > 1 else toa
        else:
            expected = np.repeat(np.repeat(toa, 3, 0), 3, 1)
        got = decoded.scene_toa[L1C_BANDS.index(band)]
        np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True, err_msg=band)
    assert set(decoded.coarse_toa) == set(load.INPUT_BANDS)


def test_without_b10_a_clear_sky_stands_in(l1c_product: Factory, tmp_path: Path) -> None:
    item = l1c_product(size_10m=96, seed=2)
    del item["assets"]["B10"]
    plan = load.plan(item, 60, None, 120)
    radiometry = stac_bridge.radiometry(item)
    decoded = decode_bands(item, plan, radiometry, load.gdal_env(), tmp_path, scene_grid(plan))
    assert decoded.scene_toa is not None
    assert (decoded.scene_toa[L1C_BANDS.index("B10")] == np.float32(CLEAR_SKY_B10)).all()
    scene = classify_scene(decoded, plan, None)
    assert decoded.scene_toa is None, "the 13-band stack is released"
    assert any("no B10" in note for note in scene.notes)
    assert not (scene.classification.scl == SceneClass.THIN_CIRRUS).any()


def test_scl_and_cld_are_written_on_the_scene_grid(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    model, coarse_m = corrector
    item = l1c_product(size_10m=192, seed=4, nodata_fraction=0.1)
    plan = load.plan(item, 10, None, coarse_m)
    radiometry = stac_bridge.radiometry(item)
    grid = scene_grid(plan)
    decoded = decode_bands(item, plan, radiometry, load.gdal_env(), tmp_path, grid)
    scene = classify_scene(decoded, plan, None)
    toa = np.stack([decoded.coarse_toa[b] for b in model.input_bands])
    state = model.estimate(toa, plan.coarse.raster(), None, exclude=scene.exclude)
    writer = ProductWriter(tmp_path)
    write_product(Product(plan, model, state, radiometry, decoded.scratch, scene), writer)
    assets = {a.key: a for a in writer.finish()}
    writer.close()
    assert list(assets)[-3:] == ["SCL_20m", "CLD_20m", "thumbnail"]
    with rasterio.open(assets["SCL_20m"].path) as dataset:
        assert dataset.transform == grid.transform and dataset.shape == (96, 96)
        assert dataset.dtypes[0] == "uint8" and dataset.nodata == 0
        scl = dataset.read(1)
    with rasterio.open(assets["CLD_20m"].path) as dataset:
        assert dataset.nodata == CLOUD_NODATA
        cld = dataset.read(1)
    np.testing.assert_array_equal(scl, scene.classification.scl)
    no_data = scl == SceneClass.NO_DATA
    assert no_data.any() and (cld[no_data] == CLOUD_NODATA).all()
    assert (cld[~no_data] <= 100).all()
    properties = scene.properties()
    assert sum(v for k, v in properties["statistics"].items() if k != "no_data") == (
        pytest.approx(100.0, abs=0.01)
    )
    assert {"eo:cloud_cover", "eo:snow_cover"} <= set(properties)


def test_coarse_exclusion_counts_pixels_with_data() -> None:
    grid = Grid(32633, Affine(20, 0, 0, 0, -20, 120), 12, 6)
    coarse = Grid(32633, Affine(120, 0, 0, 0, -120, 120), 2, 1)
    scl = np.full((6, 12), SceneClass.VEGETATION, np.uint8)
    scl[0, 0] = SceneClass.CLOUD_HIGH_PROBABILITY  # 1 of 36: a speck, kept
    scl[:, 6:9] = SceneClass.NO_DATA
    scl[0:2, 9:12] = SceneClass.CLOUD_SHADOWS  # 6 of the 18 pixels with data
    np.testing.assert_array_equal(coarse_exclude(scl, grid, coarse), [[False, True]])


CLOUD_TOA = {
    "B01": 0.55, "B02": 0.52, "B03": 0.50, "B04": 0.50, "B05": 0.51, "B06": 0.52, "B07": 0.52,
    "B08": 0.52, "B8A": 0.52, "B09": 0.25, "B10": 0.05, "B11": 0.38, "B12": 0.25,
}  # fmt: skip
"""An opaque water cloud at TOA (as in tests/model/test_scene_classification.py)."""


def test_a_cloud_does_not_bias_the_aerosol_next_to_it(
    shared_data_dir: Path, corrector: Any
) -> None:
    """A real clear scene (TerraMind L1C chip, 2.2 km), then the same with an opaque cloud
    over a quarter of it: taken as haze, the cloud raises the AOT estimated around it; kept
    out by the classification, the AOT next to it stays the clear scene's."""
    model, coarse_m = corrector
    with rasterio.open(shared_data_dir / "pairs/terramind/L1C/38D_378R_2_3.tif") as source:
        clear = source.read().astype(np.float32) / 10000
    cloudy = clear.copy()
    for i, band in enumerate(L1C_BANDS):
        cloudy[i, :96, :96] = CLOUD_TOA[band]
    fine = Grid(32633, Affine(10, 0, 0, 0, -10, 2240), 224, 224)
    factor = round(coarse_m / 10)
    coarse = Grid(32633, Affine(coarse_m, 0, 0, 0, -coarse_m, 2240), 19, 19)
    assert -(-224 // factor) == 19

    def aot(toa: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        return model.estimate(block_mean(toa, factor), coarse.raster(), None, exclude).aot

    result = classify(cloudy, None, L1C_BANDS, 10.0, None)
    assert result.masked[:96, :96].mean() > 0.95, "the painted cloud is classified as cloud"
    exclude = coarse_exclude(result.scl, fine, coarse)
    assert exclude[:8, :8].all() and not exclude[12:, 12:].any()
    reference = aot(clear, None)
    # Next to the cloud: the clear coarse cells within 360 m of it.
    ring = np.zeros((19, 19), bool)
    ring[:11, :11] = True
    ring &= ~exclude
    assert ring.sum() >= 10
    biased = np.abs(aot(cloudy, None) - reference)[ring].mean()
    kept_out = np.abs(aot(cloudy, exclude) - reference)[ring].mean()
    assert biased > 0.05, f"the cloud taken as haze should raise the AOT (bias {biased:.3f})"
    print(f"AOT next to the cloud: bias {biased:.3f} included, {kept_out:.3f} kept out")
    assert kept_out < 0.3 * biased, (kept_out, biased)


@pytest.mark.parametrize("k", [1, 2, 3, 6, 12])
def test_block_sums_match_a_brute_force_sum_at_any_offset(k: int) -> None:
    """Strips that start and end inside blocks, at offsets before and after the blocks'
    origin, with invalid pixels: every block sum and count as a plain loop computes it."""
    rng = np.random.default_rng(k)
    for first_row, first_col, n, w in [(0, 0, 24, 36), (-5, 7, 17, 29), (13, -3, 1, 11)]:
        toa = rng.uniform(0, 0.5, (n, w)).astype(np.float32)
        toa[rng.uniform(size=(n, w)) < 0.2] = np.nan
        rows, c0, sums, counts = block_sums(toa, first_row, first_col, k)
        expected_sum: dict[tuple[int, int], float] = {}
        expected_count: dict[tuple[int, int], int] = {}
        for i in range(n):
            for j in range(w):
                key = ((first_row + i) // k, (first_col + j) // k)
                expected_count[key] = expected_count.get(key, 0) + int(np.isfinite(toa[i, j]))
                value = float(toa[i, j]) if np.isfinite(toa[i, j]) else 0.0
                expected_sum[key] = expected_sum.get(key, 0.0) + value
        assert list(rows) == sorted({key[0] for key in expected_sum})
        for (r, c), total in expected_sum.items():
            i, j = int(np.flatnonzero(rows == r)[0]), c - c0
            assert sums[i, j] == pytest.approx(total, abs=1e-5)
            assert counts[i, j] == expected_count[(r, c)]
