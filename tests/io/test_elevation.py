"""Elevation on the atmosphere's grid: --dem in any CRS, the offline map, sea level last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.transform import from_origin

from component.core.grid import Grid
from component.core.settings import Settings
from component.errors import AssetReadError
from component.io import elevation
from support.synthetic import copernicus_dem_item, write_dem

SETTINGS = Settings()
# A 120 m grid of 10 x 12 cells over Lago Barbellino (Alps, ~1.9 km), UTM 32N.
ALPS = Grid(32632, Affine(120.0, 0, 565000, 0, -120.0, 5100000), 12, 10)


def _dem(path: Path, values: np.ndarray, crs: str, transform: Affine, **extra: object) -> Path:
    profile = {"driver": "GTiff", "count": 1, "dtype": values.dtype.name, "crs": crs}
    profile |= {"width": values.shape[1], "height": values.shape[0], "transform": transform}
    with rasterio.open(path, "w", **profile, **extra) as target:
        target.write(values, 1)
    return path


def test_a_utm_dem_finer_than_the_grid_is_averaged(tmp_path: Path) -> None:
    """30 m cells, a ramp from west to east: each 120 m cell gets its 4 x 4 block's mean."""
    ramp = np.tile(np.arange(48, dtype=np.float32) * 10.0 + 1500.0, (40, 1))
    dem = _dem(tmp_path / "dem.tif", ramp, "EPSG:32632", from_origin(565000, 5100000, 30, 30))
    heights, notes = elevation.resolve(str(dem), ALPS, SETTINGS)
    assert notes == [] and heights.source == f"--dem {dem}"
    expected = ramp.reshape(10, 4, 12, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(heights.metres, expected, atol=0.01)
    assert "mean" in heights.describe()


def test_a_geographic_dem_with_scale_and_nodata_is_read_in_metres(tmp_path: Path) -> None:
    """A DEM in degrees, stored as scaled integers with a no-data value (the sea): metres on
    the UTM grid, sea level where it has no data."""
    data = np.full((60, 60), 100, np.uint8)  # 100 * 20 m = 2000 m
    data[:, :5] = 255  # no data west of the grid's window
    path = tmp_path / "geo.tif"
    _dem(path, data, "EPSG:4326", from_origin(9.8, 46.12, 0.005, 0.005), nodata=255)
    with rasterio.open(path, "r+") as target:
        target.scales, target.offsets = (20.0,), (0.0,)
    heights, _ = elevation.resolve(str(path), ALPS, SETTINGS)
    assert np.allclose(heights.metres, 2000.0, atol=1.0)


def test_without_dem_the_offline_map_serves_with_a_note() -> None:
    heights, notes = elevation.resolve(None, ALPS, SETTINGS)
    assert heights.source == elevation.OFFLINE_SOURCE and len(notes) == 1
    assert 1200 < float(np.mean(heights.metres)) < 2600  # the Alps, not the sea
    sea = Grid(32626, Affine(120.0, 0, 500000, 0, -120.0, 5000000), 4, 4)  # mid-Atlantic
    assert not np.any(elevation.resolve(None, sea, SETTINGS)[0].metres)


def test_an_unreadable_dem_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "dem.tif"
    bad.write_bytes(b"not a raster")
    with pytest.raises(AssetReadError, match="--dem") as raised:
        elevation.resolve(str(bad), ALPS, SETTINGS)
    assert raised.value.exit_code == 5 and "\n" not in str(raised.value)


def test_a_missing_offline_map_falls_back_to_sea_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(elevation, "offline_map", lambda: tmp_path / "gone.tif")
    heights, notes = elevation.resolve(None, ALPS, SETTINGS)
    assert heights is elevation.SEA_LEVEL and "sea level" in notes[0]


@pytest.mark.slow
def test_the_copernicus_dem_comes_from_the_loopback_stac_api_and_s3(
    tmp_path: Path, s3_server: Any, stac_api: Any
) -> None:
    """With S3 keys, the default source is the DEM collection of the STAC API (here rustac on
    loopback), its COG read from S3 (here moto) as the bands are: a 1500 m plateau over the
    Alps grid, mosaicked onto it; without keys, or with an API that has no tile, the offline
    map serves with a note."""
    import os

    bbox = [9.8, 45.82, 10.1, 46.12]
    dem = write_dem(tmp_path / "dem.tif", bbox, 1500.0)
    href = s3_server.upload_file(dem, "auxdata/CopDEM_COG/N46_E009.tif")
    url = stac_api([copernicus_dem_item(href, bbox)])
    environ = {**os.environ, **s3_server.gdal_env(), "COMPONENT_DEM_STAC_URL": url}
    settings = Settings.from_environ(environ)
    heights, notes = elevation.resolve(None, ALPS, settings)
    assert notes == [] and heights.source.startswith("Copernicus DEM (cop-dem-glo-90-dged-cog")
    assert np.allclose(heights.metres, 1500.0, atol=1.0)
    keyless = settings.without_keys()
    assert elevation.resolve(None, ALPS, keyless)[0].source == elevation.OFFLINE_SOURCE
    empty = Settings.from_environ({**environ, "COMPONENT_DEM_COLLECTION": "no-such-dem"})
    heights, notes = elevation.resolve(None, ALPS, empty)
    assert heights.source == elevation.OFFLINE_SOURCE and "Copernicus DEM not read" in notes[0]


@pytest.mark.slow
def test_elevation_names_one_source(tmp_path: Path, s3_server: Any, stac_api: Any) -> None:
    """``--elevation``: copernicus-30 and copernicus-90 read that collection of the loopback
    STAC API (a 2500 m and a 1500 m plateau), auto the 90 m one; offline the map even with S3
    keys; sea-level none. A named collection that cannot be read stops the item (exit 5) where
    auto falls back."""
    import os

    bbox = [9.8, 45.82, 10.1, 46.12]
    items = []
    for metres, collection in ((1500.0, "cop-dem-glo-90-dged-cog"),
                               (2500.0, "cop-dem-glo-30-dged-cog")):  # fmt: skip
        dem = write_dem(tmp_path / f"{collection}.tif", bbox, metres)
        href = s3_server.upload_file(dem, f"auxdata/{collection}/N46_E009.tif")
        items.append(copernicus_dem_item(href, bbox, collection) | {"id": collection})
    url = stac_api(items)
    settings = Settings.from_environ(
        {**os.environ, **s3_server.gdal_env(), "COMPONENT_DEM_STAC_URL": url}
    )
    for source, metres in (("copernicus-30", 2500.0), ("copernicus-90", 1500.0),
                           ("auto", 1500.0)):  # fmt: skip
        heights, notes = elevation.resolve(None, ALPS, settings, source)
        assert notes == [] and np.allclose(heights.metres, metres, atol=1.0), source
    heights, notes = elevation.resolve(None, ALPS, settings, "offline")
    assert heights.source == elevation.OFFLINE_SOURCE and notes == []
    assert 1200 < float(np.mean(heights.metres)) < 2600
    heights, notes = elevation.resolve(None, ALPS, settings, "sea-level")
    assert not np.any(heights.metres) and "sea level" in heights.describe()
    only90 = stac_api([items[0]])
    elsewhere = Settings.from_environ(
        {**os.environ, **s3_server.gdal_env(), "COMPONENT_DEM_STAC_URL": only90}
    )
    with pytest.raises(AssetReadError, match="cop-dem-glo-30-dged-cog") as raised:
        elevation.resolve(None, ALPS, elsewhere, "copernicus-30")
    assert raised.value.exit_code == 5 and "\n" not in str(raised.value)


def test_a_named_offline_map_that_cannot_be_read_stops_the_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(elevation, "offline_map", lambda: tmp_path / "gone.tif")
    with pytest.raises(AssetReadError, match="offline") as raised:
        elevation.resolve(None, ALPS, SETTINGS, "offline")
    assert raised.value.exit_code == 5


def test_copernicus_dem_tiles_are_mosaicked_each_where_it_has_data(
    tmp_path: Path, s3_server: Any, stac_api: Any
) -> None:
    """Two DEM tiles side by side, neither with a nodata value (as ``write_dem`` and the
    Copernicus COGs): each fills the cells it covers, and the one read last does not write its
    warp's zeros over the other's cells."""
    import os

    from rasterio.warp import transform

    (west, east), (south, north) = transform(
        f"EPSG:{ALPS.epsg}", "EPSG:4326", [ALPS.bounds[0], ALPS.bounds[2]],
        [ALPS.bounds[1], ALPS.bounds[3]],
    )  # fmt: skip
    middle = round((west + east) / 2 / 0.005) * 0.005  # on the DEM cells' edges
    items = []
    for name, (w, e), metres in (("W", (west - 0.05, middle), 1500.0),
                                 ("E", (middle, east + 0.05), 2500.0)):  # fmt: skip
        bbox = [w, south - 0.05, e, north + 0.05]
        dem = write_dem(tmp_path / f"dem-{name}.tif", bbox, metres)
        href = s3_server.upload_file(dem, f"auxdata/CopDEM_COG/{name}.tif")
        items.append(copernicus_dem_item(href, bbox) | {"id": f"dem-{name}"})
    url = stac_api(items)
    environ = {**os.environ, **s3_server.gdal_env(), "COMPONENT_DEM_STAC_URL": url}
    heights, notes = elevation.resolve(None, ALPS, Settings.from_environ(environ))
    assert notes == [] and "2 tiles" in heights.source
    metres = np.asarray(heights.metres)
    assert np.allclose(metres[:, 0], 1500.0, atol=1.0) and np.allclose(
        metres[:, -1], 2500.0, atol=1.0
    )
    assert (metres >= 1499.0).all(), "no cell is left at sea level"


def test_beyond_a_partial_dem_the_offline_map_serves_with_a_note(tmp_path: Path) -> None:
    """A --dem over the western half of the grid: the eastern cells take the offline map's
    elevation (the Alps there, not sea level), and the note says how much the DEM covered."""
    left, _, _, top = ALPS.bounds
    half = np.full((10, 6), 2222.0, np.float32)
    west_half = _dem(tmp_path / "west.tif", half, "EPSG:32632", from_origin(left, top, 120, 120))
    heights, notes = elevation.resolve(str(west_half), ALPS, SETTINGS)
    metres = np.asarray(heights.metres)
    assert np.allclose(metres[:, :6], 2222.0)
    offline = elevation.on_grid(str(elevation.offline_map()), ALPS, SETTINGS)
    np.testing.assert_array_equal(metres[:, 6:], offline[:, 6:])
    assert (metres[:, 6:] > 500).all(), "the Alps, not sea level"
    assert heights.source == f"--dem {west_half}"
    assert notes == [
        f"--dem {west_half} covers 50 % of the product: {elevation.OFFLINE_SOURCE} beyond it"
    ]
