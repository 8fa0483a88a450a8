"""Terrain elevation on the atmosphere's grid: the air above the target the physics follows.

Rayleigh scattering and the mixed gases scale with the air above the target: at 1.9 km there is
about 80 % of sea level's, and a sea-level table over-corrects the blue most. So each coarse
cell gets an elevation (the 6S table's altitude axis does the rest), from, in turn:

1. ``--dem PATH_OR_URL``: any raster GDAL reads (a GeoTIFF, a VRT mosaic, a COG over https or
   ``s3://``), in any CRS, resampled onto the coarse grid (averaged where it is finer, bilinear
   where it is coarser). A DEM the user named that cannot be read stops the item with exit 5.
2. The Copernicus DEM of CDSE's STAC (``Settings.dem_collection``, by default the 90 m DGED
   COGs, asset ``data``, ``s3://`` hrefs read with the bands' keys): the tiles that intersect
   the grid, mosaicked onto it. Only with S3 keys; a search or read that fails falls back.
3. The component's offline map (:data:`OFFLINE_MAP`): pvlib's global 5 arc-minute altitude grid
   (about 9 km cells, errors of 100 m and more in steep terrain), 1 MB inside the package, so
   that a run without network still corrects mountains for most of their air.
4. Sea level, when none can be read (said in the notes and the lineage).

That order is ``--elevation auto``. ``--elevation`` can name one source instead:
``copernicus-90`` or ``copernicus-30`` (the CDSE collection of that resolution; a search or
read that fails stops the item with exit 5, as a named ``--dem`` does), ``offline`` (the map of
3., no network) or ``sea-level`` (no elevation: the table's sea level, for comparisons).

Cells without elevation data (the sea, in the offline map) are at sea level.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from component.core.grid import Grid
from component.core.settings import DEM_COLLECTIONS, Settings
from component.errors import AssetReadError
from component.io.load import gdal, masked_onto

log = logging.getLogger(__name__)

OFFLINE_SOURCE = "the offline 5 arc-minute elevation map (pvlib, ~9 km cells)"


def offline_map() -> Path:
    """The shipped coarse global elevation (see ``scripts/make_offline_elevation.py``)."""
    return Path(str(resources.files("component") / "data" / "elevation_5arcmin.tif"))


@dataclass(frozen=True)
class Elevation:
    """Metres above sea level on the coarse grid, and where they come from."""

    metres: np.ndarray | float
    source: str

    def describe(self) -> str:
        """The lineage's words: the source and the range."""
        values = np.asarray(self.metres, np.float64)
        if values.size == 0 or not np.any(values):
            return f"{self.source}: sea level"
        return (
            f"{self.source}: mean {float(values.mean()):.0f} m, "
            f"{float(values.min()):.0f} to {float(values.max()):.0f} m"
        )


SEA_LEVEL = Elevation(0.0, "none available: sea level")


def _cell_m(dataset: rasterio.io.DatasetReader) -> float:
    """A dataset's pixel size in metres (degrees taken at 111 km)."""
    size = abs(float(dataset.res[0]))
    return size * 111_320.0 if dataset.crs is not None and dataset.crs.is_geographic else size


def on_grid(href: str, grid: Grid, settings: Settings) -> np.ndarray:
    """The raster at *href* (band 1, its scale and offset applied) on *grid*, metres; its
    no-data cells (and cells outside it) are 0: sea level."""
    return _masked_on_grid(href, grid, settings)[0]


DEM_ASSET = "data"
DEM_SEARCH_RETRIES = 1
DEM_SEARCH_TIMEOUT_S = 15.0
"""The DEM's search is a convenience: a slow or absent API costs seconds, not the run."""


def copernicus_dem(grid: Grid, settings: Settings) -> tuple[Elevation, np.ndarray]:
    """The Copernicus DEM tiles of ``settings.dem_stac_url`` that intersect *grid*, mosaicked
    onto it, and the cells they cover (the DEM has no tile over the open sea); raises
    ``LookupError`` when the API holds none, and the search's or the reader's own errors when
    they fail."""
    from rasterio.warp import transform_bounds

    from component.io.search import open_client

    brief = replace(settings, stac_retries=DEM_SEARCH_RETRIES, stac_timeout_s=DEM_SEARCH_TIMEOUT_S)
    client = open_client(settings.dem_stac_url, brief)
    bbox = transform_bounds(f"EPSG:{grid.epsg}", "EPSG:4326", *grid.bounds, densify_pts=21)
    found = client.search(collections=[settings.dem_collection], bbox=bbox, max_items=64)
    hrefs = [
        str(item.assets[DEM_ASSET].href)
        for item in found.items()
        if DEM_ASSET in item.assets and item.assets[DEM_ASSET].href
    ]
    if not hrefs:
        raise LookupError(f"no {settings.dem_collection} tile covers the product")
    metres = np.zeros((grid.height, grid.width), np.float32)
    covered = np.zeros((grid.height, grid.width), bool)
    for href in hrefs:
        tile, where = _masked_on_grid(href, grid, settings)
        metres[where] = tile[where]
        covered |= where
    source = f"Copernicus DEM ({settings.dem_collection}, {len(hrefs)} tiles)"
    return Elevation(metres, source), covered


def _masked_on_grid(href: str, grid: Grid, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Metres on *grid* from one raster and where it has data."""
    with gdal(settings), rasterio.open(href) as dataset:
        finer = _cell_m(dataset) < grid.resolution
        resampling = Resampling.average if finer else Resampling.bilinear
        values = masked_onto(dataset, grid, resampling)
        scale, offset = dataset.scales[0] or 1.0, dataset.offsets[0] or 0.0
    metres = values.astype(np.float32) * np.float32(scale) + np.float32(offset)
    return np.ma.filled(metres, np.float32(0.0)), ~np.ma.getmaskarray(values)


def _beyond_filled(
    found: Elevation, covered: np.ndarray, grid: Grid, settings: Settings
) -> tuple[Elevation, list[str]]:
    """*found* with the cells it does not cover taken from the offline map (sea level where
    that cannot be read), and the note that says how many."""
    if covered.all():
        return found, []
    share = f"{100 * float(covered.mean()):.0f} %"
    try:
        offline = on_grid(str(offline_map()), grid, settings)
    except (RasterioError, OSError):
        return found, [f"{found.source} covers {share} of the product: sea level beyond it"]
    metres = np.where(covered, found.metres, offline).astype(np.float32)
    note = f"{found.source} covers {share} of the product: {OFFLINE_SOURCE} beyond it"
    return Elevation(metres, found.source), [note]


def _reason(error: BaseException, limit: int = 200) -> str:
    return str(error).splitlines()[0][:limit] if str(error) else type(error).__name__


def resolve(
    dem: str | None, grid: Grid, settings: Settings, source: str = "auto"
) -> tuple[Elevation, list[str]]:
    """The elevation of every cell of *grid* and notes on any fallback taken: from the best
    source available (*source* ``auto``), or from the one *source* names (module docstring).
    A source the user named (a *dem*, or a *source* other than ``auto``) that cannot be read
    raises :class:`~component.errors.AssetReadError` (exit 5): they asked for it."""
    notes: list[str] = []
    if source == "sea-level":
        return Elevation(0.0, "--elevation sea-level"), ["elevation: sea level, as asked"]
    if dem:
        try:
            metres, covered = _masked_on_grid(dem, grid, settings)
        except RasterioError as error:
            raise AssetReadError(
                f"cannot read --dem {dem} ({_reason(error)}): give a raster GDAL reads (GeoTIFF, "
                "VRT, COG URL), or leave --dem out for the offline elevation"
            ) from None
        return _beyond_filled(Elevation(metres, f"--dem {dem}"), covered, grid, settings)
    auto = source == "auto"
    if source in DEM_COLLECTIONS or (
        auto and settings.dem_stac_url and settings.has_s3_keys and grid.epsg is not None
    ):
        if source in DEM_COLLECTIONS:
            settings = replace(settings, dem_collection=DEM_COLLECTIONS[source])
        try:
            if grid.epsg is None:
                raise LookupError("the product's grid has no EPSG code")
            return _beyond_filled(*copernicus_dem(grid, settings), grid, settings)
        except Exception as error:  # any search or read failure
            if not auto:  # the user asked for this source: say why, stop the item
                raise AssetReadError(
                    f"cannot read the Copernicus DEM {settings.dem_collection} of "
                    f"{settings.dem_stac_url} ({_reason(error, 160)}): check the S3 keys and "
                    "the network, or use --elevation auto"
                ) from None
            notes.append(f"Copernicus DEM not read ({_reason(error, 160)})")  # the map stands in
            log.warning("%s", notes[-1])
    try:
        metres = on_grid(str(offline_map()), grid, settings)
    except (RasterioError, OSError) as error:
        if not auto:
            raise AssetReadError(
                f"cannot read {OFFLINE_SOURCE} ({_reason(error)}): reinstall the component, "
                "or use --elevation auto"
            ) from None
        notes.append(f"no elevation ({type(error).__name__}): the table's sea level assumed")
        log.warning("%s", notes[-1])
        return SEA_LEVEL, notes
    if auto:
        notes.append(f"elevation from {OFFLINE_SOURCE}: give --dem for a finer one")
    return Elevation(metres, OFFLINE_SOURCE), notes
