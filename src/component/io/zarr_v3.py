"""EOPF Zarr v3 band arrays (``sentinel-2-l1c-zarr3``) as local GeoTIFFs read with zarr-python.

ESA's v3 products keep each band in one shard (``sharding_indexed``, inner blosc/zstd chunks,
the ``bytes`` codec), which the GDAL inside rasterio's wheel (3.10) refuses. Rather than a
second reader for the whole pipeline, each band array of the product is read once with
zarr-python (:func:`open_band_store`: local, or the signed HTTP/S3 reader of the granule
metadata), when the item is built from the product (:func:`materialise_all`, bands in
parallel), and written to a tiled uint16 GeoTIFF (ZSTD level 1, nodata 0, the grid of the
array's ``x``/``y`` pixel-centre coordinates, the product's EPSG) in a per-process temporary
folder, removed when the process ends (never inside ``--output``). That file is the band's
href (a ``file://`` URI, which pystac keeps absolute beside an ``s3://`` item): the reader,
grids, resampling, radiometry and nodata handling downstream are the SAFE and v2 ones. The
files are local to the process that built the item: workers of a remote Dask cluster do not
see them.

The product's coarser multiscale levels of a band (``r20m/b02``, ``r60m/b02`` beside
``r10m/b02``) are written too and become the GeoTIFF's overviews, through a small VRT that
names them (:func:`materialise`): a band read coarser than its native resolution then reads
ESA's own level nearest the target, as a SAFE band decodes its JPEG 2000 reduced-resolution
level, instead of averaging the full-resolution array.

A band's shard (a chunk key of the store) that is absent reads as fill values in zarr-python;
here it is an :class:`~component.errors.AssetReadError` (exit 5): a band of an L1C product is
never wholly nodata, so an absent shard is a truncated copy of the product.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from component.core.settings import Settings
from component.errors import AssetReadError, InvalidItemError

BLOCK_ROWS = 1024
"""Rows at least per zarr read (a whole number of shards or chunks, full width)."""

_state: dict[str, Any] = {"folder": None, "pid": None}
_done: dict[tuple[str, str], tuple[str, list[float], list[int]]] = {}
_lock = threading.Lock()
_serial = itertools.count()


class MissingShardError(Exception):
    """A chunk or shard key of a band array that the store does not hold."""


_CLEANER = """
import os, shutil, signal, sys
for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(number, signal.SIG_IGN)
while os.read(0, 4096):
    pass
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""
"""The watcher of a scratch folder: it waits for the end of its pipe from the process that
made the folder (closed however that process ends: ``os._exit``, as the CLI's ``entry`` ends,
a signal, a crash) and then removes the folder."""


def scratch_folder() -> Path:
    """This process's temporary folder for materialised bands, made on first use and removed
    when the process ends: at exit (atexit, by the process that made it: a forked child does
    not remove its parent's), and else by a small watcher process (:data:`_CLEANER`), since
    the command line ends with ``os._exit`` and a killed run runs no atexit."""
    with _lock:
        if _state["folder"] is None or _state["pid"] != os.getpid():
            folder = Path(tempfile.mkdtemp(prefix="component-zarr3-"))
            _state.update(folder=folder, pid=os.getpid(), watcher=_watch(folder))
            _done.clear()
            atexit.register(_remove, folder, os.getpid())
        return Path(_state["folder"])


def _watch(folder: Path) -> int | None:
    """Start the watcher that removes *folder* once this process has ended; the write end of
    its pipe (not inherited by programs this process starts), or None if it cannot start."""
    read, write = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-S", "-c", _CLEANER, str(folder)],
            stdin=read,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )
    except OSError:
        os.close(write)
        return None
    finally:
        os.close(read)
    return write


def _remove(folder: Path, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(folder, ignore_errors=True)


def cleanup() -> None:
    """Remove this process's folder now (tests, long-lived API processes)."""
    with _lock:
        folder, pid, watcher = _state["folder"], _state["pid"], _state.get("watcher")
        _state.update(folder=None, pid=None, watcher=None)
        _done.clear()
    if folder is not None:
        _remove(folder, pid)
    if watcher is not None and pid == os.getpid():
        os.close(watcher)


def open_band_store(root: str, settings: Settings) -> Any:
    """The product at *root* as a read-only zarr group whose absent chunk keys raise
    :class:`MissingShardError` instead of reading as fill values."""
    import zarr
    from zarr.storage import LocalStore, WrapperStore

    from component.io.zarr_product import _href_store

    if "://" in root and not root.startswith("file://"):
        inner = _href_store(root.rstrip("/"), settings)
    else:
        inner = LocalStore(root.removeprefix("file://"), read_only=True)

    class StrictStore(WrapperStore):  # type: ignore[type-arg]
        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            value = await self._store.get(key, prototype, byte_range)
            if value is None and _is_chunk_key(key):
                raise MissingShardError(key)
            return value

        async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
            return [await self.get(key, prototype, wanted) for key, wanted in key_ranges]

    return zarr.open_group(store=StrictStore(inner), mode="r")


def _is_chunk_key(key: str) -> bool:
    """Whether *key* names a chunk (or shard) rather than metadata."""
    leaf = key.rsplit("/", 1)[-1]
    return leaf not in ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")


def grid_of(group: Any, array_path: str) -> tuple[list[float], list[int]]:
    """``(proj:transform, proj:shape)`` of a band array from its group's pixel-centre ``x``
    and ``y`` coordinates."""
    folder = array_path.rsplit("/", 1)[0]
    try:
        shape = [int(v) for v in group[array_path].shape]
        x = np.asarray(group[f"{folder}/x"][:], dtype=np.float64)
        y = np.asarray(group[f"{folder}/y"][:], dtype=np.float64)
    except KeyError as error:
        raise InvalidItemError(
            f"{array_path} has no x/y coordinates ({error}): give an EOPF Zarr L1C product"
        ) from None
    regular = (
        len(x) >= 2
        and len(y) >= 2
        and [len(y), len(x)] == shape
        and np.allclose(np.diff(x), x[1] - x[0])
        and np.allclose(np.diff(y), y[1] - y[0])
    )
    if not regular or x[1] <= x[0] or y[1] >= y[0]:
        raise InvalidItemError(
            f"{array_path} has no north-up grid (x/y coordinates missing or irregular): give an "
            "EOPF Zarr L1C product"
        )
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    transform = [dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2]
    return transform, shape


def _write_tif(array: Any, path: Path, transform: list[float], epsg: int, what: str) -> None:
    """*array* (a zarr uint16 array) into a tiled GeoTIFF, read a block of shards at a time."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    height, width = (int(v) for v in array.shape)
    unit = int((getattr(array, "shards", None) or array.chunks)[0])
    rows = max(unit, -(-BLOCK_ROWS // unit) * unit)
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 1,
        "width": width,
        "height": height,
        "crs": f"EPSG:{epsg}",
        "transform": Affine(*transform),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "zstd",
        "zstd_level": 1,
        "bigtiff": "if_safer",
    }
    partial = path.with_name(f".{path.name}.part")
    try:
        with rasterio.Env(), rasterio.open(partial, "w", **profile) as target:
            for y0 in range(0, height, rows):
                y1 = min(height, y0 + rows)
                try:
                    block = np.asarray(array[y0:y1, :])
                except MissingShardError as error:
                    raise AssetReadError(
                        f"Zarr product {what}: shard {error} is missing (the copy is "
                        "incomplete): fetch the product again"
                    ) from None
                except (OSError, ValueError, RuntimeError) as error:
                    raise AssetReadError(
                        f"cannot read {what} ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:160] if str(error) else ''}): check the "
                        "Zarr product, the keys and endpoint"
                    ) from None
                target.write(
                    block.astype(np.uint16, copy=False), 1, window=Window(0, y0, width, y1 - y0)
                )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def materialise(
    root: str,
    settings: Settings,
    array_path: str,
    epsg: int,
    levels: dict[int, str] | None = None,
    group: Any = None,
) -> tuple[str, list[float], list[int]]:
    """A local href for *array_path* of the v3 product at *root*, and its grid.

    The band is written once per process (later calls return the same file). With *levels*
    (``{resolution: array path}`` of the product's coarser copies of the band) the href is a
    VRT over the native GeoTIFF that lists those levels, written alike, as its overviews.
    """
    key = (root, array_path)
    with _lock:
        if key in _done:
            return _done[key]
    folder = scratch_folder()
    if group is None:
        group = open_band_store(root, settings)
    transform, shape = grid_of(group, array_path)
    stem = array_path.replace("/", "_")
    native = folder / f"{next(_serial):03d}_{stem}.tif"
    _write_tif(group[array_path], native, transform, epsg, f"{root} array {array_path}")
    href = native.as_uri()  # a file:// URI: pystac keeps it absolute beside an s3:// item
    overviews: list[tuple[Path, list[int]]] = []
    for resolution in sorted(levels or {}):
        level = (levels or {})[resolution]
        level_transform, level_shape = grid_of(group, level)
        if level_shape[0] >= shape[0] or level_shape[1] >= shape[1]:
            continue
        path = native.with_name(f"{native.stem}_r{resolution}m.tif")
        _write_tif(group[level], path, level_transform, epsg, f"{root} array {level}")
        overviews.append((path, level_shape))
    if overviews:
        vrt = native.with_suffix(".vrt")
        vrt.write_text(_vrt(native, shape, transform, epsg, overviews))
        href = vrt.as_uri()
    result = (href, transform, shape)
    with _lock:
        _done[key] = result
    return result


def materialise_all(
    root: str, settings: Settings, arrays: dict[str, tuple[str, dict[int, str]]], epsg: int
) -> dict[str, tuple[str, list[float], list[int]]]:
    """:func:`materialise` for each ``{band: (array path, levels)}``, several bands at once
    (zarr-python's decoding and GDAL's encoding release the GIL), at most
    :attr:`~component.core.settings.Settings.max_connections` at a time, the connection
    budget of the reads."""
    from concurrent.futures import ThreadPoolExecutor

    group = open_band_store(root, settings)
    workers = max(1, min(len(arrays), settings.max_connections, settings.threads))

    def one(band: str) -> tuple[str, list[float], list[int]]:
        array, levels = arrays[band]
        return materialise(root, settings, array, epsg, levels, group=group)

    with ThreadPoolExecutor(workers, thread_name_prefix="zarr3") as pool:
        return dict(zip(arrays, pool.map(one, arrays), strict=True))


def _vrt(
    native: Path,
    shape: list[int],
    transform: list[float],
    epsg: int,
    overviews: list[tuple[Path, list[int]]],
) -> str:
    """A VRT of *native* whose band lists the coarser GeoTIFFs as its overviews."""
    from rasterio.crs import CRS

    height, width = shape
    a, b, c, d, e, f = transform
    listed = "".join(
        f'<Overview><SourceFilename relativeToVRT="0">{escape(str(path))}</SourceFilename>'
        "<SourceBand>1</SourceBand></Overview>"
        for path, _ in overviews
    )
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{escape(CRS.from_epsg(epsg).to_wkt())}</SRS>"
        f"<GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>"
        '<VRTRasterBand dataType="UInt16" band="1"><NoDataValue>0</NoDataValue>'
        f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(native))}</SourceFilename>'
        "<SourceBand>1</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/></SimpleSource>'
        f"{listed}</VRTRasterBand></VRTDataset>"
    )
