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
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

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
        fields = _on_grid(dataset, names, grid)
    return Meteorology(
        fields.get("water_cm"),
        fields.get("msl_hpa"),
        fields.get("ozone_atm_cm"),
        "ECMWF forecast of the granule (AUX_ECMWFT)",
    )


def _on_grid(dataset: Any, names: dict[str, tuple[int, str]], grid: Grid) -> dict[str, np.ndarray]:
    """The bands *names* (field: (band index, unit)) of *dataset* interpolated onto *grid*
    (bilinear), in the physics' units; the tile's edge beyond the forecast's grid takes the
    field's mean."""
    fields: dict[str, np.ndarray] = {}
    with warped_onto(dataset, grid, Resampling.bilinear) as vrt:
        for field, (index, unit) in names.items():
            values = vrt.read(index, masked=True).astype(np.float64)
            if values.mask.all():
                raise ValueError("its grid does not cover the product")
            filled = np.ma.filled(values, float(values.mean()))
            fields[field] = _in_units(filled, field, unit).astype(np.float32)
    return fields


EOPF_ECMWF = {"water_cm": "tcwv", "msl_hpa": "msl", "ozone_atm_cm": "tco3"}
"""The arrays of an EOPF product's ``conditions/meteorology/ecmwf`` group, by field."""


def read_eopf_ecmwf(root: str, grid: Grid, settings: Settings) -> Meteorology:
    """The ECMWF fields of the EOPF Zarr product at *root* on *grid*.

    ``conditions/meteorology/ecmwf/{tcwv, msl, tco3}`` hold the AUX_ECMWFT grid as arrays
    (latitude, longitude; the GRIB's points), in the GRIB's units (kg/m², Pa, kg/m²): placed
    on that grid in EPSG:4326 and interpolated as the GRIB is. Raises ``ValueError`` when the
    group holds none of them or its coordinates are not a regular grid.
    """
    from zarr.errors import BaseZarrError

    from component.io.zarr_product import open_group

    try:
        group = open_group(root, settings)["conditions/meteorology/ecmwf"]
        latitude = np.asarray(group["latitude"][...], np.float64)
        longitude = np.asarray(group["longitude"][...], np.float64)
        arrays = {
            field: (np.asarray(group[name][...], np.float64), _unit(group[name].attrs))
            for field, name in EOPF_ECMWF.items()
            if name in group
        }
    except (KeyError, IndexError, BaseZarrError) as error:
        raise ValueError(f"no conditions/meteorology/ecmwf ({error})") from None
    if not arrays:
        raise ValueError("conditions/meteorology/ecmwf holds no tcwv, msl or tco3")
    if latitude.ndim == 2 and longitude.ndim == 2:  # 2-D coordinates of a regular grid
        latitude, longitude = latitude[:, 0], longitude[0, :]
    steps = np.diff(longitude), np.diff(latitude)
    if min(len(longitude), len(latitude)) < 2 or any(
        not np.allclose(step, step[0]) for step in steps
    ):
        raise ValueError("conditions/meteorology/ecmwf is not on a regular latitude/longitude grid")
    order = np.argsort(-latitude)  # north first
    dlon, dlat = float(steps[0][0]), abs(float(steps[1][0]))
    transform = from_origin(
        float(longitude[0]) - dlon / 2, float(latitude[order][0]) + dlat / 2, dlon, dlat
    )
    stack = np.stack([values[order] for values, _ in arrays.values()])
    profile = {
        "driver": "GTiff",
        "width": len(longitude),
        "height": len(latitude),
        "count": len(arrays),
        "dtype": "float64",
        "crs": "EPSG:4326",
        "transform": transform,
    }
    names = {field: (i + 1, unit) for i, (field, (_, unit)) in enumerate(arrays.items())}
    with MemoryFile() as memory, memory.open(**profile) as dataset:
        dataset.write(stack)
        fields = _on_grid(dataset, names, grid)
    return Meteorology(
        fields.get("water_cm"),
        fields.get("msl_hpa"),
        fields.get("ozone_atm_cm"),
        "ECMWF forecast of the product (conditions/meteorology/ecmwf)",
    )


def _unit(attributes: Any) -> str:
    return str(attributes.get("units") or attributes.get("GRIB_units") or "")


def resolve(
    product: L1CProduct, grid: Grid, settings: Settings
) -> tuple[Meteorology | None, list[str]]:
    """The product's own meteorology on *grid*, if it has any, and notes on what was not
    used. An unreadable or foreign file never fails the item: the climatology stands in."""
    if product.aux_ecmwf is None and product.eopf_conditions is None:
        return None, [
            "no ECMWF meteorology in the input: climatological ozone (0.33 atm-cm) and "
            "standard sea-level pressure"
        ]
    try:
        if product.aux_ecmwf is not None:
            return read_ecmwf(product.aux_ecmwf, grid, settings), []
        return read_eopf_ecmwf(str(product.eopf_conditions), grid, settings), []
    except (RasterioError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        what = "AUX_ECMWFT" if product.aux_ecmwf is not None else "the product's meteorology"
        note = f"{what} unreadable ({reason}): climatological ozone, standard pressure"
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
