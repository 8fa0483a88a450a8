"""The meteorology every L1C carries: ECMWF forecasts of ozone, pressure and water vapour.

A SAFE granule holds ``AUX_DATA/AUX_ECMWFT``, a GRIB of ECMWF forecasts for the tile (9 x 9
points at 0.125 deg): total column water vapour (kg/m², i.e. mm), mean sea-level pressure
(Pa) and total column ozone (kg/m²; 1 Dobson unit = 2.1415e-5 kg/m²). GDAL's GRIB driver
(inside rasterio's wheel) reads it; the fields are interpolated (bilinear) onto the coarse
grid. Element names differ between GRIB editions (ECMWF's GRIB1 ``TCWV``/``PWC``, ``MSL``,
``TCO3``; GRIB2 ``PWAT``, ``PRMSL``, ``TOZNE`` in Dobson units): each is recognised with its
unit.

Products of baseline 04.00 on also hold ``AUX_DATA/AUX_CAMSFO``, CAMS forecasts on the same
kind of grid: the aerosol optical depth at 550 nm (unitless) and at 469, 670, 865 and 1240 nm,
its components and the surface geopotential. ECMWF writes ``aod550`` in GRIB1 as parameter
207 of its local table 210, which GDAL 3.10 has no name for: it reports ``var207 of table 210
of center ECMWF`` (unit ``[-]``). In GRIB2 it is ``AOTK`` (product template 4.48, total
aerosol, 550 nm), or ECMWF's local discipline 192 (category 210, number 207). Only AOD550 is
read: the estimate's aerosol prior. An EOPF product holds both as arrays,
``conditions/meteorology/ecmwf`` and ``conditions/meteorology/cams``, read through one path.

What the physics takes from them: the ozone column (the table's ozone term) and the sea-level
pressure (which moves the Rayleigh scattering as an altitude would: see
:func:`effective_elevation`) and the water-vapour column, which sets the level of the scene's
estimate (:func:`component.model.correction.anchored_water`); the AOD550 is the estimator's
prior and bounds its guard.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from component.core.grid import Grid
from component.core.settings import Settings
from component.io import vsi
from component.io.l1c import L1CProduct
from component.io.load import gdal, masked_onto

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


class _LocalTableNotice(logging.Filter):
    """GDAL's GRIB1 reader (degrib) warns twice, in four lines, for every band of a parameter
    table it lacks, ECMWF's local table 210 of every AUX_CAMSFO among them, and rasterio logs
    those warnings: expected here, not news. These two, and nothing else, are dropped."""

    NOTICES = ("GRIB: Don't understand the parameter table", "falls in the local use section")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in self.NOTICES)


for _logger in ("rasterio._err", "rasterio._env"):  # GDAL's errors, outside and inside an Env
    logging.getLogger(_logger).addFilter(_LocalTableNotice())

CAMS_SOURCE = "CAMS forecast of the granule (AUX_CAMSFO)"
EOPF_CAMS_SOURCE = "CAMS forecast of the product (conditions/meteorology/cams)"
_AOD550_GRIB1 = re.compile(r"var207 of table 210\b", re.IGNORECASE)
TOTAL_AEROSOL = 62000
"""GRIB2 code table 4.233: the aerosol type of the total (not of one component)."""


@dataclass(frozen=True)
class Meteorology:
    """ECMWF fields and the CAMS AOD550 on the coarse grid (None where the input lacks one)
    and their source(s)."""

    water_cm: np.ndarray | None
    msl_hpa: np.ndarray | None
    ozone_atm_cm: np.ndarray | None
    source: str
    aod550: np.ndarray | None = None
    """CAMS's aerosol optical depth at 550 nm (unitless), the estimate's aerosol prior."""

    def describe(self) -> str:
        """The lineage's words: which fields, their scene means."""
        parts = []
        for name, value, unit in (
            ("ozone", self.ozone_atm_cm, " atm-cm"),
            ("sea-level pressure", self.msl_hpa, " hPa"),
            ("water vapour", self.water_cm, " cm"),
            ("CAMS AOD550", self.aod550, ""),
        ):
            if value is not None:
                parts.append(f"{name} {float(np.nanmean(value)):.3g}{unit}")
        return f"{self.source}: " + ", ".join(parts) + " (scene means)"


def _in_units(values: np.ndarray, field: str, unit: str) -> np.ndarray:
    """A GRIB field in the unit the physics takes (cm of water, hPa, atm-cm of ozone)."""
    unit = unit.lower()
    if field == "aod550":  # unitless
        return values
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
    fields = _read_grib(href, grid, settings, _ecmwf_field, "ECMWF water vapour, pressure or ozone")
    return _ecmwf(fields, "ECMWF forecast of the granule (AUX_ECMWFT)")


def _ecmwf(fields: dict[str, np.ndarray], source: str) -> Meteorology:
    """The ECMWF *fields* (by :data:`ELEMENTS`' names; absent ones None) from *source*."""
    return Meteorology(
        fields.get("water_cm"), fields.get("msl_hpa"), fields.get("ozone_atm_cm"), source
    )


def read_cams(href: str, grid: Grid, settings: Settings) -> np.ndarray:
    """The CAMS AOD550 of the GRIB at *href* (a granule's AUX_CAMSFO) on *grid*, unitless.

    Raises ``FileNotFoundError`` when there is no file at *href* (products before baseline
    04.00 have none), ``ValueError`` when the GRIB holds no AOD550 and RasterioError when it
    cannot be read."""
    try:
        return _read_grib(href, grid, settings, _cams_field, "CAMS AOD550")["aod550"]
    except RasterioIOError:
        if _absent(href, settings):
            raise FileNotFoundError(f"no {href}") from None
        raise


def _read_grib(
    href: str, grid: Grid, settings: Settings, field_of: Any, what: str
) -> dict[str, np.ndarray]:
    """The bands of the GRIB at *href* that ``field_of(tags)`` names a field (the first band
    of each), on *grid* in the physics' units; ``ValueError`` naming *what* when none is."""
    with gdal(settings), rasterio.open(href) as dataset:
        names: dict[str, tuple[int, str]] = {}
        for index in range(1, dataset.count + 1):
            tags = dataset.tags(index)
            field = field_of(tags)
            if field is not None and field not in names:
                names[field] = (index, str(tags.get("GRIB_UNIT", "")))
        if not names:
            raise ValueError(f"no {what} in it")
        return _on_grid(dataset, names, grid)


def _ecmwf_field(tags: dict[str, str]) -> str | None:
    """The ECMWF field a GRIB band is, by its element (:data:`ELEMENTS`), or None."""
    element = str(tags.get("GRIB_ELEMENT", "")).upper()
    return next((field for field, names in ELEMENTS.items() if element in names), None)


def _cams_field(tags: dict[str, str]) -> str | None:
    """``"aod550"`` for a GRIB band of the total aerosol optical depth at 550 nm, as GDAL
    tags it in GRIB1 (ECMWF's table 210, parameter 207; a GDAL that knows that table would
    name it ``AOD550``) or GRIB2 (``AOTK`` of template 4.48 for the total aerosol at 550 nm,
    or ECMWF's local discipline 192, category 210, number 207)."""
    element = str(tags.get("GRIB_ELEMENT", "")).strip()
    if element.upper() == "AOD550" or _AOD550_GRIB1.match(element):
        return "aod550"
    values = str(tags.get("GRIB_PDS_TEMPLATE_ASSEMBLED_VALUES", "")).split()
    discipline = str(tags.get("GRIB_DISCIPLINE", "")).split("(")[0].strip()
    if discipline == "192" and values[:2] == ["210", "207"]:
        return "aod550"
    if element.upper() == "AOTK" and str(tags.get("GRIB_PDS_PDTN")) == "48":
        return "aod550" if _total_at_550_nm(values) else None
    return None


def _total_at_550_nm(values: list[str]) -> bool:
    """Whether product template 4.48's values (category, number, aerosol type, size
    interval, wavelength interval...) are the total aerosol's at 550 nm."""
    try:
        aerosol, interval = int(values[2]), int(values[8])
        first = int(values[10]) * 10.0 ** -int(values[9]) * 1e9  # nm
        second = int(values[12]) * 10.0 ** -int(values[11]) * 1e9
    except (IndexError, ValueError):
        return False
    if aerosol != TOTAL_AEROSOL:
        return False
    if interval == 11:  # code table 4.91: equal to the first limit
        return abs(first - 550.0) < 1.0
    return interval in (2, 7, 10) and first <= 550.0 <= second  # between the limits


def _absent(href: str, settings: Settings) -> bool:
    """Whether no file lies at *href*, rather than one GDAL cannot read: a local path is
    looked at, any other asked for through GDAL's virtual file systems (``/vsizip/``,
    ``/vsis3/``, ``/vsicurl/``), in the configuration of *settings*."""
    if href.startswith("file://"):
        href = urlparse(href).path
    if "://" not in href and not href.startswith("/vsi"):
        return not Path(href).exists()
    try:
        vsi.open_and(vsi.name(href), settings, lambda handle: b"")
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _on_grid(dataset: Any, names: dict[str, tuple[int, str]], grid: Grid) -> dict[str, np.ndarray]:
    """The bands *names* (field: (band index, unit)) of *dataset* interpolated onto *grid*
    (bilinear), in the physics' units; the tile's edge beyond the forecast's grid takes the
    field's mean."""
    fields: dict[str, np.ndarray] = {}
    indexes = [index for index, _ in names.values()]
    stack = masked_onto(dataset, grid, Resampling.bilinear, indexes).astype(np.float64)
    for (field, (_, unit)), values in zip(names.items(), stack, strict=True):
        if np.ma.getmaskarray(values).all():
            raise ValueError("its grid does not cover the product")
        filled = np.ma.filled(values, float(values.mean()))
        fields[field] = _in_units(filled, field, unit).astype(np.float32)
    return fields


EOPF_ECMWF = {"water_cm": "tcwv", "msl_hpa": "msl", "ozone_atm_cm": "tco3"}
"""The arrays of an EOPF product's ``conditions/meteorology/ecmwf`` group, by field."""
EOPF_CAMS = {"aod550": "aod550"}
"""The arrays of its ``conditions/meteorology/cams`` group that are read, by field."""


def read_eopf_ecmwf(root: str, grid: Grid, settings: Settings) -> Meteorology:
    """The ECMWF fields of the EOPF Zarr product at *root* on *grid*.

    ``conditions/meteorology/ecmwf/{tcwv, msl, tco3}`` hold the AUX_ECMWFT grid as arrays
    (latitude, longitude; the GRIB's points), in the GRIB's units (kg/m², Pa, kg/m²), read
    by :func:`_eopf_fields`. Raises ``ValueError`` when the group holds none of them or its
    coordinates are not a regular grid, ``FileNotFoundError`` when there is no such group.
    """
    fields = _eopf_fields(root, "conditions/meteorology/ecmwf", EOPF_ECMWF, grid, settings)
    return _ecmwf(fields, "ECMWF forecast of the product (conditions/meteorology/ecmwf)")


def read_eopf_cams(root: str, grid: Grid, settings: Settings) -> np.ndarray:
    """The CAMS AOD550 of the EOPF Zarr product at *root* on *grid*:
    ``conditions/meteorology/cams/aod550`` (unitless, on the AUX_CAMSFO's latitude/longitude
    points), read as the ECMWF group is (:func:`_eopf_fields`). Raises ``FileNotFoundError``
    when the product has no such group, ``ValueError`` when it holds no ``aod550``."""
    fields = _eopf_fields(root, "conditions/meteorology/cams", EOPF_CAMS, grid, settings)
    return fields["aod550"]


def _eopf_fields(
    root: str, path: str, arrays: dict[str, str], grid: Grid, settings: Settings
) -> dict[str, np.ndarray]:
    """The *arrays* (field: array name) of the group at *path* in the EOPF Zarr product at
    *root*, interpolated onto *grid* as a GRIB is (:func:`_on_grid`): the arrays lie on the
    group's 1-D (or regular 2-D) ``latitude``/``longitude`` points, placed in EPSG:4326.

    Raises ``FileNotFoundError`` when the product has no group at *path*, ``ValueError`` when
    the group holds none of *arrays* or its coordinates are not a regular grid."""
    from zarr.errors import BaseZarrError

    from component.io.zarr_product import open_group

    try:
        product = open_group(root, settings)
        try:
            group = product[path]
        except KeyError:
            raise FileNotFoundError(f"no {path}") from None
        latitude = np.asarray(group["latitude"][...], np.float64)
        longitude = np.asarray(group["longitude"][...], np.float64)
        found = {
            field: (np.asarray(group[name][...], np.float64), _unit(group[name].attrs))
            for field, name in arrays.items()
            if name in group
        }
    except (KeyError, IndexError, BaseZarrError) as error:
        raise ValueError(f"{path} unreadable ({error})") from None
    if not found:
        raise ValueError(f"{path} holds no {', '.join(arrays.values())}")
    if latitude.ndim == 2 and longitude.ndim == 2:  # 2-D coordinates of a regular grid
        latitude, longitude = latitude[:, 0], longitude[0, :]
    steps = np.diff(longitude), np.diff(latitude)
    if min(len(longitude), len(latitude)) < 2 or any(
        not np.allclose(step, step[0]) for step in steps
    ):
        raise ValueError(f"{path} is not on a regular latitude/longitude grid")
    order = np.argsort(-latitude)  # north first
    dlon, dlat = float(steps[0][0]), abs(float(steps[1][0]))
    transform = from_origin(
        float(longitude[0]) - dlon / 2, float(latitude[order][0]) + dlat / 2, dlon, dlat
    )
    stack = np.stack([values[order] for values, _ in found.values()])
    profile = {
        "driver": "GTiff",
        "width": len(longitude),
        "height": len(latitude),
        "count": len(found),
        "dtype": "float64",
        "crs": "EPSG:4326",
        "transform": transform,
    }
    bands = {field: (i + 1, unit) for i, (field, (_, unit)) in enumerate(found.items())}
    with MemoryFile() as memory:
        with memory.open(**profile) as target:
            target.write(stack)
        with memory.open() as dataset:  # warped read-only, as a GRIB is
            return _on_grid(dataset, bands, grid)


def _unit(attributes: Any) -> str:
    return str(attributes.get("units") or attributes.get("GRIB_units") or "")


def resolve(
    product: L1CProduct, grid: Grid, settings: Settings
) -> tuple[Meteorology | None, list[str]]:
    """The product's own meteorology on *grid*, if it has any, and notes on what was not
    used: the ECMWF fields (AUX_ECMWFT, or an EOPF product's ``conditions/meteorology/ecmwf``)
    and the CAMS AOD550 where the product has it (AUX_CAMSFO from baseline 04.00, or
    ``conditions/meteorology/cams``; none is no note). An unreadable or foreign file never
    fails the item: the climatology stands in for ECMWF's fields, the estimate goes without
    an aerosol prior, and each keeps the other."""
    forecast: Meteorology | None = None
    notes: list[str] = []
    if product.aux_ecmwf is None and product.eopf_conditions is None:
        notes.append(
            "no ECMWF meteorology in the input: climatological ozone (0.33 atm-cm) and "
            "standard sea-level pressure"
        )
    else:
        try:
            if product.aux_ecmwf is not None:
                forecast = read_ecmwf(product.aux_ecmwf, grid, settings)
            else:
                forecast = read_eopf_ecmwf(str(product.eopf_conditions), grid, settings)
        except (RasterioError, ValueError, OSError) as error:
            what = "AUX_ECMWFT" if product.aux_ecmwf is not None else "the product's meteorology"
            notes.append(
                _unreadable(product, what, error, "climatological ozone, standard pressure")
            )
    aerosol, source, note = _cams(product, grid, settings)
    notes += [note] if note else []
    if aerosol is not None:
        if forecast is None:
            forecast = Meteorology(None, None, None, source, aod550=aerosol)
        else:
            forecast = replace(forecast, source=f"{forecast.source} and {source}", aod550=aerosol)
    return forecast, notes


def _cams(
    product: L1CProduct, grid: Grid, settings: Settings
) -> tuple[np.ndarray | None, str, str | None]:
    """The product's CAMS AOD550 on *grid* (None where it has none or it is unreadable), its
    source, and a note when a CAMS forecast is there but unreadable."""
    if product.aux_camsfo is not None:
        source, what = CAMS_SOURCE, "AUX_CAMSFO"
    elif product.eopf_conditions is not None:
        source, what = EOPF_CAMS_SOURCE, "the product's CAMS forecast"
    else:
        return None, "", None
    try:
        if product.aux_camsfo is not None:
            return read_cams(product.aux_camsfo, grid, settings), source, None
        return read_eopf_cams(str(product.eopf_conditions), grid, settings), source, None
    except FileNotFoundError:  # older baselines carry no CAMS forecast
        return None, source, None
    except (RasterioError, ValueError, OSError) as error:
        return None, source, _unreadable(product, what, error, "no aerosol prior")


def _unreadable(product: L1CProduct, what: str, error: Exception, instead: str) -> str:
    """The note (also logged) that *what* of *product* could not be read, and what stands in."""
    reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    note = f"{what} unreadable ({reason}): {instead}"
    log.warning("%s: %s", product.id, note)
    return note


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
