"""Overviews built into an uncompressed GeoTIFF draft by GDAL, without holding Python's GIL.

rasterio's ``build_overviews`` keeps the GIL for the whole of ``GDALBuildOverviews`` (0.5 s
per 10980² band): while one thread builds a draft's overviews, the threads correcting the other
bands cannot run a single numpy call (a pure-Python thread ran at 4 % of its speed meanwhile).
Called through :mod:`ctypes`, which releases the GIL around a foreign call, the same GDAL
function in the same library gives the same overviews while the correction goes on.

The library is the ``libgdal`` rasterio itself loaded (found in ``/proc/self/maps``, so never a
second GDAL with a driver registry of its own); where it cannot be found (not Linux) rasterio's
method does the work, the same files a little later.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import rasterio
from rasterio.enums import Resampling

from component.io import vsi

GA_UPDATE = 1
CE_FAILURE = 3
_CLOSE_REPORTS = tuple(int(x) for x in rasterio.__gdal_version__.split(".")[:2]) >= (3, 7)
"""GDALClose returns a CPLErr since GDAL 3.7 (the overviews are flushed there); before, void."""


@functools.cache
def _gdal() -> ctypes.CDLL | None:
    """rasterio's own libgdal with the few signatures used here, or None."""
    library = vsi.library()
    if library is None:  # none, or two GDALs in one process: leave it to rasterio
        return None
    library.GDALAllRegister.restype = None
    library.GDALOpen.restype = ctypes.c_void_p
    library.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    library.GDALBuildOverviews.restype = ctypes.c_int
    library.GDALBuildOverviews.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    library.GDALClose.restype = ctypes.c_int
    library.GDALClose.argtypes = [ctypes.c_void_p]
    library.CPLGetLastErrorMsg.restype = ctypes.c_char_p
    library.GDALAllRegister()  # idempotent; rasterio registers its drivers only inside an Env
    return library


def releases_gil() -> bool:
    """Whether :func:`build` runs without the GIL here (rasterio's libgdal was found)."""
    return _gdal() is not None


def build(path: Path, factors: list[int], resampling: Resampling) -> None:
    """Overviews at *factors* in the GeoTIFF at *path* (opened for update), as gdaladdo would
    (``resampling`` by name: average, mode...); raises RuntimeError with GDAL's message."""
    if not factors:
        return
    library = _gdal()
    if library is None:
        with rasterio.open(path, "r+") as dataset:
            dataset.build_overviews(factors, resampling)
        return
    handle = library.GDALOpen(str(path).encode(), GA_UPDATE)
    if not handle:
        raise RuntimeError(f"cannot open {path} for overviews: {_message(library)}")
    levels = (ctypes.c_int * len(factors))(*factors)
    method = resampling.name.upper().encode()
    try:
        status = library.GDALBuildOverviews(
            handle, method, len(factors), levels, 0, None, None, None
        )
    finally:
        closed = library.GDALClose(handle)
    if status >= CE_FAILURE or (_CLOSE_REPORTS and closed >= CE_FAILURE):
        raise RuntimeError(f"overviews of {path} failed: {_message(library)}")


def _message(library: ctypes.CDLL) -> str:
    return (library.CPLGetLastErrorMsg() or b"").decode(errors="replace")
