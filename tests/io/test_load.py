"""Loading L1C items into TOA reflectance: grids, windows, masks, radiometry, S3 and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from component.errors import AssetReadError, CredentialsError, InvalidItemError
from component.io import load, stac_bridge
from support.s3 import S3Server
from support.synthetic import cdse_s3_base, make_l1c_product

BANDS = ("B02", "B03", "B04")
SAMPLE_ORIGIN = (330000.0, 5822040.0)
Factory = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def sample_item() -> dict[str, Any]:
    """The embedded sample as a dict with absolute hrefs (as search.read_item makes them)."""
    from component.io.search import read_item
    from component.sample import item_path

    return read_item(str(item_path())).data


@pytest.fixture(scope="module")
def sample_toa(sample_item: dict[str, Any]) -> dict[int, tuple[np.ndarray, load.Grid]]:
    """The sample loaded once at each resolution."""
    out = {}
    for resolution in (60, 20, 10):
        toa, grid = load.load_toa(sample_item, BANDS, resolution)
        out[resolution] = (toa.values, grid)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("resolution", "shape"), [(60, (128, 256)), (20, (384, 768)), (10, (768, 1536))]
)
def test_sample_on_tile_anchored_grid(
    sample_toa: dict[int, tuple[np.ndarray, load.Grid]], resolution: int, shape: tuple[int, int]
) -> None:
    """Each resolution lies on the asset's own grid: same origin, whole pixels, float32."""
    values, grid = sample_toa[resolution]
    assert values.shape == (3, *shape)
    assert values.dtype == np.float32
    assert (grid.transform.c, grid.transform.f) == SAMPLE_ORIGIN
    assert grid.transform.a == resolution and grid.transform.e == -resolution
    assert grid.epsg == 32633
    assert np.isfinite(values).mean() > 0.99


@pytest.mark.slow
def test_sample_band_means_agree_across_resolutions(
    sample_toa: dict[int, tuple[np.ndarray, load.Grid]],
) -> None:
    """Averaging to coarser grids keeps each band's mean (no shift, no fill mixed in)."""
    means = {r: np.nanmean(v, axis=(1, 2)) for r, (v, _) in sample_toa.items()}
    assert np.all(means[10] > 0.01) and np.all(means[10] < 0.5)
    np.testing.assert_allclose(means[20], means[10], rtol=0.01)
    np.testing.assert_allclose(means[60], means[10], rtol=0.01)


@pytest.mark.slow
def test_sample_baseline_0204_has_no_offset(
    sample_item: dict[str, Any], sample_toa: dict[int, tuple[np.ndarray, load.Grid]]
) -> None:
    """Baseline 02.04: TOA = DN / 10000 exactly at native resolution (no -0.1 applied)."""
    with rasterio.open(sample_item["assets"]["B03"]["href"]) as dataset:
        dn = dataset.read(1).astype(np.float32)
    values = sample_toa[10][0][1]
    valid = dn > 0
    np.testing.assert_allclose(values[valid], dn[valid] / 10000, rtol=1e-6)


@pytest.mark.slow
def test_bbox_reads_only_the_window(
    sample_item: dict[str, Any], sample_toa: dict[int, tuple[np.ndarray, load.Grid]]
) -> None:
    """A bbox gives a small grid snapped outward onto the item's grid, with the same values."""
    utm_box = (332_010.0, 5_816_030.0, 335_990.0, 5_819_970.0)
    bbox = transform_bounds("EPSG:32633", "EPSG:4326", *utm_box)
    toa, grid = load.load_toa(sample_item, BANDS, 60, bbox=bbox)
    left, bottom, right, top = grid.bounds
    assert (left - SAMPLE_ORIGIN[0]) % 60 == 0 and (SAMPLE_ORIGIN[1] - top) % 60 == 0
    assert left <= utm_box[0] and bottom <= utm_box[1]
    assert right >= utm_box[2] and top >= utm_box[3]
    assert grid.width < 100 and grid.height < 100
    assert toa.shape == (3, grid.height, grid.width)
    full, full_grid = sample_toa[60]
    col = round((left - full_grid.transform.c) / 60)
    row = round((full_grid.transform.f - top) / 60)
    window = full[:, row : row + grid.height, col : col + grid.width]
    np.testing.assert_allclose(toa.values, window, rtol=1e-6)


def test_bbox_outside_the_item(sample_item: dict[str, Any]) -> None:
    """A bbox that misses the item is refused before anything is read."""
    with pytest.raises(InvalidItemError, match="does not intersect"):
        load.load_toa(sample_item, BANDS, 60, bbox=(2.0, 43.0, 2.1, 43.1))


def _raw_dn(item: dict[str, Any]) -> np.ndarray:
    stack = []
    for band in BANDS:
        with rasterio.open(item["assets"][band]["href"]) as dataset:
            stack.append(dataset.read(1))
    return np.stack(stack)


def test_nodata_and_saturated_become_nan_in_all_bands(l1c_product: Factory) -> None:
    """Pixels with DN 0 or 65535 in any band are NaN in every band; others are finite."""
    item = l1c_product(size_10m=120, nodata_fraction=0.25, saturated_fraction=0.05, seed=3)
    dn = _raw_dn(item)
    invalid = ((dn == 0) | (dn == 65535)).any(axis=0)
    assert (dn == 0).any() and (dn == 65535).any()
    toa, _ = load.load_toa(item, BANDS, 10)
    values = toa.values
    assert np.isnan(values).all(axis=0)[invalid].all()
    assert np.isfinite(values).all(axis=0)[~invalid].all()


def test_to_toa_masks_when_any_single_band_is_invalid() -> None:
    """One band at 0 or 65535 invalidates the pixel in all bands."""
    import xarray as xr

    dn = np.full((3, 2, 2), 2000, dtype=np.uint16)
    dn[1, 0, 0] = 0
    dn[2, 1, 1] = 65535
    array = xr.DataArray(dn, dims=("band", "y", "x"))
    toa = load.to_toa(array, stac_bridge.BandRadiometry(add_offset=-1000.0)).values
    assert np.isnan(toa[:, 0, 0]).all() and np.isnan(toa[:, 1, 1]).all()
    np.testing.assert_allclose(toa[:, 0, 1], 0.1)


def test_baseline_04_subtracts_1000_dn(l1c_product: Factory) -> None:
    """The same scene at baselines 02.04 and 05.10 (DN + 1000) gives the same reflectance."""
    old = l1c_product(size_10m=60, baseline="02.04", seed=5)
    new = l1c_product(size_10m=60, baseline="05.10", seed=5)
    assert (_raw_dn(new).astype(int) - _raw_dn(old)).min() == 1000
    toa_old = load.load_toa(old, BANDS, 10)[0].values
    toa_new = load.load_toa(new, BANDS, 10)[0].values
    np.testing.assert_allclose(toa_new, toa_old, atol=1e-6)
    np.testing.assert_allclose(toa_new, (_raw_dn(new) - 1000.0) / 10000, atol=1e-6)


def test_60m_from_10m_decodes_a_reduced_resolution_level(l1c_product: Factory) -> None:
    """At 60 m the 10 m JPEG 2000 is read from its 40 m level, not decoded at full resolution.

    The synthetic JP2 exposes its resolution levels as overviews (2x, 4x). The loaded values
    equal an average-warp of the 4x level exactly, and differ from a full-resolution decode
    averaged over 6x6 blocks (pixel noise makes the two distinguishable).
    """
    item = l1c_product(size_10m=384, seed=7, baseline="02.04")
    href = item["assets"]["B02"]["href"]
    with rasterio.open(href) as dataset:
        assert dataset.overviews(1) == [2, 4]
        assert load.overview_level(dataset, 60) == 1
        assert load.overview_level(dataset, 20) == 0
        assert load.overview_level(dataset, 10) is None
        full = dataset.read(1).astype(np.float64)
    toa, grid = load.load_toa(item, BANDS, 60)
    loaded_dn = toa.values[0].astype(np.float64) * 10000
    with (
        rasterio.open(href, OVERVIEW_LEVEL="1") as reduced,
        WarpedVRT(
            reduced,
            crs=reduced.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling.average,
            src_nodata=0,
            nodata=0,
        ) as vrt,
    ):
        from_level = vrt.read(1).astype(np.float64)
    block_mean = full.reshape(grid.height, 6, grid.width, 6).mean(axis=(1, 3))
    np.testing.assert_allclose(loaded_dn, from_level, atol=0.01)
    assert np.abs(loaded_dn - block_mean).mean() > 1.0
    assert np.abs(loaded_dn - block_mean).mean() < 0.02 * block_mean.mean()


def _upload(s3_server: S3Server, tmp_path: Path, day: int) -> dict[str, Any]:
    date = datetime(2023, 5, day, 10, 30, 21, tzinfo=timezone.utc)
    root = tmp_path / f"s3-{day}"
    root.mkdir()
    item = make_l1c_product(root, size_10m=60, date=date, href_base=cdse_s3_base(date))
    s3_server.upload_tree(root, cdse_s3_base(date).removeprefix("s3://eodata/"))
    return item


def test_s3_hrefs_read_through_vsis3(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, l1c_product: Factory
) -> None:
    """``s3://eodata/...`` hrefs read from the loopback S3 with CDSE-style GDAL settings."""
    item = _upload(s3_server, tmp_path, 2)
    assert item["assets"]["B02"]["href"].startswith("s3://eodata/Sentinel-2/MSI/L1C/2023/05/02/")
    for key, value in s3_server.gdal_env().items():
        monkeypatch.setenv(key, value)
    gdal = load.gdal_env()
    assert "AWS_SECRET_ACCESS_KEY" not in gdal, "keys travel through the environment only"
    assert gdal["AWS_S3_ENDPOINT"] == s3_server.endpoint
    toa, _ = load.load_toa(item, BANDS, 20, env=gdal)
    # Read in this thread: GDAL options that rasterio's Env leaves behind in dask's worker
    # threads after earlier warped reads (another endpoint) would otherwise shadow the
    # loopback endpoint. A run reads with one endpoint per process, so it is unaffected.
    with dask.config.set(scheduler="synchronous"):
        values = toa.values
    local = l1c_product(size_10m=60, date=datetime(2023, 5, 2, 10, 30, 21, tzinfo=timezone.utc))
    expected, _ = load.load_toa(local, BANDS, 20)
    assert values.shape == (3, 30, 30)
    np.testing.assert_array_equal(values, expected.values)


def test_s3_without_credentials(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``s3://`` item without keys fails with CredentialsError before any read."""
    item = _upload(s3_server, tmp_path, 3)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        load.load_toa(item, BANDS, 60, env=load.gdal_env())


def test_missing_asset_file(sample_item: dict[str, Any], tmp_path: Path) -> None:
    """A band whose file does not exist fails with AssetReadError naming the band."""
    item = json.loads(json.dumps(sample_item))
    item["assets"]["B03"]["href"] = str(tmp_path / "absent.jp2")
    with pytest.raises(AssetReadError, match="B03"):
        load.load_toa(item, BANDS, 60)


def test_corrupt_asset_file(sample_item: dict[str, Any], tmp_path: Path) -> None:
    """A band whose file is not a valid JPEG 2000 fails with AssetReadError naming the band."""
    corrupt = tmp_path / "corrupt.jp2"
    corrupt.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"garbage" * 100)
    item = json.loads(json.dumps(sample_item))
    item["assets"]["B04"]["href"] = str(corrupt)
    with pytest.raises(AssetReadError, match="B04"):
        load.load_toa(item, BANDS, 60)


def test_synthetic_factory_is_usable(tmp_path: Path) -> None:
    """make_l1c_product writes a JP2 per band on the tile-anchored grid (test support check)."""
    item = make_l1c_product(tmp_path, size_10m=60)
    with rasterio.open(item["assets"]["B02"]["href"]) as dataset:
        assert dataset.driver == "JP2OpenJPEG"
        assert (dataset.transform.c, dataset.transform.f) == (300000.0, 4900020.0)
