"""The output STAC Item: schema validity, checksums, relative hrefs, lineage and projection."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from component import __version__
from component.io.describe import describe, multihash_sha256, output_id
from component.io.load import Grid
from component.io.write import ProductWriter

VALIDATOR = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "stac_validate.py"
L1C_ID = "S2B_MSIL1C_20240116T105329_N0510_R051_T31TCJ_20240116T114032"


def stac_validator() -> ModuleType:
    """The shared offline STAC validator (official core + extension schemas); skip if absent."""
    if not VALIDATOR.is_file():
        pytest.skip(f"STAC validator not available at {VALIDATOR}")
    spec = importlib.util.spec_from_file_location("stac_validate", VALIDATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_valid_stac(document: dict[str, Any]) -> None:
    """Fail with the validator's messages when *document* breaks a schema it declares."""
    errors = stac_validator().validate(document)
    assert errors == [], "\n".join(errors)


GRID = Grid(epsg=32631, transform=Affine(60, 0, 300000, 0, -60, 4900020), width=48, height=40)


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
    """A small written product and its Item (clipped to a bbox window)."""
    folder = tmp_path_factory.mktemp("product")
    writer = ProductWriter(folder, GRID, ("B02", "B03", "B04"))
    boa = np.random.default_rng(1).uniform(0, 0.3, (3, GRID.height, GRID.width))
    writer.write(Window(0, 0, GRID.width, GRID.height), boa.astype(np.float32))
    assets = writer.finish()
    item = describe(
        l1c=l1c_item(),
        l1c_href="https://stac.example/collections/sentinel-2-l1c/items/" + L1C_ID,
        item_id=output_id(L1C_ID, "unet", "1.0.0"),
        grid=GRID,
        assets=assets,
        model_name="unet",
        model_version="1.0.0",
        model_sha256="ab" * 32,
        clipped=True,
    )
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    (folder / f"{item.id}.json").write_text(json.dumps(data))
    return data, folder


def test_item_is_schema_valid(described: tuple[dict[str, Any], Path]) -> None:
    """The Item validates against STAC 1.1 core and every extension schema it declares."""
    data, _ = described
    assert data["stac_version"] == "1.1.0"
    for name in ("eo", "raster", "projection", "processing", "file", "grid", "sat"):
        assert any(f"/{name}/" in url for url in data["stac_extensions"]), name
    assert_valid_stac(data)


def test_checksums_and_sizes_match_files(described: tuple[dict[str, Any], Path]) -> None:
    """file:checksum (sha2-256 multihash) and file:size match every asset file."""
    data, folder = described
    assert set(data["assets"]) == {"B02_60m", "B03_60m", "B04_60m", "TCI_60m", "thumbnail"}
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
    assert "data" in b03["roles"] and b03["gsd"] == 60
    assert "cloud-optimized" in b03["type"]
    assert data["assets"]["TCI_60m"]["roles"] == ["visual"]
    assert data["assets"]["thumbnail"]["type"] == "image/png"


def test_processing_and_carried_properties(described: tuple[dict[str, Any], Path]) -> None:
    """processing:* describe this software and model; acquisition properties are carried."""
    data, _ = described
    props = data["properties"]
    assert props["processing:level"] == "L2"
    assert props["processing:version"] == __version__
    assert props["processing:software"]["unet"] == "1.0.0"
    assert L1C_ID in props["processing:lineage"] and "ab" * 32 in props["processing:lineage"]
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
