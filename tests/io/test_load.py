"""Loading L1C items into TOA reflectance: grids, windows, masks, radiometry, S3 and errors."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from component.core.bands import L1C_BANDS, product_resolution
from component.core.grid import Grid
from component.core.settings import Settings
from component.errors import AssetReadError, CredentialsError, InvalidItemError
from component.io import l1c, load
from component.io.l1c import L1CProduct
from support.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from support.synthetic import cdse_s3_base, make_l1c_product

BANDS = ("B02", "B03", "B04")
SAMPLE_ORIGIN = (330000.0, 5822040.0)
Factory = Callable[..., dict[str, Any]]
LOCAL = Settings()
"""Local files need no keys; CDSE's defaults for everything else."""


@pytest.fixture(scope="module")
def sample_item() -> dict[str, Any]:
    """The embedded sample as a dict with absolute hrefs (as search.read_item makes them)."""
    from component.io.search import read_item
    from component.sample import item_path

    return read_item(str(item_path())).data


@pytest.fixture(scope="module")
def sample(sample_item: dict[str, Any]) -> L1CProduct:
    """The embedded sample, interpreted."""
    return l1c.from_item(sample_item)


def load_toa(
    item: dict[str, Any] | L1CProduct,
    bands: tuple[str, ...],
    resolution: int,
    bbox: tuple[float, float, float, float] | None = None,
    settings: Settings = LOCAL,
) -> tuple[np.ndarray, Grid]:
    """Bands on one grid as TOA reflectance (B02's grid at *resolution*)."""
    product = item if isinstance(item, L1CProduct) else l1c.from_item(item)
    grid = load.output_grid(product, bands[0], resolution, bbox)
    dn = {b: load.read_band(product, b, grid, settings) for b in bands}
    return np.stack([load.to_toa(dn[b], product.radiometry) for b in bands]), grid


@pytest.fixture(scope="module")
def sample_toa(sample: L1CProduct) -> dict[int, tuple[np.ndarray, Grid]]:
    """The sample's 10 m bands loaded once at each resolution."""
    return {resolution: load_toa(sample, BANDS, resolution) for resolution in (60, 20, 10)}


@pytest.mark.parametrize(
    ("resolution", "shape"), [(60, (128, 256)), (20, (384, 768)), (10, (768, 1536))]
)
def test_sample_on_tile_anchored_grid(
    sample_toa: dict[int, tuple[np.ndarray, Grid]], resolution: int, shape: tuple[int, int]
) -> None:
    """Each resolution lies on the asset's own grid: same origin, whole pixels, float32."""
    values, grid = sample_toa[resolution]
    assert values.shape == (3, *shape)
    assert values.dtype == np.float32
    assert (grid.transform.c, grid.transform.f) == SAMPLE_ORIGIN
    assert grid.transform.a == resolution and grid.transform.e == -resolution
    assert grid.epsg == 32633
    assert np.isfinite(values).mean() > 0.99


def test_sample_band_means_agree_across_resolutions(
    sample_toa: dict[int, tuple[np.ndarray, Grid]],
) -> None:
    """Averaging to coarser grids keeps each band's mean (no shift, no fill mixed in)."""
    means = {r: np.nanmean(v, axis=(1, 2)) for r, (v, _) in sample_toa.items()}
    assert np.all(means[10] > 0.01) and np.all(means[10] < 0.5)
    np.testing.assert_allclose(means[20], means[10], rtol=0.01)
    np.testing.assert_allclose(means[60], means[10], rtol=0.01)


def test_sample_baseline_0204_has_no_offset(
    sample_item: dict[str, Any], sample_toa: dict[int, tuple[np.ndarray, Grid]]
) -> None:
    """Baseline 02.04: TOA = DN / 10000 exactly at native resolution (no -0.1 applied)."""
    with rasterio.open(sample_item["assets"]["B03"]["href"]) as dataset:
        dn = dataset.read(1).astype(np.float32)
    values = sample_toa[10][0][1]
    valid = dn > 0
    np.testing.assert_allclose(values[valid], dn[valid] / 10000, rtol=1e-6)


def test_plan_puts_every_band_on_its_product_grid(sample: L1CProduct) -> None:
    """At 10 m: 10 m bands at 10, 20 m bands at 20, B01/B09 at 60; all on the tile origin."""
    plan = load.plan(sample, 10, None, 120, LOCAL)
    expected = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B01": 60, "B09": 60}
    expected |= {b: 20 for b in ("B05", "B06", "B07", "B8A", "B11", "B12")}
    assert {b: g.resolution for b, g in plan.grids.items()} == expected
    assert all((g.transform.c, g.transform.f) == SAMPLE_ORIGIN for g in plan.grids.values())
    assert plan.grids["B05"].width == 768 and plan.grids["B01"].width == 256
    assert plan.coarse.resolution == 120 and plan.grid_r == plan.grids["B02"]
    assert plan.inputs == L1C_BANDS and "B10" not in plan.grids
    at_60 = load.plan(sample, 60, None, 120, LOCAL)
    assert {g.resolution for g in at_60.grids.values()} == {60}
    assert product_resolution("B8A", 10) == 20 and product_resolution("B8A", 60) == 60


def test_plan_without_b10_or_with_another_band_missing(sample_item: dict[str, Any]) -> None:
    """B10 is optional (the corrector does without it); any other band is required, by name."""
    item = json.loads(json.dumps(sample_item))
    del item["assets"]["B10"]
    assert "B10" not in load.plan(l1c.from_item(item), 60, None, 120, LOCAL).inputs
    del item["assets"]["B8A"]
    with pytest.raises(InvalidItemError, match="B8A") as raised:
        load.plan(l1c.from_item(item), 60, None, 120, LOCAL)
    assert "B10" not in str(raised.value)


def test_bbox_reads_only_the_window(
    sample: L1CProduct, sample_toa: dict[int, tuple[np.ndarray, Grid]]
) -> None:
    """A bbox gives a small grid snapped outward onto the item's grid, with the same values."""
    utm_box = (332_010.0, 5_816_030.0, 335_990.0, 5_819_970.0)
    bbox = transform_bounds("EPSG:32633", "EPSG:4326", *utm_box)
    toa, grid = load_toa(sample, BANDS, 60, bbox=bbox)
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
    np.testing.assert_allclose(toa, window, rtol=1e-6)


def test_bbox_outside_the_item(sample: L1CProduct) -> None:
    """A bbox that misses the item is refused before anything is read."""
    with pytest.raises(InvalidItemError, match="does not intersect"):
        load.plan(sample, 60, (2.0, 43.0, 2.1, 43.1), 120, LOCAL)


def _raw_dn(item: dict[str, Any], bands: tuple[str, ...] = BANDS) -> np.ndarray:
    stack = []
    for band in bands:
        with rasterio.open(item["assets"][band]["href"]) as dataset:
            stack.append(dataset.read(1))
    return np.stack(stack)


def test_each_band_masks_its_own_nodata_and_saturation(l1c_product: Factory) -> None:
    """DN 0 or 65535 become NaN in that band only: bands live on different grids now."""
    item = l1c_product(size_10m=120, nodata_fraction=0.25, saturated_fraction=0.05, seed=3)
    dn = _raw_dn(item)
    assert (dn == 0).any() and (dn == 65535).any()
    toa, _ = load_toa(item, BANDS, 10)
    for index in range(len(BANDS)):
        invalid = (dn[index] == 0) | (dn[index] == 65535)
        np.testing.assert_array_equal(np.isnan(toa[index]), invalid)


def test_to_toa_masks_only_its_band() -> None:
    """0 and 65535 are NaN; other DN are (DN + offset) / 10000."""
    dn = np.array([[2000, 0], [65535, 1000]], dtype=np.uint16)
    toa = load.to_toa(dn, l1c.BandRadiometry(add_offset=-1000.0))
    assert np.isnan(toa[0, 1]) and np.isnan(toa[1, 0])
    np.testing.assert_allclose(toa[[0, 1], [0, 1]], [0.1, 0.0])


def test_baseline_04_subtracts_1000_dn(l1c_product: Factory) -> None:
    """The same scene at baselines 02.04 and 05.10 (DN + 1000) gives the same reflectance."""
    old = l1c_product(size_10m=60, baseline="02.04", seed=5)
    new = l1c_product(size_10m=60, baseline="05.10", seed=5)
    assert (_raw_dn(new).astype(int) - _raw_dn(old)).min() == 1000
    toa_old = load_toa(old, BANDS, 10)[0]
    toa_new = load_toa(new, BANDS, 10)[0]
    np.testing.assert_allclose(toa_new, toa_old, atol=1e-6)
    np.testing.assert_allclose(toa_new, (_raw_dn(new) - 1000.0) / 10000, atol=1e-6)


def test_60m_from_10m_decodes_a_reduced_resolution_level(l1c_product: Factory) -> None:
    """At 60 m the 10 m JPEG 2000 is read from its 40 m level, not decoded at full resolution.

    The synthetic JP2 exposes its resolution levels as overviews (2x, 4x). The loaded values
    equal an average-warp of the 4x level exactly, and differ from a full-resolution decode
    averaged over 6x6 blocks (pixel noise makes the two distinguishable).
    """
    item = l1c_product(size_10m=384, seed=7, baseline="02.04")
    product = l1c.from_item(item)
    href = item["assets"]["B02"]["href"]
    with rasterio.open(href) as dataset:
        assert dataset.overviews(1) == [2, 4]
        assert load.overview_level(dataset, 60) == 1
        assert load.overview_level(dataset, 20) == 0
        assert load.overview_level(dataset, 10) is None
        full = dataset.read(1).astype(np.float64)
    grid = load.output_grid(product, "B02", 60)
    loaded_dn = load.read_band(product, "B02", grid, LOCAL).astype(np.float64)
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


def test_an_exact_level_is_read_as_it_is(l1c_product: Factory) -> None:
    """A 10 m band at 20 m is the JPEG 2000's 2x level, unresampled; strips tile the band."""
    item = l1c_product(size_10m=384, seed=8)
    product = l1c.from_item(item)
    grid = load.output_grid(product, "B02", 20)
    with rasterio.open(item["assets"]["B02"]["href"], OVERVIEW_LEVEL="0") as level:
        expected = level.read(1)
    with load.gdal(LOCAL), load.BandReader(product, "B02", grid) as reader:
        whole = reader.read(0, grid.height)
        strips = np.concatenate([reader.read(0, 50), reader.read(50, grid.height)])
    np.testing.assert_array_equal(whole, expected)
    np.testing.assert_array_equal(strips, expected)


def _upload(s3_server: S3Server, tmp_path: Path, day: int) -> dict[str, Any]:
    date = datetime(2023, 5, day, 10, 30, 21, tzinfo=timezone.utc)
    root = tmp_path / f"s3-{day}"
    root.mkdir()
    item = make_l1c_product(root, size_10m=60, date=date, href_base=cdse_s3_base(date))
    s3_server.upload_tree(root, cdse_s3_base(date).removeprefix("s3://eodata/"))
    return item


def _s3_settings(s3_server: S3Server, **keys: str) -> Settings:
    """The loopback server's CDSE-style settings, with *keys* (default: none) as S3 keys."""
    environ = {
        k: v
        for k, v in {**os.environ, **s3_server.gdal_env()}.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    return Settings.from_environ({**environ, **keys})


def _no_keys_in_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_s3_hrefs_read_through_vsis3(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, l1c_product: Factory
) -> None:
    """``s3://eodata/...`` hrefs read from the loopback S3 with CDSE-style GDAL settings."""
    item = _upload(s3_server, tmp_path, 2)
    assert item["assets"]["B02"]["href"].startswith("s3://eodata/Sentinel-2/MSI/L1C/2023/05/02/")
    _no_keys_in_environ(monkeypatch)
    settings = _s3_settings(
        s3_server, AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY
    )
    options = settings.gdal_options()
    assert "AWS_SECRET_ACCESS_KEY" not in options and "AWS_ACCESS_KEY_ID" not in options, (
        "keys reach GDAL as a session of load.gdal, never as plain options"
    )
    assert options["AWS_S3_ENDPOINT"] == s3_server.endpoint and options["AWS_HTTPS"] == "NO"
    values, _ = load_toa(item, BANDS, 20, settings=settings)
    local = l1c_product(size_10m=60, date=datetime(2023, 5, 2, 10, 30, 21, tzinfo=timezone.utc))
    expected, _ = load_toa(local, BANDS, 20)
    assert values.shape == (3, 30, 30)
    np.testing.assert_array_equal(values, expected)


def test_s3_keys_reach_gdal_from_settings_only(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys of Settings (none in ``os.environ``) sign GDAL's /vsis3 reads through
    ``load.gdal``; without them the same read fails; the secret is in no repr or message."""
    product = l1c.from_item(_upload(s3_server, tmp_path, 4))
    _no_keys_in_environ(monkeypatch)
    secret = "a-secret-only-in-settings"
    keyed = _s3_settings(s3_server, AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=secret)
    assert keyed.has_s3_keys and keyed.secret_access_key == secret
    assert secret not in repr(keyed) and ACCESS_KEY_ID not in repr(keyed)
    assert secret not in repr(keyed.gdal_options())
    grid = load.output_grid(product, "B02", 60)
    # Unsigned first: GDAL keeps what it read in a cache, which would hide a failure.
    with pytest.raises(AssetReadError, match="B02") as raised:
        load.read_band(product, "B02", grid, keyed.without_keys())
    assert secret not in str(raised.value)
    with pytest.raises(CredentialsError):
        load.check_credentials(product, ("B02",), keyed.without_keys())
    load.check_credentials(product, product.inputs, keyed)
    dn = load.read_band(product, "B02", grid, keyed)
    assert dn.shape == grid.shape and (dn > 0).mean() > 0.99
    with load.gdal(keyed):
        assert "AWS_SECRET_ACCESS_KEY" not in os.environ, "never through the process environment"
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ and "AWS_ACCESS_KEY_ID" not in os.environ


def test_s3_without_credentials(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``s3://`` item without keys in its Settings fails with CredentialsError before any
    read, even with keys in ``os.environ`` (keys come from Settings only)."""
    product = l1c.from_item(_upload(s3_server, tmp_path, 3))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    settings = _s3_settings(s3_server)
    assert not settings.has_s3_keys
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        load.plan(product, 60, None, 120, settings)
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        load.plan(product, 60, None, 120, Settings.from_environ({}))


def test_missing_asset_file(sample_item: dict[str, Any], tmp_path: Path) -> None:
    """A band whose file does not exist fails with AssetReadError naming the band."""
    item = json.loads(json.dumps(sample_item))
    item["assets"]["B03"]["href"] = str(tmp_path / "absent.jp2")
    product = l1c.from_item(item)
    with pytest.raises(AssetReadError, match="B03"):
        load.check_assets(product, product.inputs, LOCAL)


def test_corrupt_asset_file(sample_item: dict[str, Any], tmp_path: Path) -> None:
    """A band whose file is not a valid JPEG 2000 fails with AssetReadError naming the band."""
    corrupt = tmp_path / "corrupt.jp2"
    corrupt.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"garbage" * 100)
    item = json.loads(json.dumps(sample_item))
    item["assets"]["B04"]["href"] = str(corrupt)
    product = l1c.from_item(item)
    with pytest.raises(AssetReadError, match="B04"):
        load.check_assets(product, product.inputs, LOCAL)
    with pytest.raises(AssetReadError, match="B04"):
        load.read_band(product, "B04", load.output_grid(product, "B04", 60), LOCAL)


def test_synthetic_factory_is_usable(tmp_path: Path) -> None:
    """make_l1c_product writes a JP2 per band on the tile-anchored grid (test support check)."""
    item = make_l1c_product(tmp_path, size_10m=60)
    with rasterio.open(item["assets"]["B02"]["href"]) as dataset:
        assert dataset.driver == "JP2OpenJPEG"
        assert (dataset.transform.c, dataset.transform.f) == (300000.0, 4900020.0)
