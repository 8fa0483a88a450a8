"""Small files through GDAL's virtual file systems, in rasterio's own GDAL library.

rasterio opens datasets only, and a zip's XML files are not datasets: the metadata of a SAFE
``.zip`` (``/vsizip/``) is read here through GDAL's VSI functions, called with :mod:`ctypes`
in the library rasterio loaded (:func:`library`: found in ``/proc/self/maps``, so never a
second GDAL with a driver registry and configuration of its own). The reads run in the GDAL
configuration of the run's settings (the options and keys of :func:`component.io.load.gdal`,
thread-local), so GDAL reads a zip's metadata exactly as it reads its bands.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from component.core.settings import Settings

MAX_METADATA_BYTES = 64 << 20
"""A metadata file larger than this is not one (MTD_TL.xml is under 1 MB)."""

_library: Any = None
_library_lock = threading.Lock()


@functools.cache
def library() -> ctypes.CDLL | None:
    """The ``libgdal`` rasterio loaded into this process, or None where it cannot be told
    (not Linux, or two GDALs in one process): callers then fall back to rasterio's API."""
    import rasterio._io  # noqa: F401  (loads libgdal)

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "/libgdal" in line}
    if len(paths) != 1:
        return None
    return ctypes.CDLL(paths.pop())


def name(href: str) -> str:
    """The GDAL name of an href, as rasterio names ``s3://`` and ``https://`` ones."""
    parsed = urlparse(href)
    if parsed.scheme == "s3":
        return f"/vsis3/{parsed.netloc}/{parsed.path.lstrip('/')}"
    if parsed.scheme in ("http", "https"):
        return f"/vsicurl/{href}"
    return href


def _gdal() -> Any:
    """GDAL's VSI functions, declared once."""
    global _library
    with _library_lock:
        if _library is None:
            lib = library()
            if lib is None:
                raise OSError("GDAL's library (rasterio's) was not found in this process")
            pointer, text, size = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
            lib.VSIFOpenExL.restype, lib.VSIFOpenExL.argtypes = pointer, [text, text, ctypes.c_int]
            lib.VSIFReadL.restype, lib.VSIFReadL.argtypes = size, [pointer, size, size, pointer]
            lib.VSIFEofL.restype, lib.VSIFEofL.argtypes = ctypes.c_int, [pointer]
            lib.VSIFCloseL.restype, lib.VSIFCloseL.argtypes = ctypes.c_int, [pointer]
            lib.VSIReadDir.restype = ctypes.POINTER(ctypes.c_char_p)
            lib.VSIReadDir.argtypes = [text]
            lib.CSLDestroy.restype, lib.CSLDestroy.argtypes = None, [ctypes.POINTER(text)]
            lib.VSIGetLastErrorMsg.restype, lib.VSIGetLastErrorMsg.argtypes = text, []
            lib.CPLGetLastErrorMsg.restype, lib.CPLGetLastErrorMsg.argtypes = text, []
            lib.VSIErrorReset.restype, lib.VSIErrorReset.argtypes = None, []
            lib.CPLErrorReset.restype, lib.CPLErrorReset.argtypes = None, []
            lib.CPLPushErrorHandler.restype, lib.CPLPushErrorHandler.argtypes = None, [pointer]
            lib.CPLPopErrorHandler.restype, lib.CPLPopErrorHandler.argtypes = None, []
            _library = lib
        return _library


class _Quiet:
    """GDAL errors kept from rasterio's logging handler while a VSI call runs (they become
    the exception's message instead), in the configuration of *settings*."""

    def __init__(self, settings: Settings) -> None:
        from component.io.load import gdal

        self.lib = _gdal()
        self.env = gdal(settings)

    def __enter__(self) -> Any:
        self.env.__enter__()
        self.lib.CPLPushErrorHandler(ctypes.cast(self.lib.CPLQuietErrorHandler, ctypes.c_void_p))
        self.lib.CPLErrorReset()
        self.lib.VSIErrorReset()
        return self.lib

    def __exit__(self, *exc: object) -> None:
        self.lib.CPLPopErrorHandler()
        self.env.__exit__(*exc)


def _reason(lib: Any) -> str:
    """The last GDAL error of this thread (VSI's, else CPL's), or ""."""
    message = lib.VSIGetLastErrorMsg() or lib.CPLGetLastErrorMsg() or b""
    return bytes(message).decode(errors="replace").strip()


def open_and(name: str, settings: Settings, read: Any) -> bytes:
    """``read(handle)`` of the file GDAL names *name*, opened and closed here."""
    with _Quiet(settings) as lib:
        handle = lib.VSIFOpenExL(name.encode(), b"rb", 1)
        if not handle:
            reason = _reason(lib)
            if not reason or "404" in reason or "No such file" in reason:
                raise FileNotFoundError(f"{name} does not exist")
            raise OSError(f"cannot open {name} ({reason[:200]})")
        try:
            return bytes(read(handle))
        finally:
            lib.VSIFCloseL(handle)


def read(name: str, settings: Settings) -> bytes:
    """The bytes of the small file GDAL names *name* (``/vsizip/...``, ``/vsis3/...``), read in
    the GDAL configuration of *settings*: ``FileNotFoundError`` when it is absent, another
    ``OSError`` when it cannot be read or is over :data:`MAX_METADATA_BYTES`."""

    def read(handle: Any) -> bytes:
        lib = _gdal()
        chunks: list[bytes] = []
        buffer = ctypes.create_string_buffer(1 << 20)
        total = 0
        while True:
            count = lib.VSIFReadL(buffer, 1, len(buffer), handle)
            chunks.append(buffer.raw[:count])
            total += count
            if total > MAX_METADATA_BYTES:
                raise OSError(f"{name} is over {MAX_METADATA_BYTES >> 20} MiB: not metadata")
            if count < len(buffer):
                if not lib.VSIFEofL(handle):
                    raise OSError(f"reading {name} failed after {total} bytes")
                return b"".join(chunks)

    return open_and(name, settings, read)


def listdir(name: str, settings: Settings) -> list[str] | None:
    """The entries of the folder (or zip root) GDAL names *name*; None when it is not one
    (a corrupt zip, no such path)."""
    with _Quiet(settings) as lib:
        entries = lib.VSIReadDir(name.encode())
        if not entries:
            return None
        try:
            names = []
            index = 0
            while entries[index] is not None:
                names.append(bytes(entries[index]).decode(errors="replace"))
                index += 1
            return names
        finally:
            lib.CSLDestroy(entries)
