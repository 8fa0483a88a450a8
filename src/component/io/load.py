"""L1C band files -> DN and TOA reflectance on the product's grids, read with GDAL (rasterio).

A Sentinel-2 L2A product holds every band at its own resolution: at ``--resolution R`` a band
is written at ``max(R, its native resolution)``. So each band is read on its own grid, and the
reading is shaped by three choices:

* Every grid is the item's own UTM grid at that resolution, anchored at the tile's origin, so
  a 60 m product lines up pixel for pixel with CDSE's 60 m L2A bands (Sentinel-2 tile origins
  are not multiples of 60 m: snapping to multiples of the resolution would shift it). With a
  bbox only the window that covers it is read, snapped outward onto that grid.
* A band read coarser than its native resolution is decoded from the JPEG 2000
  reduced-resolution level closest to the target (GDAL's warper does not pick one by itself):
  at 60 m the 10 m bands decode at 40 m, not at 10 m. An exact level (a 10 m band at 20 m) is
  read as it is; otherwise the level is averaged onto the grid with DN 0 declared nodata, so
  swath-edge fill never mixes into valid pixels.
* A band at its native resolution is read window by window straight from the file: strips of
  :data:`STRIP_ROWS` rows, aligned with the 1024 px JPEG 2000 tiles, so a full 10 m band is
  never in memory at once and each codestream tile is decoded once.

A :class:`BandReader` holds one open dataset and is used from one thread at a time; the
pipeline reads several bands in parallel threads (GDAL releases the GIL while decoding), at
most :attr:`~component.core.settings.Settings.max_connections` at once, which is also the S3
connection budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.session import Session
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from component.core.bands import L2A_BANDS, product_resolution
from component.core.grid import Grid, snapped
from component.core.settings import Settings
from component.errors import AssetReadError, CredentialsError, InvalidItemError
from component.io.l1c import NODATA_DN, SATURATED_DN, BandRadiometry, L1CProduct

STRIP_ROWS = 1024
"""Rows per read of a native-resolution band: one row of 1024 px JPEG 2000 tiles."""


class S3Keys(Session):
    """S3 keys as the GDAL options of one ``rasterio.Env`` (rasterio refuses them as plain
    options); none when either is empty (local files and unsigned reads need nothing)."""

    def __init__(self, access_key_id: str, secret_access_key: str) -> None:
        self._options: dict[str, str] = {}
        if access_key_id and secret_access_key:
            self._options = {
                "AWS_ACCESS_KEY_ID": access_key_id,
                "AWS_SECRET_ACCESS_KEY": secret_access_key,
            }

    @classmethod
    def hascreds(cls, config: dict[str, Any]) -> bool:
        return "AWS_ACCESS_KEY_ID" in config and "AWS_SECRET_ACCESS_KEY" in config

    @property
    def credentials(self) -> dict[str, str]:
        return dict(self._options)

    def get_credential_options(self) -> dict[str, str]:
        return dict(self._options)

    def __repr__(self) -> str:
        return f"S3Keys({'set' if self._options else 'none'})"


def gdal(settings: Settings) -> rasterio.Env:
    """The GDAL environment of *settings* (options and keys), to enter in each reading thread:
    rasterio's options are thread-local."""
    keys = S3Keys(settings.access_key_id, settings.secret_access_key)
    return rasterio.Env(session=keys, **settings.gdal_options())


OUTSIDE = -9.0e30
"""The value an auxiliary raster without a nodata value of its own (a GRIB, a DEM) is given
beyond its extent when warped onto a grid: no elevation or meteorological field takes it."""


def masked_onto(
    dataset: Any, grid: Grid, resampling: Resampling, indexes: int | list[int] = 1
) -> np.ma.MaskedArray:
    """Band(s) *indexes* of an auxiliary raster on *grid* (as ``read(indexes)`` shapes them),
    through one warp, masked where it has no data: its own nodata pixels and everything beyond
    its extent (a warp without a nodata value gives 0 there, unmasked: a 0 hPa pressure, a
    sea-level mountain)."""
    nodata = dataset.nodata if dataset.nodata is not None else OUTSIDE
    with warped_onto(dataset, grid, resampling, nodata=nodata) as vrt:
        values = vrt.read(indexes, masked=True)
    return np.ma.masked_where(~np.isfinite(values) | (values == nodata), values)


def warped_onto(
    dataset: Any,
    grid: Grid,
    resampling: Resampling,
    crs: Any = None,
    nodata: float | None = None,
) -> WarpedVRT:
    """*dataset* seen on *grid* (its CRS, transform and shape), resampled by *resampling*:
    auxiliary rasters (a DEM, a meteorological GRIB) in any CRS onto the atmosphere's grid, a
    band file onto its product grid.

    *crs* stands for the grid's CRS where the caller knows it is the file's own (a band on
    its tile's grid: no reprojection); *nodata* marks the pixels left out of the resampling
    and those the VRT gives where it has no data.
    """
    missing = {} if nodata is None else {"src_nodata": nodata, "nodata": nodata}
    return WarpedVRT(
        dataset,
        crs=f"EPSG:{grid.epsg}" if crs is None else crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=resampling,
        **missing,
    )


def output_grid(
    product: L1CProduct,
    band: str,
    resolution: float,
    bbox: tuple[float, float, float, float] | None = None,
) -> Grid:
    """*band*'s file grid at *resolution*, anchored on the tile's origin, clipped to *bbox*
    (WGS84, snapped outward onto that grid) if given."""
    native = product.bands[band].grid
    bounds = native.bounds
    if bbox is not None:
        left, bottom, right, top = bounds
        w, s, e, n = transform_bounds("EPSG:4326", f"EPSG:{native.epsg}", *bbox, densify_pts=21)
        w, s, e, n = max(w, left), max(s, bottom), min(e, right), min(n, top)
        if w >= e or s >= n:
            raise InvalidItemError(
                f"item {product.id!r} does not intersect the bbox {','.join(map(str, bbox))}: "
                "widen the bbox or drop --bbox"
            )
        bounds = (w, s, e, n)
    origin = (native.transform.c, native.transform.f)
    return snapped(bounds, resolution, origin, native.epsg)


@dataclass(frozen=True)
class ReadPlan:
    """What one item's product needs: each output band's grid and the atmosphere's grid."""

    grids: dict[str, Grid]
    """Product grid of each of :data:`~component.core.bands.L2A_BANDS`."""
    coarse: Grid
    """The grid the atmosphere is estimated on (the card's ``atmosphere.grid_m``)."""
    grid_r: Grid
    """The ``--resolution`` grid: TCI, AOT and WVP."""
    inputs: tuple[str, ...]
    """Input bands the item has (all 13, or 12 without B10)."""


def plan(
    product: L1CProduct,
    resolution: int,
    bbox: tuple[float, float, float, float] | None,
    coarse_m: int,
    settings: Settings,
) -> ReadPlan:
    """Check the product can be read and lay out every grid, before any read."""
    check_credentials(product, product.inputs, settings)
    grids = {b: output_grid(product, b, product_resolution(b, resolution), bbox) for b in L2A_BANDS}
    coarse = output_grid(product, "B02", coarse_m, bbox)
    grid_r = output_grid(product, "B02", resolution, bbox)
    return ReadPlan(grids=grids, coarse=coarse, grid_r=grid_r, inputs=product.inputs)


def overview_level(dataset: rasterio.io.DatasetReader, target_resolution: float) -> int | None:
    """Index of the coarsest overview still at least as fine as *target_resolution*, if any."""
    native = abs(dataset.res[0])
    best = None
    for index, factor in enumerate(dataset.overviews(1)):
        if native * factor <= target_resolution * (1 + 1e-6):
            best = index
    return best


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)


class BandReader:
    """Rows of one band's DN (uint16, 0 = nodata) on a target grid; one open dataset.

    Open it inside :func:`gdal` in the thread that reads; use it from that thread only (GDAL
    datasets are not thread-safe).
    """

    def __init__(self, product: L1CProduct, band: str, grid: Grid) -> None:
        self.item_id, self.band, self.grid = product.id, band, grid
        self.href = product.bands[band].href
        self._datasets: list[Any] = []
        self._source: Any = None
        self._offset = (0, 0)
        with self._errors("open"):
            dataset = self._open()
            native = abs(dataset.res[0])
            if not _same(native, grid.resolution):
                level = overview_level(dataset, grid.resolution)
                if level is not None:
                    # Only that reduced-resolution level of the codestream is decoded.
                    dataset = self._open(OVERVIEW_LEVEL=str(level))
            if _same(abs(dataset.res[0]), grid.resolution):
                self._source = dataset
                self._offset = (
                    round((grid.transform.c - dataset.transform.c) / grid.resolution),
                    round((dataset.transform.f - grid.transform.f) / grid.resolution),
                )
            else:
                self._source = warped_onto(
                    dataset, grid, Resampling.average, crs=dataset.crs, nodata=NODATA_DN
                )
                self._datasets.append(self._source)

    def _open(self, **options: str) -> Any:
        dataset = rasterio.open(self.href, **options)
        self._datasets.append(dataset)
        return dataset

    def _errors(self, what: str) -> _ReadErrors:
        return _ReadErrors(self.item_id, self.band, what)

    def read(self, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of the grid, (rows, width) uint16; 0 outside the file."""
        col, row = self._offset
        window = Window(col, row + y0, self.grid.width, y1 - y0)
        with self._errors("read"):
            if self._needs_boundless(window):
                return self._source.read(1, window=window, boundless=True, fill_value=0)
            return self._source.read(1, window=window)

    def _needs_boundless(self, window: Window) -> bool:
        return (
            window.col_off < 0
            or window.row_off < 0
            or window.col_off + window.width > self._source.width
            or window.row_off + window.height > self._source.height
        )

    def close(self) -> None:
        for dataset in reversed(self._datasets):
            if not dataset.closed:
                dataset.close()
        self._datasets.clear()

    def __enter__(self) -> BandReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ReadErrors:
    """GDAL errors of one band -> :class:`AssetReadError` naming the item and the band."""

    def __init__(self, item_id: Any, band: str, what: str) -> None:
        self.item_id, self.band, self.what = item_id, band, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _tb: object) -> bool:
        if error is None or not isinstance(error, RasterioError):
            return False
        raise AssetReadError(
            f"cannot {self.what} asset {self.band} of {self.item_id!r} ({_short(error)}): check "
            "that it exists and is a valid JPEG 2000/GeoTIFF; for s3:// also the keys and "
            "endpoint, or retry later if the server failed"
        ) from None


def to_toa(dn: np.ndarray, radiometry: BandRadiometry) -> np.ndarray:
    """DN -> TOA reflectance (float32), NaN where this band is nodata (0) or saturated."""
    toa = (dn.astype(np.float32) + np.float32(radiometry.add_offset)) / np.float32(
        radiometry.quantification
    )
    invalid = (dn == NODATA_DN) | (dn == SATURATED_DN)
    toa[invalid] = np.nan
    return toa


def read_band(product: L1CProduct, band: str, grid: Grid, settings: Settings) -> np.ndarray:
    """The whole of *band* on *grid* as DN (for grids small enough to hold: the coarse one)."""
    with gdal(settings), BandReader(product, band, grid) as reader:
        return reader.read(0, grid.height)


def check_credentials(product: L1CProduct, bands: tuple[str, ...], settings: Settings) -> None:
    """``s3://`` assets need keys: say so before any read is tried."""
    needs_s3 = any(product.bands[b].href.startswith("s3://") for b in bands)
    if needs_s3 and not settings.has_s3_keys:
        raise CredentialsError(
            f"item {product.id!r} has s3:// assets: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (CDSE S3 keys) or pass the s3 key inputs"
        )


def check_assets(product: L1CProduct, bands: tuple[str, ...], settings: Settings) -> None:
    """Open each band's header once: a missing or corrupt file fails here, before any output."""
    with gdal(settings):
        for band in bands:
            try:
                with rasterio.open(product.bands[band].href) as dataset:
                    if dataset.count != 1:
                        raise AssetReadError(
                            f"asset {band} of {product.id!r} has {dataset.count} bands, "
                            "expected 1: use a sentinel-2-l1c item"
                        )
            except RasterioError as error:
                raise AssetReadError(
                    f"cannot read asset {band} of {product.id!r} ({_short(error)}): "
                    "check that it exists and is a valid JPEG 2000/GeoTIFF; for s3:// also the "
                    "keys and endpoint, or retry later if the server failed"
                ) from None


def _short(error: Exception) -> str:
    """The first line of a GDAL error, its end kept (HTTP codes come last), never a key."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 240 else f"{text[:100]}...{text[-137:]}"
