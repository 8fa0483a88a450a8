"""Items -> lazy TOA reflectance on the item's own grid, read with stackstac.

Three choices matter here:

* The output grid is the item's own UTM grid at the requested resolution, anchored at the
  tile's origin, so a 60 m product lines up pixel for pixel with CDSE's 60 m L2A bands.
  stackstac's default snapping (to multiples of the resolution) would shift it by up to a
  pixel, because Sentinel-2 tile origins are not multiples of 60 m.
* With a bbox only the window that covers it is read (snapped outward to that grid).
* Coarser grids are read with ``average`` resampling through GDAL's warper, which picks the
  JPEG 2000 reduced-resolution level closest to the target: a 60 m product decodes the 10 m
  bands at 40 m rather than at full resolution. L1C files carry no nodata tag, so the reader
  below declares 0 as nodata to keep fill pixels out of those averages.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import stackstac
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from stackstac.rio_reader import AutoParallelRioReader, SelfCleaningDatasetReader

from component.errors import AssetReadError, CredentialsError, InvalidItemError
from component.io import stac_bridge

CDSE_S3_ENDPOINT = "eodata.dataspace.copernicus.eu"
CDSE_MAX_CONNECTIONS = 4
MAX_CONNECTIONS_ENV = "COMPONENT_MAX_CONNECTIONS"
DEFAULT_CHUNK = 1024
"""Rows per read (full-width strips): about one tile row, one window per band per strip."""


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


class L1CReader(AutoParallelRioReader):
    """stackstac's reader, but with DN 0 declared nodata in the warped (resampled) view.

    Without this, ``average`` resampling at the edge of a swath mixes fill zeros into valid
    pixels. When no resampling is needed stackstac reads the file directly and zeros are
    masked later by :func:`to_toa`.
    """

    def _open(self):  # type: ignore[no-untyped-def]
        opened = super()._open()
        vrt = getattr(opened, "vrt", None)
        if vrt is None:
            return opened
        dataset = opened.ds
        level = overview_level(dataset, abs(self.spec.vrt_params["transform"].a))
        if level is None and vrt.src_nodata is not None:
            return opened
        src_nodata = stac_bridge.NODATA_DN if vrt.src_nodata is None else vrt.src_nodata
        vrt.close()
        if level is not None:
            # GDAL's warper does not pick a source overview by itself: open the JPEG 2000
            # reduced-resolution level explicitly so only that part of the codestream decodes.
            with self.gdal_env.open:
                reduced = SelfCleaningDatasetReader(
                    self.url, sharing=False, OVERVIEW_LEVEL=str(level)
                )
            dataset.close()
            dataset = reduced
        with self.gdal_env.open_vrt:
            masked_vrt = WarpedVRT(
                dataset,
                sharing=False,
                resampling=self.resampling,
                src_nodata=src_nodata,
                nodata=stac_bridge.NODATA_DN,
                **self.spec.vrt_params,
            )
        return type(opened)(self.gdal_env, dataset, vrt=masked_vrt)

    def read(self, window, **kwargs):  # type: ignore[no-untyped-def]
        """One unmasked read: the fill value and the nodata value are both 0 here.

        stackstac reads ``masked=True``; for a warped view with a nodata value GDAL then
        derives the mask by reading and warping the data a second time, which doubled the
        decode time of every band (measured: 6.1 s -> see benchmarks for a full 60 m tile).
        Nodata pixels come back as 0 either way, and :func:`to_toa` masks 0.
        """
        try:
            result = self.dataset.read(window=window, out_dtype=self.dtype, masked=False, **kwargs)
        except Exception as error:
            raise RuntimeError(f"Error reading {window} from {self.url!r}: {error!r}") from error
        return result[0] if result.ndim == 3 else result


def overview_level(dataset: rasterio.io.DatasetReader, target_resolution: float) -> int | None:
    """Index of the coarsest overview still at least as fine as *target_resolution*, if any."""
    native = abs(dataset.res[0])
    best = None
    for index, factor in enumerate(dataset.overviews(1)):
        if native * factor <= target_resolution * (1 + 1e-6):
            best = index
    return best


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


def load_dn(
    item: dict[str, Any],
    bands: tuple[str, ...],
    grid: Grid,
    env: dict[str, str | int],
    chunksize: int = DEFAULT_CHUNK,
) -> xr.DataArray:
    """Lazy uint16 DN (band, y, x) on *grid*; 0 where the file has no data."""
    bridged = stac_bridge.for_stackstac(item, bands)
    native = abs(stac_bridge.asset_grid(item, bands[0])[0][0])
    resampling = Resampling.average if grid.resolution > native else Resampling.nearest
    stack = stackstac.stack(
        [bridged],
        assets=list(bands),
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        resampling=resampling,
        dtype=np.dtype("uint16"),
        fill_value=np.uint16(stac_bridge.NODATA_DN),
        rescale=False,
        chunksize=(1, 1, chunksize, -1),  # full-width row strips: one window per band per read
        errors_as_nodata=(),
        gdal_env=stackstac.DEFAULT_GDAL_ENV.updated(always=env),
        reader=L1CReader,
        properties=False,
    )
    dn = stack.isel(time=0, drop=True)
    if dn.shape[1:] != (grid.height, grid.width):
        raise AssertionError(f"stackstac returned {dn.shape[1:]}, grid is {grid}")
    return dn


def to_toa(dn: xr.DataArray, radiometry: stac_bridge.BandRadiometry) -> xr.DataArray:
    """DN -> TOA reflectance (float32), NaN where any band is nodata (0) or saturated."""
    invalid = ((dn == stac_bridge.NODATA_DN) | (dn == stac_bridge.SATURATED_DN)).any("band")
    toa = (dn.astype("float32") + np.float32(radiometry.add_offset)) / np.float32(
        radiometry.quantification
    )
    return toa.where(~invalid).astype("float32")


def load_toa(
    item: dict[str, Any],
    bands: tuple[str, ...],
    resolution: int,
    bbox: tuple[float, float, float, float] | None = None,
    env: dict[str, str | int] | None = None,
) -> tuple[xr.DataArray, Grid]:
    """Check the item, then return its lazy TOA reflectance and the grid it lies on."""
    env = env if env is not None else gdal_env()
    stac_bridge.require_bands(item, bands)
    check_credentials(item, bands)
    grid = output_grid(item, bands[0], resolution, bbox)
    check_assets(item, bands, env)
    dn = load_dn(item, bands, grid, env)
    return to_toa(dn, stac_bridge.radiometry(item)), grid


def max_connections() -> int:
    """Concurrent reads one process may make: CDSE allows 4 connections per user.

    ``COMPONENT_MAX_CONNECTIONS`` (default 4) is the budget of the whole run; the Dask path
    divides it between its workers (:mod:`component.distribute`).
    """
    try:
        return max(1, int(os.environ.get(MAX_CONNECTIONS_ENV, "") or CDSE_MAX_CONNECTIONS))
    except ValueError:
        return CDSE_MAX_CONNECTIONS


class StripReader:
    """Rows of a lazy (band, y, x) array, decoded once per chunk row however strips overlap.

    Correction strips overlap (tile overlap) and do not line up with the reader's chunks, so
    reading each strip straight from the lazy array would decode most chunk rows twice. This
    keeps the last two decoded chunk rows: memory stays two chunk rows of the scene width.
    Chunks are read by at most :func:`max_connections` threads, each one S3 connection.
    """

    def __init__(self, array: xr.DataArray, chunk_rows: int | None = None) -> None:
        self.array = array
        # Default: the lazy array's own row chunk, so a read never splits a chunk.
        self.chunk_rows = chunk_rows or (array.chunks[1][0] if array.chunks else DEFAULT_CHUNK)
        self.connections = max_connections()
        self._decoder = ThreadPoolExecutor(1, "decode")
        self._cache: dict[int, Future[np.ndarray]] = {}

    def prefetch(self, index: int = 0) -> None:
        """Start decoding chunk row *index* now (e.g. while the model is being loaded)."""
        if index not in self._cache and index * self.chunk_rows < self.array.shape[1]:
            self._cache[index] = self._decoder.submit(self._decode, index)

    def _decode(self, index: int) -> np.ndarray:
        start = index * self.chunk_rows
        rows = self.array[:, start : start + self.chunk_rows, :]
        return rows.compute(scheduler="threads", num_workers=self.connections).values

    def _chunk(self, index: int) -> np.ndarray:
        self.prefetch(index)
        for old in [k for k in self._cache if k < index - 1]:
            del self._cache[old]
        return self._cache[index].result()

    def close(self) -> None:
        self._decoder.shutdown(wait=True, cancel_futures=True)
        self._cache.clear()

    def __call__(self, y0: int, y1: int) -> np.ndarray:
        first, last = y0 // self.chunk_rows, (y1 - 1) // self.chunk_rows
        parts = [self._chunk(i) for i in range(first, last + 1)]
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        offset = y0 - first * self.chunk_rows
        return rows[:, offset : offset + (y1 - y0)]
