"""The CDSE STAC 1.1 bridge, on items shaped exactly like CDSE's ``sentinel-2-l1c`` items."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from component.errors import InvalidItemError
from component.io import stac_bridge

CDSE_ID = "S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505"


def cdse_item(
    item_id: str = CDSE_ID, version: str | None = "05.10", bands: tuple[str, ...] = ("B02", "B05")
) -> dict[str, Any]:
    """A CDSE-shaped L1C item (no proj:epsg, no raster:bands, raster:offset -0.1 on assets)."""
    assets: dict[str, Any] = {}
    for band in bands:
        res = 20 if band in ("B05", "B06", "B07", "B8A", "B11", "B12") else 10
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
    assert stac_bridge.epsg_of(cdse_item(), "B02") == 32751


def test_epsg_from_item_properties_and_missing() -> None:
    """A ``proj:code`` on the item properties is used; with none at all the item is refused."""
    item = cdse_item()
    del item["assets"]["B02"]["proj:code"]
    item["properties"]["proj:code"] = "EPSG:32631"
    assert stac_bridge.epsg_of(item, "B02") == 32631
    del item["properties"]["proj:code"]
    with pytest.raises(InvalidItemError, match="B02"):
        stac_bridge.epsg_of(item, "B02")


def test_for_stackstac_writes_the_old_forms() -> None:
    """The bridged asset has proj:epsg, transform and shape, and raw-DN raster:bands."""
    item = cdse_item()
    bridged = stac_bridge.for_stackstac(item, ("B02", "B05"))
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
    assert stac_bridge.processing_baseline(item) == (2, 4)
    radiometry = stac_bridge.radiometry(item)
    assert radiometry.add_offset == 0.0
    assert radiometry.offset == 0.0
    assert radiometry.scale == pytest.approx(1e-4)


def test_new_baseline_subtracts_1000_dn() -> None:
    """Baseline 05.10: reflectance = (DN - 1000) / 10000, i.e. offset -0.1."""
    radiometry = stac_bridge.radiometry(cdse_item())
    assert radiometry.add_offset == -1000.0
    assert radiometry.offset == pytest.approx(-0.1)


def test_baseline_04_00_is_the_threshold() -> None:
    """04.00 itself carries the offset; 03.99 does not."""
    assert stac_bridge.radiometry(cdse_item(version="04.00")).add_offset == -1000.0
    assert stac_bridge.radiometry(cdse_item(version="03.99")).add_offset == 0.0


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
    assert stac_bridge.processing_baseline(item) == expected


def test_malformed_version_falls_back_to_id() -> None:
    """A processing:version that is not a baseline is ignored in favour of the id."""
    item = cdse_item(version="v5")
    assert stac_bridge.processing_baseline(item) == (5, 10)


def test_no_baseline_at_all_is_refused() -> None:
    """Neither processing:version nor _Nxxxx_: the item cannot be calibrated safely."""
    item = cdse_item("my-product", version=None)
    with pytest.raises(InvalidItemError, match="processing baseline"):
        stac_bridge.radiometry(item)


def test_missing_band_named_in_the_error() -> None:
    """An item lacking a band the model needs is refused, naming that band."""
    item = cdse_item(bands=("B02", "B03"))
    with pytest.raises(InvalidItemError, match="B04"):
        stac_bridge.for_stackstac(item, ("B02", "B03", "B04"))
    item["assets"]["B03"]["href"] = ""
    with pytest.raises(InvalidItemError, match="B03"):
        stac_bridge.require_bands(item, ("B02", "B03"))


def test_missing_grid_is_refused() -> None:
    """An asset without proj:transform or proj:shape cannot be placed on a grid."""
    item = cdse_item()
    broken = copy.deepcopy(item)
    del broken["assets"]["B02"]["proj:transform"]
    with pytest.raises(InvalidItemError, match="proj:transform"):
        stac_bridge.asset_grid(broken, "B02")
    broken = copy.deepcopy(item)
    del broken["assets"]["B02"]["proj:shape"]
    with pytest.raises(InvalidItemError, match="proj:shape"):
        stac_bridge.asset_grid(broken, "B02")


def test_synthetic_and_sample_items_bridge(l1c_product: Any, sample_item_path: Path) -> None:
    """The test support's CDSE-shaped items and the embedded sample bridge as expected."""
    synthetic = l1c_product(baseline="05.10", size_10m=60)
    assert stac_bridge.radiometry(synthetic).add_offset == -1000.0
    assert stac_bridge.epsg_of(synthetic, "B02") == 32631
    sample = json.loads(sample_item_path.read_text())
    assert stac_bridge.radiometry(sample).add_offset == 0.0
    assert stac_bridge.epsg_of(sample, "B04") == 32633
