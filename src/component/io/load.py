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
most :func:`max_connections` at once, which is also the S3 connection budget.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from component.errors import AssetReadError, CredentialsError, InvalidItemError
from component.io import stac_bridge
from component.model.correction import L1C_BANDS, L2A_BANDS, NATIVE_RESOLUTION, RasterGrid

CDSE_S3_ENDPOINT = "eodata.dataspace.copernicus.eu"
CDSE_MAX_CONNECTIONS = 4
MAX_CONNECTIONS_ENV = "COMPONENT_MAX_CONNECTIONS"
STRIP_ROWS = 1024
"""Rows per read of a native-resolution band: one row of 1024 px JPEG 2000 tiles."""
OPTIONAL_BANDS = ("B10",)
"""Input bands an item may lack: the corrector then does without (B10: no cirrus correction)."""
INPUT_BANDS = L1C_BANDS
PRODUCT_BANDS = L2A_BANDS


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: where the output pixels are."""

    epsg: int
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return (
            left,
            top + self.transform.e * self.height,
            left + self.transform.a * self.width,
            top,
        )

    @property
    def resolution(self) -> float:
        return self.transform.a

    def raster(self) -> RasterGrid:
        """The same grid as the corrector describes grids (transform and shape)."""
        return RasterGrid(self.transform, self.height, self.width)


def product_resolution(band: str, resolution: int) -> int:
    """The resolution *band* is written at for ``--resolution``: never finer than native."""
    return max(int(resolution), NATIVE_RESOLUTION[band])


def output_grid(
    item: dict[str, Any],
    band: str,
    resolution: int,
    bbox: tuple[float, float, float, float] | None = None,
) -> Grid:
    """The grid of *band* resampled to *resolution*, clipped to *bbox* (WGS84) if given."""
    epsg = stac_bridge.epsg_of(item, band)
    (a, _, c, _, e, f), (height, width) = stac_bridge.asset_grid(item, band)
    left, top = c, f
    right, bottom = c + a * width, f + e * height
    if bbox is not None:
        w, s, east, n = transform_bounds("EPSG:4326", f"EPSG:{epsg}", *bbox, densify_pts=21)
        w, s, east, n = max(w, left), max(s, bottom), min(east, right), min(n, top)
        if w >= east or s >= n:
            raise InvalidItemError(
                f"item {item.get('id')!r} does not intersect the bbox {','.join(map(str, bbox))}: "
                "widen the bbox or drop --bbox"
            )
        left = c + math.floor((w - c) / resolution) * resolution
        top = f - math.floor((f - n) / resolution) * resolution
        right = c + math.ceil((east - c) / resolution) * resolution
        bottom = f - math.ceil((f - s) / resolution) * resolution
    out_width = math.ceil(round((right - left) / resolution, 6))
    out_height = math.ceil(round((top - bottom) / resolution, 6))
    transform = Affine(resolution, 0.0, left, 0.0, -resolution, top)
    return Grid(epsg=epsg, transform=transform, width=out_width, height=out_height)


@dataclass(frozen=True)
class ReadPlan:
    """What one item's product needs: each output band's grid and the atmosphere's grid."""

    grids: dict[str, Grid]
    """Product grid of each of :data:`PRODUCT_BANDS`."""
    coarse: Grid
    """The grid the atmosphere is estimated on (the card's ``atmosphere.grid_m``)."""
    grid_r: Grid
    """The ``--resolution`` grid: TCI, AOT and WVP."""
    inputs: tuple[str, ...]
    """Input bands the item has (all 13, or 12 without B10)."""


def plan(
    item: dict[str, Any],
    resolution: int,
    bbox: tuple[float, float, float, float] | None,
    coarse_m: int,
) -> ReadPlan:
    """Check the item has what a product needs and lay out every grid, before any read."""
    stac_bridge.require_bands(item, PRODUCT_BANDS)
    assets = item.get("assets", {})
    inputs = tuple(
        b for b in INPUT_BANDS if b not in OPTIONAL_BANDS or assets.get(b, {}).get("href")
    )
    check_credentials(item, inputs)
    grids = {
        b: output_grid(item, b, product_resolution(b, resolution), bbox) for b in PRODUCT_BANDS
    }
    coarse = output_grid(item, "B02", coarse_m, bbox)
    grid_r = output_grid(item, "B02", resolution, bbox)
    return ReadPlan(grids=grids, coarse=coarse, grid_r=grid_r, inputs=inputs)


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

    Open it inside a ``rasterio.Env`` with the GDAL settings (:func:`gdal_env`) in the thread
    that reads; use it from that thread only (GDAL datasets are not thread-safe).
    """

    def __init__(self, item: dict[str, Any], band: str, grid: Grid) -> None:
        self.item_id, self.band, self.grid = item.get("id"), band, grid
        self.href = item["assets"][band]["href"]
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
                self._source = WarpedVRT(
                    dataset,
                    crs=dataset.crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.average,
                    src_nodata=stac_bridge.NODATA_DN,
                    nodata=stac_bridge.NODATA_DN,
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


def to_toa(dn: np.ndarray, radiometry: stac_bridge.BandRadiometry) -> np.ndarray:
    """DN -> TOA reflectance (float32), NaN where this band is nodata (0) or saturated."""
    toa = (dn.astype(np.float32) + np.float32(radiometry.add_offset)) / np.float32(
        radiometry.quantification
    )
    invalid = (dn == stac_bridge.NODATA_DN) | (dn == stac_bridge.SATURATED_DN)
    toa[invalid] = np.nan
    return toa


def read_band(item: dict[str, Any], band: str, grid: Grid, env: dict[str, str | int]) -> np.ndarray:
    """The whole of *band* on *grid* as DN (for grids small enough to hold: the coarse one)."""
    with rasterio.Env(**env), BandReader(item, band, grid) as reader:
        return reader.read(0, grid.height)


def read_bands(
    item: dict[str, Any],
    bands: tuple[str, ...],
    grid: Grid,
    env: dict[str, str | int],
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Several bands on one (small) grid as DN, decoded in parallel threads.

    At most :func:`max_connections` bands are read at once: each read is one S3 connection.
    """
    workers = max(1, min(len(bands), workers or max_connections()))
    with ThreadPoolExecutor(workers, "decode") as pool:
        futures = {band: pool.submit(read_band, item, band, grid, env) for band in bands}
        return {band: future.result() for band, future in futures.items()}


def gdal_env() -> dict[str, str | int]:
    """GDAL settings to read CDSE's S3 (``s3://eodata/...``) through /vsis3.

    Endpoint, TLS and region come from the environment when set (tests point them at a
    loopback server), else CDSE's values. The keys themselves are not among these options:
    rasterio refuses AWS credentials as ``Env`` options, and GDAL reads them from the process
    environment (see :func:`use_s3_credentials`), which also keeps them out of any object that
    could be logged or pickled.
    """
    return {
        "AWS_S3_ENDPOINT": os.environ.get("AWS_S3_ENDPOINT", CDSE_S3_ENDPOINT),
        "AWS_HTTPS": os.environ.get("AWS_HTTPS", "YES"),
        "AWS_VIRTUAL_HOSTING": os.environ.get("AWS_VIRTUAL_HOSTING", "FALSE"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "default"),
        # Retries of HTTP 429/5xx (and of dropped or timed-out connections) with a
        # doubling delay: about 15 s in all, then the item fails and the run goes on. A
        # stalled read is cut by the timeouts rather than hanging the scheduled run.
        "GDAL_HTTP_MAX_RETRY": os.environ.get("GDAL_HTTP_MAX_RETRY", "4"),
        "GDAL_HTTP_RETRY_DELAY": os.environ.get("GDAL_HTTP_RETRY_DELAY", "1"),
        "GDAL_HTTP_TIMEOUT": os.environ.get("GDAL_HTTP_TIMEOUT", "60"),
        "GDAL_HTTP_CONNECTTIMEOUT": os.environ.get("GDAL_HTTP_CONNECTTIMEOUT", "20"),
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".jp2,.tif,.tiff,.xml",
        # GDAL's block cache defaults to 5 % of RAM; the pipeline streams, so a bounded
        # cache keeps memory tied to the strip size rather than to the machine.
        "GDAL_CACHEMAX": _cache_bytes(),
    }


def _cache_bytes() -> int:
    """GDAL's block cache: ``GDAL_CACHEMAX`` in MB (GDAL's convention below 100000), default 256.

    rasterio hands this option to GDAL in bytes, so a bare ``256`` would be a 256-byte cache,
    which makes JPEG 2000 blocks decode again and again (measured: 3x slower reads).
    """
    text = os.environ.get("GDAL_CACHEMAX", "").strip()
    value = int(text) if text.isdigit() else 256
    return value * 2**20 if value < 100_000 else value


def use_s3_credentials(access_key_id: str | None, secret_access_key: str | None) -> None:
    """Hand secret inputs to GDAL through this process's environment (never to logs or files)."""
    if access_key_id and secret_access_key:
        os.environ["AWS_ACCESS_KEY_ID"] = access_key_id
        os.environ["AWS_SECRET_ACCESS_KEY"] = secret_access_key


def check_credentials(item: dict[str, Any], bands: tuple[str, ...]) -> None:
    """``s3://`` assets need keys: say so before any read is tried."""
    needs_s3 = any(item["assets"][b]["href"].startswith("s3://") for b in bands)
    has_keys = os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")
    if needs_s3 and not has_keys:
        raise CredentialsError(
            f"item {item.get('id')!r} has s3:// assets: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (CDSE S3 keys) or pass the s3 key inputs"
        )


def check_assets(item: dict[str, Any], bands: tuple[str, ...], env: dict[str, str | int]) -> None:
    """Open each band's header once: a missing or corrupt file fails here, before any output."""
    with rasterio.Env(**env):
        for band in bands:
            href = item["assets"][band]["href"]
            try:
                with rasterio.open(href) as dataset:
                    if dataset.count != 1:
                        raise AssetReadError(
                            f"asset {band} of {item.get('id')!r} has {dataset.count} bands, "
                            "expected 1: use a sentinel-2-l1c item"
                        )
            except RasterioError as error:
                raise AssetReadError(
                    f"cannot read asset {band} of {item.get('id')!r} ({_short(error)}): "
                    "check that it exists and is a valid JPEG 2000/GeoTIFF; for s3:// also the "
                    "keys and endpoint, or retry later if the server failed"
                ) from None


def _short(error: Exception) -> str:
    """The first line of a GDAL error, its end kept (HTTP codes come last), never a key."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 240 else f"{text[:100]}...{text[-137:]}"


def max_connections() -> int:
    """Concurrent reads one process may make: CDSE allows 4 connections per user.

    ``COMPONENT_MAX_CONNECTIONS`` (default 4) is the budget of the whole run; the Dask path
    divides it between its workers (:mod:`component.distribute`).
    """
    try:
        return max(1, int(os.environ.get(MAX_CONNECTIONS_ENV, "") or CDSE_MAX_CONNECTIONS))
    except ValueError:
        return CDSE_MAX_CONNECTIONS
