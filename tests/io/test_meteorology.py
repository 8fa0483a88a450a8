"""The granule's ECMWF meteorology and CAMS aerosol forecast: read from GRIB (GRIB1 as ECMWF
writes it, GRIB2) or an EOPF product's conditions group; units; fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from component.core.grid import Grid
from component.core.settings import Settings
from component.io import l1c, meteorology
from support.synthetic import CAMS, ECMWF, make_l1c_product, write_cams_grib, write_ecmwf_grib

SETTINGS = Settings()
# 120 m cells over the synthetic product's corner of tile 31TCJ (around 0.8 E, 44.2 N).
CENTRE = (0.8, 44.2)


def _grid() -> Grid:
    from rasterio.warp import transform

    xs, ys = transform("EPSG:4326", "EPSG:32631", [CENTRE[0]], [CENTRE[1]])
    return Grid(32631, Affine(120.0, 0, xs[0] - 600, 0, -120.0, ys[0] + 600), 10, 10)


def test_the_fields_are_read_in_the_physics_units(tmp_path: Path) -> None:
    """Water vapour kg/m² -> cm, pressure Pa -> hPa, ozone Dobson -> atm-cm, on the grid."""
    grib = write_ecmwf_grib(tmp_path / "AUX_ECMWFT", CENTRE)
    fields = meteorology.read_ecmwf(str(grib), _grid(), SETTINGS)
    assert fields.water_cm is not None and fields.msl_hpa is not None
    assert fields.ozone_atm_cm is not None and fields.water_cm.shape == (10, 10)
    assert float(fields.water_cm.mean()) == pytest.approx(ECMWF["water_mm"] / 10, abs=0.01)
    assert float(fields.msl_hpa.mean()) == pytest.approx(ECMWF["msl_pa"] / 100, abs=0.2)
    assert float(fields.ozone_atm_cm.mean()) == pytest.approx(ECMWF["ozone_du"] / 1000, abs=0.002)
    assert "ozone 0.277 atm-cm" in fields.describe()


def test_beyond_the_forecast_grid_the_fields_take_their_mean(tmp_path: Path) -> None:
    """A grid wider than the GRIB's 9 x 9 points (a full tile is 1.4 deg wide at 44 N): the
    cells beyond it take the mean of those within, never the warper's 0 (a 0 hPa pressure
    is an infinite altitude)."""
    from rasterio.warp import transform

    grib = write_ecmwf_grib(tmp_path / "AUX_ECMWFT", CENTRE)
    xs, ys = transform("EPSG:4326", "EPSG:32631", [CENTRE[0]], [CENTRE[1]])
    wide = Grid(32631, Affine(1200.0, 0, xs[0] - 90_000, 0, -1200.0, ys[0] + 30_000), 150, 50)
    fields = meteorology.read_ecmwf(str(grib), wide, SETTINGS)
    assert fields.msl_hpa is not None and fields.water_cm is not None
    for values, unit in ((fields.msl_hpa, 100), (fields.water_cm, 0.1)):
        west, east = values[:, 0], values[:, -1]  # beyond the GRIB on both sides
        assert np.isfinite(values).all() and (values > 0).all()
        assert np.ptp(west) == 0 and np.ptp(east) == 0 and west[0] == east[0]
        inside = values[:, 75]  # the centre column: within the points, the eastward ramp
        assert abs(float(inside.mean()) - float(west[0])) < 0.6 * unit * 100
    assert float(fields.msl_hpa.min()) > 1000


def test_kg_per_square_metre_ozone_is_converted_from_dobson_units() -> None:
    """ECMWF's GRIB1 states ozone in kg/m² (1 DU = 2.1415e-5 kg/m²): 0.00594 is 277 DU."""
    in_kg = meteorology._in_units(np.array([0.00594]), "ozone_atm_cm", "kg m**-2")
    assert in_kg[0] == pytest.approx(0.277, abs=0.001)
    assert meteorology._in_units(np.array([277.0]), "ozone_atm_cm", "[Dobson]")[0] == 0.277


def test_a_low_pressure_acts_as_a_higher_target() -> None:
    assert meteorology.effective_elevation(500.0, None) == 500.0
    shifted = meteorology.effective_elevation(np.array([0.0, 500.0]), np.array([1003.25, 1013.25]))
    assert shifted[0] == pytest.approx(84, abs=1) and shifted[1] == pytest.approx(500, abs=0.1)


def test_a_product_finds_its_granule_aux_data(tmp_path: Path) -> None:
    """The SAFE layout's AUX_DATA/AUX_ECMWFT, beside MTD_TL.xml; without the file the item
    still runs and says so; without granule metadata there is nothing to look for."""
    item = make_l1c_product(tmp_path / "with", size_10m=96)
    product = l1c.from_item(item)
    assert product.aux_ecmwf is not None and product.aux_ecmwf.endswith("AUX_DATA/AUX_ECMWFT")
    fields, notes = meteorology.resolve(product, _grid(), SETTINGS)
    assert fields is not None and notes == []
    Path(product.aux_ecmwf).write_bytes(b"GRIB but truncated")
    fields, notes = meteorology.resolve(product, _grid(), SETTINGS)
    assert fields is None and "AUX_ECMWFT unreadable" in notes[0]
    bare = l1c.from_item(make_l1c_product(tmp_path / "bare", size_10m=96, angles=False))
    fields, notes = meteorology.resolve(bare, _grid(), SETTINGS)
    assert fields is None and "no ECMWF meteorology" in notes[0]


def test_a_grib_of_something_else_is_not_meteorology(tmp_path: Path) -> None:
    import rasterio
    import rasterio.shutil

    other = tmp_path / "other.grib2"
    source = tmp_path / "other.tif"
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "float32"}
    profile |= {"crs": "EPSG:4326", "transform": Affine(0.5, 0, 0, 0, -0.5, 45)}
    with rasterio.open(source, "w", **profile) as target:
        target.write(np.ones((1, 4, 4), np.float32))

    rasterio.shutil.copy(source, other, driver="GRIB")  # temperature, GDAL's default
    with pytest.raises(ValueError, match="no ECMWF"):
        meteorology.read_ecmwf(str(other), _grid(), SETTINGS)


# CAMS: the aerosol forecast of baseline 04.00 on (AUX_CAMSFO, conditions/meteorology/cams).


def test_cams_aod550_is_read_onto_the_grid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real files' GRIB1: GDAL names ECMWF's table-210 parameter 207 ``var207 of table
    210 of center ECMWF`` (unit ``[-]``); its AOD550, unitless, lands on the grid (the ramp
    eastwards kept), not the other optical depths beside it, and GDAL's warnings about a
    table it lacks stay out of the log."""
    import logging

    import rasterio

    caplog.set_level(logging.WARNING)

    grib = write_cams_grib(tmp_path / "AUX_CAMSFO", CENTRE)
    with rasterio.open(grib) as dataset:
        tags = {dataset.tags(i)["GRIB_ELEMENT"]: dataset.tags(i) for i in range(1, 12)}
    assert tags["var207 of table 210 of center ECMWF"]["GRIB_UNIT"] == "[-]"
    assert "Z" in tags and len(tags) == 11
    aod = meteorology.read_cams(str(grib), _grid(), SETTINGS)
    assert aod.shape == (10, 10) and aod.dtype == np.float32
    assert float(aod.mean()) == pytest.approx(CAMS["aod550"], abs=0.001)
    assert float(aod[:, -1].mean()) > float(aod[:, 0].mean())
    assert "parameter table" not in caplog.text and "local use" not in caplog.text
    described = meteorology.Meteorology(None, None, None, "CAMS", aod550=aod).describe()
    assert described == f"CAMS: CAMS AOD550 {float(aod.mean()):.3g} (scene means)"


def test_a_grib2_cams_file_is_read_by_aerosol_type_and_wavelength(tmp_path: Path) -> None:
    """In GRIB2 every optical depth is ``AOTK``: the total aerosol's (62000) at 550 nm is
    read, not dust's at 550 nm nor the total's at 865 nm written before it."""
    grib = write_cams_grib(tmp_path / "AUX_CAMSFO", CENTRE, edition=2)
    aod = meteorology.read_cams(str(grib), _grid(), SETTINGS)
    assert float(aod.mean()) == pytest.approx(CAMS["aod550"], abs=0.001)
    other = write_ecmwf_grib(tmp_path / "AUX_ECMWFT", CENTRE)
    with pytest.raises(ValueError, match="no CAMS AOD550"):
        meteorology.read_cams(str(other), _grid(), SETTINGS)
    with pytest.raises(FileNotFoundError):
        meteorology.read_cams(str(tmp_path / "absent"), _grid(), SETTINGS)


def test_a_product_with_aux_camsfo_finds_it(tmp_path: Path) -> None:
    """AUX_DATA/AUX_CAMSFO beside MTD_TL.xml (or an ``aux_camsfo`` asset): the ECMWF fields
    and the AOD550 together, both sources in the lineage's words, no note."""
    item = make_l1c_product(tmp_path / "p", size_10m=96, cams=True)
    product = l1c.from_item(item)
    assert product.aux_camsfo is not None and product.aux_camsfo.endswith("AUX_DATA/AUX_CAMSFO")
    fields, notes = meteorology.resolve(product, _grid(), SETTINGS)
    assert notes == [] and fields is not None and fields.aod550 is not None
    np.testing.assert_array_equal(
        fields.aod550, meteorology.read_cams(product.aux_camsfo, _grid(), SETTINGS)
    )
    assert fields.ozone_atm_cm is not None and fields.msl_hpa is not None
    text = fields.describe()
    assert "AUX_ECMWFT" in text and "AUX_CAMSFO" in text
    assert f"CAMS AOD550 {float(fields.aod550.mean()):.3g} (scene means)" in text
    moved = tmp_path / "elsewhere.grib"
    Path(product.aux_camsfo).rename(moved)
    item["assets"]["aux_camsfo"] = {"href": str(moved), "type": "application/x-grib"}
    assert l1c.from_item(item).aux_camsfo == str(moved)
    fields, notes = meteorology.resolve(l1c.from_item(item), _grid(), SETTINGS)
    assert notes == [] and fields is not None and fields.aod550 is not None


def test_a_safe_without_aux_camsfo_still_reads_ecmwf(tmp_path: Path) -> None:
    """Older baselines have no AUX_CAMSFO: the ECMWF fields, no AOD550 and no note, for the
    item, the SAFE folder and its zip (the file looked for through /vsizip/)."""
    from component.io import safe_product
    from support.safe import product_folder, zip_safe

    item = make_l1c_product(tmp_path, size_10m=96, baseline="03.01")
    safe = product_folder(tmp_path)
    for source in (
        item,
        *(safe_product.item_from_safe(str(s), SETTINGS) for s in (safe, zip_safe(safe))),
    ):
        product = l1c.from_item(source)
        assert product.aux_camsfo is not None and product.aux_camsfo.endswith("AUX_CAMSFO")
        fields, notes = meteorology.resolve(product, _grid(), SETTINGS)
        assert notes == [] and fields is not None and fields.aod550 is None
        assert fields.ozone_atm_cm is not None and "CAMS" not in fields.describe()


def test_a_corrupt_aux_camsfo_is_a_note_and_ecmwf_stays(tmp_path: Path) -> None:
    """A truncated AUX_CAMSFO, or a GRIB of something else under its name: a note, the ECMWF
    fields kept; with AUX_ECMWFT unreadable too, two notes and no meteorology."""
    product = l1c.from_item(make_l1c_product(tmp_path, size_10m=96, cams=True))
    assert product.aux_camsfo is not None and product.aux_ecmwf is not None
    Path(product.aux_camsfo).write_bytes(b"GRIB but truncated")
    fields, notes = meteorology.resolve(product, _grid(), SETTINGS)
    assert fields is not None and fields.aod550 is None and fields.ozone_atm_cm is not None
    assert len(notes) == 1 and notes[0].startswith("AUX_CAMSFO unreadable (")
    assert notes[0].endswith("no aerosol prior")
    write_ecmwf_grib(Path(product.aux_camsfo), CENTRE)
    fields, notes = meteorology.resolve(product, _grid(), SETTINGS)
    assert fields is not None and fields.aod550 is None and "no CAMS AOD550" in notes[0]
    Path(product.aux_ecmwf).write_bytes(b"")
    fields, notes = meteorology.resolve(product, _grid(), SETTINGS)
    assert fields is None and [n.split(" ")[0] for n in notes] == ["AUX_ECMWFT", "AUX_CAMSFO"]


def test_the_eopf_cams_group_is_read(tmp_path: Path) -> None:
    """``conditions/meteorology/cams`` (aod550 ... z on latitude/longitude, cfgrib's scalar
    coordinates beside them) gives the AUX_CAMSFO's AOD550 on the grid; a product without
    the group reads its ECMWF fields alone, with no note; one whose group lacks aod550 says
    so and keeps them."""
    import json

    import zarr

    from component.io import zarr_product
    from support.eopf import write_eopf_zarr

    item = make_l1c_product(tmp_path / "safe", size_10m=96, cams=True)
    item_path = tmp_path / "item.json"
    item_path.write_text(json.dumps(item))
    safe = l1c.from_item(item)
    assert safe.aux_ecmwf is not None and safe.aux_camsfo is not None
    grib = {"ecmwf_grib": Path(safe.aux_ecmwf)}
    with_cams = write_eopf_zarr(item_path, tmp_path / "a", cams_grib=Path(safe.aux_camsfo), **grib)
    group = zarr.open_group(str(with_cams), mode="r")["conditions/meteorology/cams"]
    assert group["aod550"].shape == (9, 9) and group["aod550"].attrs["units"] == "~"
    assert {"duaod550", "aod1240", "z", "latitude", "longitude", "step"} <= set(group.keys())

    def resolved(store: Path) -> tuple[meteorology.Meteorology | None, list[str]]:
        product = l1c.from_item(zarr_product.item_from_zarr(str(store), SETTINGS))
        assert product.eopf_conditions == str(store) and product.aux_camsfo is None
        return meteorology.resolve(product, _grid(), SETTINGS)

    fields, notes = resolved(with_cams)
    from_safe, _ = meteorology.resolve(safe, _grid(), SETTINGS)
    assert notes == [] and fields is not None and from_safe is not None
    assert fields.aod550 is not None and from_safe.aod550 is not None
    np.testing.assert_allclose(fields.aod550, from_safe.aod550, atol=1e-4)
    assert "conditions/meteorology/cams" in fields.source and fields.ozone_atm_cm is not None
    fields, notes = resolved(write_eopf_zarr(item_path, tmp_path / "b", **grib))
    assert notes == [] and fields is not None and fields.aod550 is None
    assert fields.water_cm is not None
    broken = zarr.open_group(str(with_cams), mode="a")
    del broken["conditions/meteorology/cams/aod550"]
    zarr.consolidate_metadata(str(with_cams))
    fields, notes = resolved(with_cams)
    assert fields is not None and fields.aod550 is None and fields.water_cm is not None
    assert len(notes) == 1 and "conditions/meteorology/cams holds no aod550" in notes[0]
