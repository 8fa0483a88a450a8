"""The output STAC Item: schema validity, checksums, relative hrefs, lineage and projection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from component import __version__
from component.core.files import multihash_sha256
from component.core.grid import Grid
from component.io.describe import describe, lineage, output_id
from component.io.write import (
    CLOUD_NODATA,
    ProductWriter,
    atmosphere_to_dn,
    quicklook_bytes,
    reflectance_to_dn,
)
from component.model.scene_classification import SceneClass, class_percentages, cover_properties
from support.validation import assert_valid_stac

L1C_ID = "S2B_MSIL1C_20240116T105329_N0510_R051_T31TCJ_20240116T114032"
GRID = Grid(epsg=32631, transform=Affine(60, 0, 300000, 0, -60, 4900020), width=48, height=40)
GRID_20 = Grid(epsg=32631, transform=Affine(20, 0, 300000, 0, -20, 4900020), width=144, height=120)
NOTE = "no B10 (cirrus) band: thin cirrus not corrected"


def l1c_item() -> dict[str, Any]:
    """A CDSE-shaped L1C item's properties as the describer sees them."""
    return {
        "id": L1C_ID,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[0.5, 44.2], [1.9, 44.2], [1.9, 43.2], [0.5, 43.2], [0.5, 44.2]]],
        },
        "properties": {
            "datetime": "2024-01-16T10:53:29.024Z",
            "platform": "sentinel-2b",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": 12.5,
            "grid:code": "MGRS-31TCJ",
            "sat:relative_orbit": 51,
            "sat:orbit_state": "descending",
            "processing:level": "L1",
            "processing:version": "05.10",
            "product:type": "S2MSI1C",
        },
        "assets": {},
    }


@pytest.fixture(scope="module")
def described(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """A small written product on two grids and its Item (clipped to a bbox window)."""
    folder = tmp_path_factory.mktemp("product")
    writer = ProductWriter(folder)
    rng = np.random.default_rng(1)
    boa = rng.uniform(0, 0.3, (3, GRID.height, GRID.width)).astype(np.float32)
    for index, band in enumerate(("B02", "B03", "B04")):
        draft = writer.open(f"{band}_60m", GRID, "reflectance", (band,), "downsampled")
        draft.write(0, reflectance_to_dn(boa[index]))
        writer.finish_later(draft)
    b05 = writer.open("B05_20m", GRID_20, "reflectance", ("B05",), "original")
    b05.write(0, reflectance_to_dn(np.full((GRID_20.height, GRID_20.width), 0.2, np.float32)))
    tci = writer.open("TCI_60m", GRID, "visual", ("B04", "B03", "B02"), "downsampled")
    tci.write(0, quicklook_bytes(boa[::-1]))
    for draft in (b05, tci):
        writer.finish_later(draft)
    for kind, value in (("aot", 0.1), ("wvp", 1.5)):
        draft = writer.open(f"{kind.upper()}_60m", GRID, kind, (kind.upper(),), "upsampled")
        draft.write(0, atmosphere_to_dn(np.full((GRID.height, GRID.width), value, np.float32)))
        writer.finish_later(draft)
    assets = writer.finish()
    writer.close()
    item = describe(
        l1c=l1c_item(),
        l1c_href="https://stac.example/collections/sentinel-2-l1c/items/" + L1C_ID,
        item_id=output_id(L1C_ID, "unet", "1.0.0"),
        footprint_grid=GRID,
        assets=assets,
        model_name="unet",
        model_version="1.0.0",
        lineage_text=lineage(
            l1c_id=L1C_ID,
            model_name="unet",
            model_version="1.0.0",
            model_files={"atmosphere table": "cd" * 32, "weights": "ab" * 32},
            runtime="standard-atmosphere",
            resolution=60,
            coarse_m=120,
            geometry_source="MTD_TL.xml angle grids",
            notes=[NOTE],
        ),
        clipped=True,
        view={
            "view:sun_azimuth": 160.0,
            "view:sun_elevation": 30.0,
            "view:incidence_angle": 5.0,
            "view:azimuth": 105.0,
        },
    )
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    (folder / f"{item.id}.json").write_text(json.dumps(data))
    return data, folder


def test_item_is_schema_valid(described: tuple[dict[str, Any], Path]) -> None:
    """The Item validates against STAC 1.1 core and every extension schema it declares."""
    data, _ = described
    assert data["stac_version"] == "1.1.0"
    for name in ("eo", "raster", "projection", "processing", "file", "grid", "sat", "view"):
        assert any(f"/{name}/" in url for url in data["stac_extensions"]), name
    assert_valid_stac(data)


def test_checksums_and_sizes_match_files(described: tuple[dict[str, Any], Path]) -> None:
    """file:checksum (sha2-256 multihash) and file:size match every asset file."""
    data, folder = described
    assert set(data["assets"]) == {
        "B02_60m",
        "B03_60m",
        "B04_60m",
        "B05_20m",
        "TCI_60m",
        "AOT_60m",
        "WVP_60m",
        "thumbnail",
    }
    for asset in data["assets"].values():
        path = folder / asset["href"]
        assert asset["file:checksum"].startswith("1220") and len(asset["file:checksum"]) == 68
        assert asset["file:checksum"] == multihash_sha256(path)
        assert asset["file:size"] == path.stat().st_size


def test_hrefs_are_relative(described: tuple[dict[str, Any], Path]) -> None:
    """Asset hrefs are ``./name`` so the product folder can move or be archived whole."""
    data, _ = described
    for asset in data["assets"].values():
        assert asset["href"].startswith("./") and "/" not in asset["href"][2:]


def test_derived_from_link(described: tuple[dict[str, Any], Path]) -> None:
    """A ``derived_from`` link points at the L1C input item."""
    data, _ = described
    links = [link for link in data["links"] if link["rel"] == "derived_from"]
    assert len(links) == 1
    assert links[0]["href"].endswith("/items/" + L1C_ID)
    assert links[0]["type"] == "application/geo+json"


def test_projection_and_raster_fields(described: tuple[dict[str, Any], Path]) -> None:
    """Data assets carry proj:code/shape/transform/bbox of the grid and L2A raster fields."""
    data, _ = described
    b03 = data["assets"]["B03_60m"]
    assert b03["proj:code"] == "EPSG:32631"
    assert b03["proj:shape"] == [40, 48]
    assert b03["proj:transform"] == [60, 0, 300000, 0, -60, 4900020]
    assert b03["proj:bbox"] == [300000, 4900020 - 40 * 60, 300000 + 48 * 60, 4900020]
    assert b03["raster:scale"] == 0.0001 and b03["raster:offset"] == -0.1
    assert b03["nodata"] == 0 and b03["data_type"] == "uint16"
    assert b03["bands"] == [
        {
            "name": "B03",
            "eo:common_name": "green",
            "eo:center_wavelength": 0.56,
            "eo:full_width_half_max": 0.045,
        }
    ]
    assert b03["roles"] == ["data", "reflectance", "sampling:downsampled", "gsd:60m"]
    assert b03["gsd"] == 60
    assert "cloud-optimized" in b03["type"]
    assert data["assets"]["TCI_60m"]["roles"] == ["visual", "sampling:downsampled", "gsd:60m"]
    assert data["assets"]["thumbnail"]["type"] == "image/png"


def test_each_asset_has_its_own_projection(described: tuple[dict[str, Any], Path]) -> None:
    """A 20 m band states its own grid: shape, transform, bbox and gsd, as its file has."""
    import rasterio

    data, folder = described
    b05 = data["assets"]["B05_20m"]
    assert b05["proj:shape"] == [120, 144] and b05["proj:transform"][0] == 20
    assert b05["gsd"] == 20 and "gsd:20m" in b05["roles"] and "sampling:original" in b05["roles"]
    for asset in data["assets"].values():
        if "proj:shape" not in asset:
            continue
        with rasterio.open(folder / asset["href"]) as dataset:
            assert list(dataset.shape) == asset["proj:shape"]
            assert list(dataset.transform)[:6] == asset["proj:transform"]
            assert list(dataset.bounds) == asset["proj:bbox"]
            assert f"EPSG:{dataset.crs.to_epsg()}" == asset["proj:code"]


def test_aot_and_wvp_describe_their_files(described: tuple[dict[str, Any], Path]) -> None:
    """Sen2Cor's quantification, stated truthfully: scale 0.001, offset 0, WVP in cm."""
    data, _ = described
    aot, wvp = data["assets"]["AOT_60m"], data["assets"]["WVP_60m"]
    for asset in (aot, wvp):
        assert asset["raster:scale"] == 0.001 and asset["raster:offset"] == 0
        assert asset["data_type"] == "uint16" and asset["nodata"] == 0
        assert asset["roles"] == ["data", "sampling:upsampled", "gsd:60m"]
    assert wvp["unit"] == "cm" and wvp["bands"][0]["unit"] == "cm" and "unit" not in aot
    assert aot["bands"][0]["name"] == "AOT"


def test_processing_and_carried_properties(described: tuple[dict[str, Any], Path]) -> None:
    """processing:* describe this software and model; acquisition properties are carried."""
    data, _ = described
    props = data["properties"]
    assert props["processing:level"] == "L2"
    assert props["processing:version"] == __version__
    assert props["processing:software"]["unet"] == "1.0.0"
    assert L1C_ID in props["processing:lineage"] and "ab" * 32 in props["processing:lineage"]
    assert "cd" * 32 in props["processing:lineage"] and NOTE in props["processing:lineage"]
    assert "MTD_TL.xml" in props["processing:lineage"]
    assert props["view:incidence_angle"] == 5.0 and props["view:sun_elevation"] == 30.0
    assert props["processing:datetime"].endswith("Z")
    assert props["datetime"].startswith("2024-01-16T10:53:29")
    assert props["eo:cloud_cover"] == 12.5 and props["grid:code"] == "MGRS-31TCJ"
    assert "product:type" not in props, "the L1C product type must not be carried over"


def test_clipped_geometry_is_the_grid_footprint(described: tuple[dict[str, Any], Path]) -> None:
    """A bbox window's Item has the window's footprint, not the L1C's; bbox encloses it."""
    data, _ = described
    ring = data["geometry"]["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    assert data["bbox"] == [min(lons), min(lats), max(lons), max(lats)]
    assert 0.4 < min(lons) < max(lons) < 0.9 and 44.0 < min(lats) < max(lats) < 44.3


def test_output_id_is_deterministic() -> None:
    """The same input and model version give the same id; another version another id."""
    first = output_id(L1C_ID, "unet", "1.0.0")
    assert first == output_id(L1C_ID, "unet", "1.0.0")
    assert first == "S2B_MSIL2A_20240116T105329_N0510_R051_T31TCJ_20240116T114032_unet-1.0.0"
    assert output_id(L1C_ID, "unet", "1.0.1") != first


def test_scene_classification_is_declared_and_covers_computed(tmp_path: Path) -> None:
    """SCL with the classification extension as CDSE declares it, CLD in percent, and the
    cloud and snow cover of this product's SCL replacing the L1C's (12.5 there)."""
    scl = np.full((GRID_20.height, GRID_20.width), SceneClass.VEGETATION, np.uint8)
    scl[:30] = SceneClass.CLOUD_HIGH_PROBABILITY  # 30 of 120 rows with data
    scl[30:36] = SceneClass.SNOW
    scl[:, :24] = SceneClass.NO_DATA
    writer = ProductWriter(tmp_path)
    for kind, values in (("scl", scl), ("cld", np.where(scl == 0, CLOUD_NODATA, 40))):
        draft = writer.open(f"{kind.upper()}_20m", GRID_20, kind, (kind.upper(),))
        draft.write(0, values.astype(np.uint8))
        writer.finish_later(draft)
    assets = writer.finish()
    writer.close()
    scene = {"statistics": class_percentages(scl), **cover_properties(scl)}
    item = describe(
        l1c=l1c_item(),
        l1c_href=None,
        item_id=output_id(L1C_ID, "unet", "1.0.0"),
        footprint_grid=GRID_20,
        assets=assets,
        model_name="unet",
        model_version="1.0.0",
        lineage_text="test",
        clipped=True,
        scene=scene,
    ).to_dict(include_self_link=False, transform_hrefs=False)
    assert_valid_stac(item)
    assert (
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
        in (item["stac_extensions"])
    )
    scl_asset, cld_asset = item["assets"]["SCL_20m"], item["assets"]["CLD_20m"]
    classes = scl_asset["classification:classes"]
    assert [c["value"] for c in classes] == list(range(12))
    assert classes[0] == {**classes[0], "name": "no_data", "nodata": True}
    assert classes[9]["name"] == "cloud_high_probability" and classes[11]["name"] == "snow"
    assert scl_asset["data_type"] == "uint8" and scl_asset["nodata"] == 0
    assert scl_asset["roles"] == ["data", "sampling:original", "gsd:20m"]
    assert cld_asset["nodata"] == CLOUD_NODATA and cld_asset["unit"] == "%"
    props = item["properties"]
    assert props["eo:cloud_cover"] == 25.0 and props["eo:snow_cover"] == 5.0
    assert props["statistics"]["cloud_high_probability"] == 25.0
    assert props["statistics"]["no_data"] == pytest.approx(100 * 24 / 144, abs=1e-3)
