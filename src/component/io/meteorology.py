"""The meteorology every L1C carries: ECMWF forecasts of ozone, pressure and water vapour.

A SAFE granule holds ``AUX_DATA/AUX_ECMWFT``, a GRIB of ECMWF forecasts for the tile (9 x 9
points at 0.125 deg): total column water vapour (kg/m², i.e. mm), mean sea-level pressure
(Pa) and total column ozone (kg/m²; 1 Dobson unit = 2.1415e-5 kg/m²). GDAL's GRIB driver
(inside rasterio's wheel) reads it; the fields are interpolated (bilinear) onto the coarse
grid. Element names differ between GRIB editions (ECMWF's GRIB1 ``TCWV``/``PWC``, ``MSL``,
``TCO3``; GRIB2 ``PWAT``, ``PRMSL``, ``TOZNE`` in Dobson units): each is recognised with its
unit.

What the physics takes from them: the ozone column (the table's ozone term) and the sea-level
pressure (which moves the Rayleigh scattering as an altitude would: see
:func:`effective_elevation`). The water vapour is reported beside the estimate's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from component.core.grid import Grid
from component.core.settings import Settings
from component.io.l1c import L1CProduct
from component.io.load import gdal, warped_onto

log = logging.getLogger(__name__)

SEA_LEVEL_HPA = 1013.25
SCALE_HEIGHT_M = 8434.0
"""Scale height of the pressure in a standard atmosphere: p = p0 exp(-z / H)."""
DOBSON_KG_M2 = 2.1415e-5
ELEMENTS = {
    "water_cm": ("TCWV", "PWC", "PWAT"),
    "msl_hpa": ("MSL", "PRMSL"),
    "ozone_atm_cm": ("TCO3", "TOZNE", "TO3"),
}


@dataclass(frozen=True)
class Meteorology:
    """ECMWF fields on the coarse grid (None where the file lacks one) and their source."""

    water_cm: np.ndarray | None
    msl_hpa: np.ndarray | None
    ozone_atm_cm: np.ndarray | None
    source: str

    def describe(self) -> str:
        """The lineage's words: which fields, their scene means."""
        parts = []
        for name, value, unit in (
            ("ozone", self.ozone_atm_cm, "atm-cm"),
            ("sea-level pressure", self.msl_hpa, "hPa"),
            ("water vapour", self.water_cm, "cm"),
        ):
            if value is not None:
                parts.append(f"{name} {float(np.nanmean(value)):.3g} {unit}")
        return f"{self.source}: " + ", ".join(parts) + " (scene means)"


def _in_units(values: np.ndarray, field: str, unit: str) -> np.ndarray:
    """A GRIB field in the unit the physics takes (cm of water, hPa, atm-cm of ozone)."""
    unit = unit.lower()
    if field == "water_cm":  # kg/m² = mm
        return values / 10.0
    if field == "msl_hpa":  # Pa
        return values / 100.0
    if "dobson" in unit:
        return values / 1000.0
    return values / DOBSON_KG_M2 / 1000.0  # kg/m²


def read_ecmwf(href: str, grid: Grid, settings: Settings) -> Meteorology:
    """The ECMWF fields of the GRIB at *href* on *grid*; raises ``ValueError`` when it holds
    none of them (a GRIB of something else) and RasterioError when it cannot be read."""
    fields: dict[str, np.ndarray] = {}
    with gdal(settings), rasterio.open(href) as dataset:
        names = {}
        for index in range(1, dataset.count + 1):
            tags = dataset.tags(index)
            element = str(tags.get("GRIB_ELEMENT", "")).upper()
            for field, accepted in ELEMENTS.items():
                if element in accepted and field not in names:
                    names[field] = (index, str(tags.get("GRIB_UNIT", "")))
        if not names:
            raise ValueError("no ECMWF water vapour, pressure or ozone field in it")
        with warped_onto(dataset, grid, Resampling.bilinear) as vrt:
            for field, (index, unit) in names.items():
                values = vrt.read(index, masked=True).astype(np.float64)
                if values.mask.all():
                    raise ValueError("its grid does not cover the product")
                filled = np.ma.filled(values, float(values.mean()))  # the tile's edge
                fields[field] = _in_units(filled, field, unit).astype(np.float32)
    return Meteorology(
        fields.get("water_cm"),
        fields.get("msl_hpa"),
        fields.get("ozone_atm_cm"),
        "ECMWF forecast of the granule (AUX_ECMWFT)",
    )


def resolve(
    product: L1CProduct, grid: Grid, settings: Settings
) -> tuple[Meteorology | None, list[str]]:
    """The product's own meteorology on *grid*, if it has any, and notes on what was not
    used. An unreadable or foreign file never fails the item: the climatology stands in."""
    if product.aux_ecmwf is None:
        return None, [
            "no ECMWF meteorology in the input: climatological ozone (0.33 atm-cm) and "
            "standard sea-level pressure"
        ]
    try:
        return read_ecmwf(product.aux_ecmwf, grid, settings), []
    except (RasterioError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        note = f"AUX_ECMWFT unreadable ({reason}): climatological ozone, standard pressure"
        log.warning("%s: %s", product.id, note)
        return None, [note]


def effective_elevation(
    elevation_m: np.ndarray | float, msl_hpa: np.ndarray | None
) -> np.ndarray | float:
    """The altitude whose standard-atmosphere air column equals the one above a target at
    *elevation_m* under a sea-level pressure *msl_hpa*: Rayleigh scattering and the mixed
    gases scale with the surface pressure ``msl exp(-z / H)``, so a low pressure acts as a
    higher target (10 hPa ~ 84 m)."""
    if msl_hpa is None:
        return elevation_m
    shift = SCALE_HEIGHT_M * np.log(SEA_LEVEL_HPA / np.asarray(msl_hpa, np.float64))
    return (np.asarray(elevation_m, np.float64) + shift).astype(np.float32)
