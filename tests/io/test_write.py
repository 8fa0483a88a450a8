"""Writing BOA reflectance: DN convention, Cloud-Optimized GeoTIFF layout, quicklook, thumbnail."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from component.core.bands import RGB
from component.core.grid import Grid
from component.io.write import (
    ATMOSPHERE_SCALE,
    NODATA,
    OFFSET,
    SCALE,
    Draft,
    ProductWriter,
    WrittenAsset,
    atmosphere_to_dn,
    quicklook_bytes,
    reflectance_to_dn,
)

BANDS = ("B02", "B03", "B04")


def test_reflectance_to_dn_round_trip() -> None:
    """DN = round(reflectance * 10000) + 1000, and DN * 0.0001 - 0.1 gives it back."""
    boa = np.array([0.0, 0.05, 0.1234, 0.5, 1.2, -0.05], dtype=np.float32)
    dn = reflectance_to_dn(boa)
    assert dn.dtype == np.uint16
    np.testing.assert_array_equal(dn, [1000, 1500, 2234, 6000, 13000, 500])
    np.testing.assert_allclose(dn * SCALE + OFFSET, boa, atol=0.5e-4 + 1e-7)


def test_reflectance_to_dn_nodata_and_limits() -> None:
    """NaN becomes 0; valid values never become 0 (nor 65535), even far out of range."""
    boa = np.array([np.nan, -0.1, -5.0, 6.4, 100.0], dtype=np.float32)
    dn = reflectance_to_dn(boa)
    assert dn[0] == NODATA
    assert dn[1] == 1 and dn[2] == 1
    assert dn[3] == 65000 and dn[4] == 65534


def test_atmosphere_to_dn_follows_sen2cor_quantification() -> None:
    """DN = round(value * 1000); valid values at least 1; 0 where the L1C has no data."""
    values = np.array([0.1, 1.5, 0.0001, np.nan, 0.2], dtype=np.float32)
    no_data = np.array([False, False, False, False, True])
    dn = atmosphere_to_dn(values, no_data)
    assert dn.dtype == np.uint16
    np.testing.assert_array_equal(dn, [100, 1500, 1, 0, 0])
    np.testing.assert_allclose(dn[:2] * ATMOSPHERE_SCALE, values[:2], atol=1e-6)


def test_quicklook_bytes() -> None:
    """0.3 reflectance maps to 255; NaN in any band is 0 in all; valid pixels are >= 1."""
    rgb = np.array([[[0.3, 0.0, np.nan]], [[0.15, 0.0, 0.1]], [[1.0, 0.0, 0.1]]])
    out = quicklook_bytes(rgb)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0, 0], [255, 128, 255])
    np.testing.assert_array_equal(out[:, 0, 1], [1, 1, 1])
    np.testing.assert_array_equal(out[:, 0, 2], [0, 0, 0])


def _grid(size: int, resolution: int = 60) -> Grid:
    return Grid(
        epsg=32631,
        transform=Affine(resolution, 0, 300000, 0, -resolution, 4900020),
        width=size,
        height=size,
    )


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[WrittenAsset], np.ndarray]:
    """A 1100 x 1100 product with a nodata corner, written in two strips, plus TCI and AOT."""
    size = 1100
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = 0.05 + 0.2 * (np.sin(x / 90) * np.cos(y / 70) + 1) / 2
    boa = np.stack([base * k for k in (0.8, 1.0, 1.2)]).astype(np.float32)
    boa += rng.normal(0, 0.002, boa.shape).astype(np.float32)
    boa[:, :100, :100] = np.nan
    folder = tmp_path_factory.mktemp("product")
    writer = ProductWriter(folder)
    grid = _grid(size)
    # Opened out of order on purpose: the assets come back in product order.
    tci = writer.open("TCI_60m", grid, "visual", ("B04", "B03", "B02"), "downsampled")
    aot = writer.open("AOT_60m", grid, "aot", ("AOT",))
    drafts = [
        writer.open(f"{band}_60m", grid, "reflectance", (band,), "downsampled") for band in BANDS
    ]
    for y0, y1 in ((0, 600), (600, size)):
        for index, draft in enumerate(drafts):
            draft.write(y0, reflectance_to_dn(boa[index, y0:y1]))
        tci.write(y0, quicklook_bytes(boa[[2, 1, 0], y0:y1]))
        aot.write(y0, atmosphere_to_dn(np.full((y1 - y0, size), 0.12, np.float32)))
    for draft in (*drafts, tci, aot):
        writer.finish_later(draft)
    assets = writer.finish()
    writer.close()
    return assets, boa


@pytest.mark.slow
def test_assets_and_no_drafts_left(product: tuple[list[WrittenAsset], np.ndarray]) -> None:
    """One COG per band, a TCI quicklook and a thumbnail; the draft files are removed."""
    assets, _ = product
    assert [a.key for a in assets] == [
        "B02_60m",
        "B03_60m",
        "B04_60m",
        "TCI_60m",
        "AOT_60m",
        "thumbnail",
    ]
    assert {a.sampling for a in assets[:4]} == {"downsampled"}
    assert all(a.grid == _grid(1100) for a in assets[:5])
    folder = assets[0].path.parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(a.path.name for a in assets)


@pytest.mark.slow
def test_band_cogs_are_valid_cogs(product: tuple[list[WrittenAsset], np.ndarray]) -> None:
    """Tiled 512 px, DEFLATE, overviews, GDAL's COG layout, nodata 0, uint16, right grid."""
    assets, _ = product
    for asset in assets[:4]:
        with rasterio.open(asset.path) as dataset:
            assert dataset.driver == "GTiff"
            assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert dataset.profile["tiled"] is True
            assert dataset.block_shapes[0] == (512, 512)
            assert dataset.compression is not None and dataset.compression.name == "deflate"
            assert dataset.overviews(1) == [2, 4]
            assert dataset.nodata == 0
            assert dataset.crs.to_epsg() == 32631
            assert dataset.transform == _grid(1100).transform
            assert dataset.shape == (1100, 1100)


@pytest.mark.slow
def test_band_values_scale_offset_and_description(
    product: tuple[list[WrittenAsset], np.ndarray],
) -> None:
    """Each band file holds the DN of its band, with scale/offset and the band name in GDAL."""
    assets, boa = product
    for index, asset in enumerate(assets[:3]):
        with rasterio.open(asset.path) as dataset:
            assert dataset.dtypes == ("uint16",)
            assert dataset.scales == (SCALE,) and dataset.offsets == (OFFSET,)
            assert dataset.descriptions == (BANDS[index],)
            dn = dataset.read(1)
        np.testing.assert_array_equal(dn, reflectance_to_dn(boa[index]))
        assert (dn[:100, :100] == 0).all() and (dn[100:, 100:] > 0).all()


@pytest.mark.slow
def test_quicklook_and_thumbnail(product: tuple[list[WrittenAsset], np.ndarray]) -> None:
    """The TCI COG is RGB uint8 (B04, B03, B02); the thumbnail a <= 512 px RGBA PNG."""
    assets, boa = product
    tci, thumbnail = assets[3], assets[5]
    assert tci.bands == ("B04", "B03", "B02") and tci.kind == "visual"
    with rasterio.open(tci.path) as dataset:
        assert dataset.count == 3 and dataset.dtypes == ("uint8",) * 3
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        rgb = dataset.read()
    expected = quicklook_bytes(np.stack([boa[2], boa[1], boa[0]]))
    np.testing.assert_array_equal(rgb, expected)
    with Image.open(thumbnail.path) as image:
        assert image.format == "PNG" and image.mode == "RGBA"
        assert max(image.size) == 512 and image.size[0] == image.size[1]
        alpha = np.asarray(image)[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 255


@pytest.mark.slow
def test_aot_cog_carries_its_quantification(
    product: tuple[list[WrittenAsset], np.ndarray],
) -> None:
    """AOT is uint16 DN / 1000 in the file's own scale and offset, as described in STAC."""
    aot = product[0][4]
    with rasterio.open(aot.path) as dataset:
        assert dataset.scales == (ATMOSPHERE_SCALE,) and dataset.offsets == (0.0,)
        assert dataset.descriptions == ("AOT",)
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (dataset.read(1) == 120).all()


def test_small_product_without_rgb(tmp_path: Path) -> None:
    """Without a quicklook there is no thumbnail; small rasters still become COGs."""
    writer = ProductWriter(tmp_path)
    draft = writer.open("B08_20m", _grid(40, 20), "reflectance", ("B08",))
    draft.write(0, reflectance_to_dn(np.full((40, 40), 0.3, dtype=np.float32)))
    writer.finish_later(draft)
    assets = writer.finish()
    writer.close()
    assert [a.key for a in assets] == ["B08_20m"]
    with rasterio.open(assets[0].path) as dataset:
        assert dataset.read(1)[0, 0] == 4000
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


class _Recording(ProductWriter):
    """A real writer whose COG threads note which draft they take, the first one held until
    released (so the others are all waiting when the order is decided)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, threads=1)
        self.taken: list[str] = []
        self.first_taken, self.release = threading.Event(), threading.Event()

    def _finish(self, draft: Draft) -> list[WrittenAsset]:
        self.taken.append(draft.asset.key)
        self.first_taken.set()
        self.release.wait(30)
        return super()._finish(draft)


def test_writer_takes_the_costliest_waiting_draft_first(tmp_path: Path) -> None:
    """A free COG thread takes the largest waiting draft (pixels x bands), not the oldest."""
    writer = _Recording(tmp_path)
    sizes = {"B01_60m": (40, 1), "B05_20m": (60, 1), "TCI_10m": (100, 3), "B02_10m": (100, 1)}
    drafts = {}
    for key, (size, count) in sizes.items():
        if count == 3:
            drafts[key] = writer.open(key, _grid(size), "visual", RGB)
            drafts[key].write(0, np.full((3, size, size), 9, np.uint8))
        else:
            drafts[key] = writer.open(key, _grid(size), "reflectance", (key[:3],))
            drafts[key].write(0, np.full((size, size), 9, np.uint16))
    writer.finish_later(drafts["B01_60m"])
    assert writer.first_taken.wait(30)
    for key in ("B05_20m", "B02_10m", "TCI_10m"):
        writer.finish_later(drafts[key])
    writer.release.set()
    assets = writer.finish()
    writer.close()
    assert writer.taken == ["B01_60m", "TCI_10m", "B02_10m", "B05_20m"]
    assert {a.key for a in assets} == {*sizes, "thumbnail"}


@pytest.mark.parametrize(("size", "kind"), [(1100, "reflectance"), (1830, "scl"), (513, "aot")])
def test_overviews_built_in_the_draft_are_gdals(tmp_path: Path, size: int, kind: str) -> None:
    """The levels GDAL's COG driver would make itself, with its values (average, SCL by mode,
    nodata kept out) where both have the same size: an odd size is rounded up as gdaladdo does
    (the COG driver rounds 1830 / 4 down, to 457, and 513 / 2 to 256)."""
    import rasterio.shutil

    from component.io.write import COG_OPTIONS, KIND_COG_OPTIONS, Draft, overview_factors

    rng = np.random.default_rng(size)
    values = rng.integers(1, 12 if kind == "scl" else 4000, (size, size)).astype(
        "uint8" if kind == "scl" else "uint16"
    )
    values[:37, :] = 0  # nodata
    draft = Draft(tmp_path, "X", _grid(size), kind, ("X",))
    draft.write(0, values)
    draft.close()
    reference = tmp_path / "reference.tif"
    options = COG_OPTIONS | KIND_COG_OPTIONS.get(kind, {})
    rasterio.shutil.copy(draft.path, reference, driver="COG", **options)
    asset = draft.finish()
    assert not draft.path.exists()
    with rasterio.open(asset.path) as ours, rasterio.open(reference) as gdal:
        factors = ours.overviews(1)
        assert factors == gdal.overviews(1) == overview_factors(_grid(size))
        assert ours.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(ours.read(1), values)
    for level, factor in enumerate(factors):
        with (
            rasterio.open(asset.path, OVERVIEW_LEVEL=str(level)) as a,
            rasterio.open(reference, OVERVIEW_LEVEL=str(level)) as b,
        ):
            assert a.shape == (-(-size // factor),) * 2
            ours_level, gdal_level = a.read(1), b.read(1)
        assert (ours_level[: 37 // factor] == 0).all() and (ours_level[-1] > 0).all()
        if ours_level.shape == gdal_level.shape:
            np.testing.assert_array_equal(ours_level, gdal_level)
