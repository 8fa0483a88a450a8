"""The product's rasters: band COGs, RGB quicklook, AOT, WVP, SCL and CLD COGs, a PNG thumbnail.

Reflectance DN follow CDSE's L2A convention (processing baseline >= 04.00):
``reflectance = DN * 0.0001 - 0.1``, nodata 0, uint16, so a consumer that reads CDSE L2A
items reads these files unchanged. AOT and WVP follow Sen2Cor's quantification (1000):
``AOT = DN / 1000``, ``water vapour (cm) = DN / 1000``, nodata 0. Scale and offset are also
written into the GeoTIFF band metadata, so GDAL-only tools get physical values too. SCL is
uint8 in Sen2Cor's class values (nodata 0 = class ``no_data``, overviews by the most frequent
class); CLD the cloud probability in percent, uint8, nodata 255.

Each raster is first written window by window into an uncompressed tiled GeoTIFF draft (so
strips can be streamed into it), then turned into a COG by GDAL's COG driver (overviews,
internal tiling, DEFLATE with a predictor): the COG layout puts overviews before the
full-resolution data, which only a final copy can do. A draft is finished as soon as its last
strip is written, in a thread of its own, while other bands are still being corrected.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import itertools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from PIL import Image
from rasterio.enums import Resampling
from rasterio.windows import Window

from component.core.bands import L1C_BANDS
from component.core.grid import Grid
from component.io import overviews

SCALE = 0.0001
OFFSET = -0.1
NODATA = 0
ATMOSPHERE_QUANTIFICATION = 1000.0
"""Sen2Cor's AOT_QUANTIFICATION_VALUE and WVP_QUANTIFICATION_VALUE: DN / 1000."""
ATMOSPHERE_SCALE = 1.0 / ATMOSPHERE_QUANTIFICATION
CLOUD_NODATA = 255
"""Nodata of the cloud probability (0-100 %), whose 0 is a value; SCL's nodata is class 0."""
QUICKLOOK_MAX_REFLECTANCE = 0.3
"""Reflectance mapped to 255 in the quicklook: bright enough for land, like Sen2Cor's TCI."""
THUMBNAIL_SIZE = 512
RGB = ("B04", "B03", "B02")

COG_OPTIONS = {
    # DEFLATE (readable everywhere) at level 1: for a 10 m band 3.5x faster than the default
    # level 6 for files 2 % larger (measured on a 10980² band: 2.4 s vs 8.4 s).
    "COMPRESS": "DEFLATE",
    "LEVEL": "1",
    "PREDICTOR": "2",
    "BLOCKSIZE": "512",
    "OVERVIEWS": "AUTO",
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "NUM_THREADS": "ALL_CPUS",
    "BIGTIFF": "IF_SAFER",
}


def reflectance_to_dn(boa: np.ndarray) -> np.ndarray:
    """Float reflectance (NaN = nodata) -> uint16 DN; valid pixels never become nodata."""
    dn = np.subtract(boa, np.float32(OFFSET), dtype=np.float32)
    dn /= np.float32(SCALE)
    np.rint(dn, out=dn)
    np.clip(dn, 1, 65534, out=dn)
    dn[np.isnan(boa)] = NODATA
    return dn.astype(np.uint16)


def dn_to_reflectance(dn: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint16 DN as written -> float32 reflectance, NaN where nodata (the inverse of
    :func:`reflectance_to_dn` to its quantization); into *out* (float32, *dn*'s shape) if
    given."""
    boa = np.multiply(dn, np.float32(SCALE), out=out, dtype=np.float32)
    boa += np.float32(OFFSET)
    boa[dn == NODATA] = np.nan
    return boa


def atmosphere_to_dn(values: np.ndarray, nodata: np.ndarray | None = None) -> np.ndarray:
    """AOT or water vapour (cm) -> uint16 DN = round(value * 1000), valid values >= 1.

    *nodata* marks pixels where the L1C has no data: 0 there (and where *values* is NaN).
    """
    dn = np.multiply(values, np.float32(ATMOSPHERE_QUANTIFICATION), dtype=np.float32)
    np.rint(dn, out=dn)
    np.clip(dn, 1, 65535, out=dn)
    invalid = np.isnan(values) if nodata is None else (np.isnan(values) | nodata)
    dn[invalid] = NODATA
    return dn.astype(np.uint16)


def quicklook_bytes(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) reflectance -> uint8 for display; 0 stays nodata."""
    scaled = np.clip(np.rint(rgb / QUICKLOOK_MAX_REFLECTANCE * 255), 1, 255)
    invalid = np.isnan(rgb).any(axis=0)
    return np.where(invalid, 0, scaled).astype(np.uint8)


@functools.cache
def _quicklook_table() -> np.ndarray:
    """:func:`quicklook_bytes` of the reflectance of every reflectance DN (0: nodata)."""
    dn = np.arange(65536, dtype=np.float32)
    reflectance = dn * np.float32(SCALE) + np.float32(OFFSET)
    reflectance[0] = np.nan
    return quicklook_bytes(reflectance[None])[0]


def quicklook_from_dn(rgb: list[np.ndarray]) -> np.ndarray:
    """Red, green, blue reflectance DN (each (h, w) uint16, 0 = nodata) -> the quicklook's
    (3, h, w) uint8: what :func:`quicklook_bytes` gives for their reflectance, by a lookup
    table (a gather per pixel, 16 rows at a time so that the indices stay in cache: per 10 m
    strip 0.09 s for the three bands, against 0.5 s for the float passes)."""
    table = _quicklook_table()
    height, width = rgb[0].shape
    out = np.empty((3, height, width), np.uint8)
    for y0 in range(0, height, 16):
        rows = slice(y0, min(height, y0 + 16))
        for plane, dn in zip(out, rgb, strict=True):
            np.take(table, dn[rows], out=plane[rows], mode="clip")
        invalid = (out[:, rows] == 0).any(axis=0)
        out[:, rows][:, invalid] = 0
    return out


def multihash_sha256(path: Path) -> str:
    """``file:checksum`` form: multihash code 0x12 (sha2-256), length 0x20, then the digest."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class WrittenAsset:
    """A file of the product and what describe needs to know about it."""

    key: str
    path: Path
    bands: tuple[str, ...]
    kind: str
    """``reflectance``, ``visual``, ``aot``, ``wvp``, ``scl``, ``cld`` or ``thumbnail``."""
    grid: Grid | None = None
    sampling: str = "original"
    """``original``, ``upsampled`` or ``downsampled``: against the data it was made from."""
    checksum: str | None = None
    """The file's ``file:checksum`` (:func:`multihash_sha256`), once it is finished."""
    method: str = ""
    """How a band was brought to a finer grid than its own (the super-resolution method's
    name, ``<band>_10m`` of ``--super-resolve``); empty for every other raster."""


def product_order(asset: WrittenAsset) -> tuple[int, bool, int, str]:
    """Bands in Sentinel-2 order (B01 .. B8A .. B12), then the sharpened bands (``B01_10m``
    .. ``B12_10m``), then TCI, AOT, WVP, SCL, CLD, thumbnail."""
    kinds = ("reflectance", "visual", "aot", "wvp", "scl", "cld", "thumbnail")
    band = asset.bands[0] if asset.kind == "reflectance" and asset.bands else ""
    position = L1C_BANDS.index(band) if band in L1C_BANDS else 0
    kind = kinds.index(asset.kind) if asset.kind in kinds else len(kinds)
    return (kind, bool(asset.method), position, asset.key)


KINDS = {
    # kind: (count, dtype, scale, offset)
    "reflectance": (1, "uint16", SCALE, OFFSET),
    "visual": (3, "uint8", None, None),
    "aot": (1, "uint16", ATMOSPHERE_SCALE, 0.0),
    "wvp": (1, "uint16", ATMOSPHERE_SCALE, 0.0),
    "scl": (1, "uint8", None, None),
    "cld": (1, "uint8", None, None),
}
KIND_NODATA = {"cld": CLOUD_NODATA}
"""Nodata where it is not :data:`NODATA` (0)."""
KIND_COG_OPTIONS = {"scl": {"OVERVIEW_RESAMPLING": "MODE"}}
"""Class values must not be averaged in the overviews: the most frequent class stands."""


class Draft:
    """One raster of the product being written strip by strip, then finished as a COG."""

    def __init__(
        self,
        folder: Path,
        key: str,
        grid: Grid,
        kind: str,
        bands: tuple[str, ...],
        sampling: str = "original",
        method: str = "",
    ) -> None:
        count, dtype, self.scale, self.offset = KINDS[kind]
        path = folder / f"{key}.tif"
        self.asset = WrittenAsset(key, path, bands, kind, grid, sampling, method=method)
        self.path = folder / f".{key}.draft.tif"
        self._dataset = rasterio.open(
            self.path,
            "w",
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=count,
            dtype=dtype,
            nodata=KIND_NODATA.get(kind, NODATA),
            crs=f"EPSG:{grid.epsg}",
            transform=grid.transform,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            # The COG copy compresses: compressing the draft too would spend the CPU twice
            # (a 10 m band draft is 240 MB on disk, briefly).
            compress="NONE",
            BIGTIFF="IF_SAFER",
        )
        # Band metadata now, not in a later update: drafts kept for another reader (the RGB
        # bands, which the quicklook reads) are never rewritten while read.
        if self.scale is not None:
            self._dataset.scales = (self.scale,) * count
            self._dataset.offsets = (self.offset or 0.0,) * count
        for index, band in enumerate(bands, start=1):
            self._dataset.set_band_description(index, band)

    def write(self, y0: int, block: np.ndarray) -> None:
        """Rows ``y0:y0 + h`` of the grid: (h, w) for one band, (count, h, w) for several."""
        height, width = block.shape[-2:]
        window = Window(0, y0, width, height)
        if block.ndim == 2:
            self._dataset.write(block, 1, window=window)
        else:
            self._dataset.write(block, window=window)

    def close(self) -> None:
        if not self._dataset.closed:
            self._dataset.close()

    @property
    def cost(self) -> int:
        """Values to compress (pixels x bands): what its COG copy takes, for the writer's order."""
        grid = self.asset.grid
        return 0 if grid is None else grid.width * grid.height * len(self.asset.bands)

    def finish(self) -> WrittenAsset:
        """Overviews, COG copy, draft removed.

        The overviews are built into the uncompressed draft and the COG driver copies them:
        left to itself it builds them in a compressed temporary file, then decompresses and
        compresses them again (measured per 5490² band: 1.5 s -> 1.0 s, per 10980²: 4.9 s ->
        4.2 s; with two such copies at once on 2 cores, 21 s each against 6 s). So a draft
        another job still reads (the RGB bands, for the quicklook) is finished after it.
        """
        self.close()
        options = COG_OPTIONS | KIND_COG_OPTIONS.get(self.asset.kind, {})
        factors = overview_factors(self.asset.grid) if self.asset.grid is not None else []
        if factors:
            resampling = Resampling[options["OVERVIEW_RESAMPLING"].lower()]
            overviews.build(self.path, factors, resampling)  # without the GIL: see the module
            options = options | {"OVERVIEWS": "FORCE_USE_EXISTING"}
        rasterio.shutil.copy(self.path, self.asset.path, driver="COG", **options)
        self.path.unlink()
        # The COG was just written: it is in the page cache, and this thread hashes it while
        # the others still correct and compress (a 10 m product's 1.2 GB: 2.3 s off the end).
        return dataclasses.replace(self.asset, checksum=multihash_sha256(self.asset.path))


class DraftRows:
    """Complete drafts of one grid read back rows at a time, by a job that makes a raster from
    other jobs' drafts (the quicklook from the RGB bands, the sharpened bands from the 10 m
    guide and the native bands): a strip in memory, never the whole grid."""

    def __init__(self, drafts: list[Draft]) -> None:
        grids = {draft.asset.grid for draft in drafts}
        if len(grids) != 1:
            raise ValueError("drafts read together must share one grid")
        self.grid: Grid = grids.pop()  # type: ignore[assignment]
        self._datasets = [rasterio.open(draft.path) for draft in drafts]

    def read(self, y0: int, y1: int) -> list[np.ndarray]:
        """Rows ``y0:y1`` of every draft (each (y1 - y0, width), the drafts' dtype)."""
        window = Window(0, y0, self.grid.width, y1 - y0)
        return [dataset.read(1, window=window) for dataset in self._datasets]

    def close(self) -> None:
        for dataset in self._datasets:
            dataset.close()

    def __enter__(self) -> DraftRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def overview_factors(grid: Grid, block: int = int(COG_OPTIONS["BLOCKSIZE"])) -> list[int]:
    """GDAL's COG driver's own choice (``OVERVIEWS=AUTO``): halve until the smallest overview
    fits in one block."""
    factors: list[int] = []
    width, height = grid.width, grid.height
    while width > block or height > block:
        factor = 2 ** (len(factors) + 1)
        factors.append(factor)
        width, height = -(-grid.width // factor), -(-grid.height // factor)
    return factors


class ProductWriter:
    """The rasters of one product in *folder*: drafts are opened, written, finished in threads.

    :meth:`finish_later` hands a complete draft to a pool that converts it to a COG while the
    caller goes on with other bands (GDAL releases the GIL while compressing); a free thread
    takes the costliest draft waiting (:attr:`Draft.cost`), not the oldest, so the product
    ends on small COGs rather than on a 10 m one started last (first come, first served left
    the quicklook's 3 x 10980² for the last 9 s of a 10 m run, one core idle). :meth:`finish`
    waits for all and returns the assets in product order (the thumbnail is made from the
    quicklook as soon as its COG is).
    """

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._drafts: list[Draft] = []
        self._pending: list[Future[list[WrittenAsset]]] = []
        self._waiting: list[tuple[int, int, Draft]] = []  # heap: costliest first, then oldest
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._pool = ThreadPoolExecutor(max(1, threads or (os.cpu_count() or 1)), "cog")

    def open(self, *args: Any, **kwargs: Any) -> Draft:
        """A new :class:`Draft` of the product in its folder: ``Draft``'s arguments after
        ``folder`` (key, grid, kind, bands, sampling, method)."""
        draft = Draft(self.folder, *args, **kwargs)
        self._drafts.append(draft)
        return draft

    def finish_later(self, draft: Draft) -> None:
        draft.close()
        with self._lock:
            heapq.heappush(self._waiting, (-draft.cost, next(self._order), draft))
        # One task per draft; each takes whichever draft is costliest when a thread is free.
        self._pending.append(self._pool.submit(self._finish_next))

    def _finish_next(self) -> list[WrittenAsset]:
        with self._lock:
            _, _, draft = heapq.heappop(self._waiting)
        return self._finish(draft)

    def _finish(self, draft: Draft) -> list[WrittenAsset]:
        """A draft's COG; the quicklook's also gives the thumbnail, in the same thread while
        the other COGs are still being made (not after them all)."""
        asset = draft.finish()
        if asset.kind != "visual":
            return [asset]
        thumbnail = self.folder / "thumbnail.png"
        write_thumbnail(asset.path, thumbnail)
        checksum = multihash_sha256(thumbnail)
        return [
            asset,
            WrittenAsset("thumbnail", thumbnail, asset.bands, "thumbnail", checksum=checksum),
        ]

    def close(self) -> None:
        """Stop: close every draft and wait for conversions in flight (used on failure too)."""
        for draft in self._drafts:
            draft.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> list[WrittenAsset]:
        """Every COG finished (and the thumbnail, from the quicklook); assets in product order,
        the thumbnail last."""
        finished = {d.asset.key for d in self._drafts}
        assets = [asset for future in self._pending for asset in future.result()]
        if {a.key for a in assets if a.kind != "thumbnail"} != finished:
            raise RuntimeError("a draft of the product was never finished")
        assets.sort(key=product_order)
        return assets


def write_thumbnail(quicklook: Path, target: Path, size: int = THUMBNAIL_SIZE) -> None:
    """A small RGBA PNG (transparent where nodata), read from the quicklook's overviews."""
    with rasterio.open(quicklook) as dataset:
        factor = max(dataset.width, dataset.height) / size
        shape = (
            max(1, round(dataset.height / max(factor, 1))),
            max(1, round(dataset.width / max(factor, 1))),
        )
        rgb = dataset.read(out_shape=(3, *shape), resampling=Resampling.average)
    alpha = np.where((rgb == 0).all(axis=0), 0, 255).astype(np.uint8)
    image = Image.fromarray(np.dstack([*rgb, alpha]), mode="RGBA")
    # zlib's default level: optimize=True costs 2.3x the time (0.44 s) for a file 2 % smaller.
    image.save(target, format="PNG")
