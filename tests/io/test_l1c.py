"""L1C items read once into an L1CProduct, and the CDSE STAC 1.1 forms they come in, on items
shaped exactly like CDSE's ``sentinel-2-l1c`` items."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from affine import Affine

from component.core.bands import L1C_BANDS, L2A_BANDS, NATIVE_RESOLUTION
from component.core.grid import Grid
from component.errors import InvalidItemError
from component.io import l1c

CDSE_ID = "S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505"


def cdse_item(
    item_id: str = CDSE_ID, version: str | None = "05.10", bands: tuple[str, ...] = ("B02", "B05")
) -> dict[str, Any]:
    """A CDSE-shaped L1C item (no proj:epsg, no raster:bands, raster:offset -0.1 on assets)."""
    assets: dict[str, Any] = {}
    for band in bands:
        res = NATIVE_RESOLUTION[band]
        n = 10980 * 10 // res
        assets[band] = {
            "href": f"s3://eodata/Sentinel-2/MSI/L1C/2024/01/16/{item_id}.SAFE/GRANULE/g/"
            f"IMG_DATA/T51CVP_20240116T000741_{band}.jp2",
            "type": "image/jp2",
            "roles": ["data", "reflectance"],
            "bands": [{"name": band, "eo:center_wavelength": 0.493, "eo:common_name": "blue"}],
            "data_type": "uint16",
            "nodata": 0,
            "raster:scale": 0.0001,
            "raster:offset": -0.1,
            "gsd": res,
            "proj:code": "EPSG:32751",
            "proj:shape": [n, n],
            "proj:bbox": [399960, 1290220, 509760, 1400020],
            "proj:transform": [res, 0, 399960, 0, -res, 1400020],
            "auth:refs": ["s3"],
            "storage:refs": ["cdse-s3", "creodias-s3"],
        }
    properties: dict[str, Any] = {
        "datetime": "2024-01-16T00:07:41.024000Z",
        "platform": "sentinel-2a",
        "processing:level": "L1",
        "product:type": "S2MSI1C",
        "grid:code": "MGRS-51CVP",
    }
    if version is not None:
        properties["processing:version"] = version
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "properties": properties,
        "geometry": None,
        "links": [],
        "assets": assets,
    }


def test_proj_code_becomes_epsg() -> None:
    """``proj:code`` "EPSG:32751" on the asset is read as EPSG 32751."""
    assert l1c.epsg_of(cdse_item(), "B02") == 32751


def test_epsg_from_item_properties_and_missing() -> None:
    """A ``proj:code`` on the item properties is used; with none at all the item is refused."""
    item = cdse_item()
    del item["assets"]["B02"]["proj:code"]
    item["properties"]["proj:code"] = "EPSG:32631"
    assert l1c.epsg_of(item, "B02") == 32631
    del item["properties"]["proj:code"]
    with pytest.raises(InvalidItemError, match="B02"):
        l1c.epsg_of(item, "B02")


def test_for_stackstac_writes_the_old_forms() -> None:
    """The bridged asset has proj:epsg, transform and shape, and raw-DN raster:bands."""
    item = cdse_item()
    bridged = l1c.for_stackstac(item, ("B02", "B05"))
    b05 = bridged["assets"]["B05"]
    assert b05["proj:epsg"] == 32751
    assert b05["proj:shape"] == [5490, 5490]
    assert b05["proj:transform"] == [20, 0, 399960, 0, -20, 1400020]
    assert b05["raster:bands"] == [{"scale": 1, "offset": 0, "nodata": 0}]
    assert "proj:bbox" not in b05
    assert set(bridged["assets"]) == {"B02", "B05"}
    assert item["assets"]["B02"].get("proj:epsg") is None, "the input item must not change"


def test_old_baseline_has_no_offset_despite_cdse_raster_offset() -> None:
    """Baseline 02.04: offset 0, although CDSE states raster:offset -0.1 on the asset."""
    item = cdse_item("S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_20170216T102204", "02.04")
    assert item["assets"]["B02"]["raster:offset"] == -0.1
    assert l1c.processing_baseline(item) == (2, 4)
    radiometry = l1c.radiometry(item)
    assert radiometry.add_offset == 0.0
    assert radiometry.offset == 0.0
    assert radiometry.scale == pytest.approx(1e-4)


def test_new_baseline_subtracts_1000_dn() -> None:
    """Baseline 05.10: reflectance = (DN - 1000) / 10000, i.e. offset -0.1."""
    radiometry = l1c.radiometry(cdse_item())
    assert radiometry.add_offset == -1000.0
    assert radiometry.offset == pytest.approx(-0.1)


def test_baseline_04_00_is_the_threshold() -> None:
    """04.00 itself carries the offset; 03.99 does not."""
    assert l1c.radiometry(cdse_item(version="04.00")).add_offset == -1000.0
    assert l1c.radiometry(cdse_item(version="03.99")).add_offset == 0.0


@pytest.mark.parametrize(
    ("item_id", "expected"),
    [
        ("S2B_MSIL1C_20220301T104849_N0400_R051_T31TCJ_20220301T125434", (4, 0)),
        ("S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_20170216T102204", (2, 4)),
    ],
)
def test_baseline_fallback_from_id(item_id: str, expected: tuple[int, int]) -> None:
    """Without processing:version the ``_Nxxxx_`` of the product id decides."""
    item = cdse_item(item_id, version=None)
    assert l1c.processing_baseline(item) == expected


def test_malformed_version_falls_back_to_id() -> None:
    """A processing:version that is not a baseline is ignored in favour of the id."""
    item = cdse_item(version="v5")
    assert l1c.processing_baseline(item) == (5, 10)


def test_no_baseline_at_all_is_refused() -> None:
    """Neither processing:version nor _Nxxxx_: the item cannot be calibrated safely."""
    item = cdse_item("my-product", version=None)
    with pytest.raises(InvalidItemError, match="processing baseline"):
        l1c.radiometry(item)


def test_missing_band_named_in_the_error() -> None:
    """An item lacking a band the model needs is refused, naming that band."""
    item = cdse_item(bands=("B02", "B03"))
    with pytest.raises(InvalidItemError, match="B04"):
        l1c.for_stackstac(item, ("B02", "B03", "B04"))
    item["assets"]["B03"]["href"] = ""
    with pytest.raises(InvalidItemError, match="B03"):
        l1c.require_bands(item, ("B02", "B03"))


def test_missing_grid_is_refused() -> None:
    """An asset without proj:transform or proj:shape cannot be placed on a grid."""
    item = cdse_item()
    broken = copy.deepcopy(item)
    del broken["assets"]["B02"]["proj:transform"]
    with pytest.raises(InvalidItemError, match="proj:transform"):
        l1c.asset_grid(broken, "B02")
    broken = copy.deepcopy(item)
    del broken["assets"]["B02"]["proj:shape"]
    with pytest.raises(InvalidItemError, match="proj:shape"):
        l1c.asset_grid(broken, "B02")


def test_synthetic_and_sample_items_bridge(l1c_product: Any, sample_item_path: Path) -> None:
    """The test support's CDSE-shaped items and the embedded sample bridge as expected."""
    synthetic = l1c_product(baseline="05.10", size_10m=60)
    assert l1c.radiometry(synthetic).add_offset == -1000.0
    assert l1c.epsg_of(synthetic, "B02") == 32631
    sample = json.loads(sample_item_path.read_text())
    assert l1c.radiometry(sample).add_offset == 0.0
    assert l1c.epsg_of(sample, "B04") == 32633


VIEW = {
    "view:sun_elevation": 24.5,
    "view:sun_azimuth": 150.25,
    "view:incidence_angle": 6.75,
    "view:azimuth": 104.0,
}
METADATA_HREF = f"s3://eodata/Sentinel-2/MSI/L1C/2024/01/16/{CDSE_ID}.SAFE/GRANULE/g/MTD_TL.xml"


def full_item(bands: tuple[str, ...] = L1C_BANDS, view: bool = True) -> dict[str, Any]:
    """A CDSE-shaped item with every band, its granule metadata and its scene-mean angles."""
    item = cdse_item(bands=bands)
    item["assets"]["granule_metadata"] = {
        "href": METADATA_HREF,
        "type": "application/xml",
        "roles": ["metadata"],
    }
    if view:
        item["properties"].update(VIEW)
    return item


def test_from_item_reads_grids_radiometry_and_metadata() -> None:
    """Every band on its own grid (EPSG of proj:code), the baseline's radiometry, the
    granule metadata href and the four view:* means; the tile origin and EPSG as properties."""
    item = full_item()
    product = l1c.from_item(item, href="https://catalogue/items/x.json")
    assert product.id == CDSE_ID and product.href == "https://catalogue/items/x.json"
    assert product.item is item
    assert set(product.bands) == set(L1C_BANDS)
    assert product.inputs == L1C_BANDS, "in L1C order"
    for band in L1C_BANDS:
        res = NATIVE_RESOLUTION[band]
        asset = product.bands[band]
        assert asset.href == item["assets"][band]["href"]
        assert asset.grid == Grid(
            32751, Affine(res, 0, 399960, 0, -res, 1400020), 109800 // res, 109800 // res
        )
    assert product.bands["B05"].grid.shape == (5490, 5490)
    assert product.bands["B01"].grid.resolution == 60
    assert product.epsg == 32751
    assert product.origin == (399960.0, 1400020.0)
    assert product.baseline == (5, 10)
    assert product.radiometry == l1c.BandRadiometry(add_offset=-1000.0)
    assert product.granule_metadata == METADATA_HREF
    assert product.view == VIEW
    assert all(isinstance(v, float) for v in product.view.values())
    assert product.hrefs(("B04", "B02")) == [
        item["assets"]["B04"]["href"],
        item["assets"]["B02"]["href"],
    ]
    assert product.hrefs() == [item["assets"][b]["href"] for b in L1C_BANDS]
    assert l1c.from_item(item).href is None


def test_from_item_follows_the_baseline_not_raster_offset() -> None:
    """An 02.04 product reads with no offset although its assets state raster:offset -0.1."""
    item = full_item()
    item["id"] = "S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_20170216T102204"
    item["properties"]["processing:version"] = "02.04"
    product = l1c.from_item(item)
    assert product.baseline == (2, 4)
    assert product.radiometry.add_offset == 0.0


def test_from_item_without_b10_has_12_inputs() -> None:
    """B10 is optional: absent (or without href) the product has the 12 L2A bands as inputs."""
    item = full_item(bands=L2A_BANDS)
    product = l1c.from_item(item)
    assert product.inputs == L2A_BANDS and len(product.inputs) == 12
    assert "B10" not in product.bands
    with_empty = full_item()
    with_empty["assets"]["B10"]["href"] = ""
    assert l1c.from_item(with_empty).inputs == L2A_BANDS


@pytest.mark.parametrize("band", ["B01", "B8A", "B12"])
def test_from_item_refuses_a_missing_l2a_band(band: str) -> None:
    """Any band other than B10 is required, and the error names it (and not B10)."""
    item = full_item()
    del item["assets"][band]
    with pytest.raises(InvalidItemError, match=band) as raised:
        l1c.from_item(item)
    assert "B10" not in str(raised.value)
    item = full_item()
    item["assets"][band]["href"] = ""
    with pytest.raises(InvalidItemError, match=band):
        l1c.from_item(item)


@pytest.mark.parametrize("key", ["proj:transform", "proj:shape", "proj:code"])
def test_from_item_refuses_missing_proj_info(key: str) -> None:
    """A band that cannot be placed on a grid (no transform, shape or EPSG) is refused."""
    item = full_item()
    del item["assets"]["B8A"][key]
    with pytest.raises(InvalidItemError, match="B8A"):
        l1c.from_item(item)


def test_from_item_proj_info_on_the_item_properties() -> None:
    """proj:* stated once on the item (not per asset) places every band as well."""
    item = full_item(bands=("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                            "B09", "B11", "B12"))  # fmt: skip
    for asset in item["assets"].values():
        asset.pop("proj:code", None)
    item["properties"]["proj:code"] = "EPSG:32631"
    product = l1c.from_item(item)
    assert product.epsg == 32631
    assert {asset.grid.epsg for asset in product.bands.values()} == {32631}


def test_view_only_when_all_four_angles_are_given() -> None:
    """The view dict holds all four view:* values, or is empty when any is missing or NaN."""
    assert l1c.from_item(full_item(view=False)).view == {}
    for key in VIEW:
        item = full_item()
        del item["properties"][key]
        assert l1c.from_item(item).view == {}, key
    item = full_item()
    item["properties"]["view:azimuth"] = float("nan")
    assert l1c.from_item(item).view == {}
    item = full_item()
    item["properties"]["view:azimuth"] = "104"
    assert l1c.from_item(item).view == {}
    item = full_item()
    item["properties"]["view:sun_azimuth"] = 150  # an int is a valid angle
    assert l1c.from_item(item).view["view:sun_azimuth"] == 150.0


def test_from_item_without_granule_metadata() -> None:
    """No granule_metadata asset (or one without href): granule_metadata is None."""
    item = full_item()
    del item["assets"]["granule_metadata"]
    assert l1c.from_item(item).granule_metadata is None
    item = full_item()
    item["assets"]["granule_metadata"]["href"] = ""
    assert l1c.from_item(item).granule_metadata is None


def test_synthetic_and_sample_items_as_products(l1c_product: Any, sample_item_path: Path) -> None:
    """The test support's synthetic items and the embedded sample read as products."""
    from component.io.search import read_item

    synthetic = l1c_product(baseline="05.10", size_10m=60)
    product = l1c.from_item(synthetic)
    assert product.radiometry.add_offset == -1000.0 and product.epsg == 32631
    assert product.origin == (300000.0, 4900020.0)
    assert product.granule_metadata == synthetic["assets"]["granule_metadata"]["href"]
    assert set(product.view) == set(VIEW)
    sample = read_item(str(sample_item_path))
    product = l1c.from_item(sample.data, sample.href)
    assert product.href == sample.href and product.baseline == (2, 4)
    assert product.epsg == 32633 and product.inputs == L1C_BANDS
    assert product.origin == (330000.0, 5822040.0)
