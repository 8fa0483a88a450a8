"""The granule's ECMWF meteorology: read from GRIB, local or on S3; units; fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from component.core.grid import Grid
from component.core.settings import Settings
from component.io import l1c, meteorology
from support.synthetic import ECMWF, make_l1c_product, write_ecmwf_grib

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
