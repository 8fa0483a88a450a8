"""Faults of the output's environment, named for what they are: exit code 9, one line.

A full disk, a quota, a read-only or vanished mount, missing permissions, or an ``--output``
that is a file are not bugs of the component and not faults of an input: they fail every item
the same way, and the user's fix is on the machine (free space, remount, another
``--output``). :func:`environment_fault` recognises them in an ``OSError`` (by its errno) or in
a GDAL/rasterio error (by its message: GDAL's ``Write failed`` carries no errno, so the free
space of the output's device decides whether it is a full disk), and turns them into an
:class:`~component.errors.OutputError` whose message says what happened and what to do.
:func:`check_output` refuses an unusable ``--output`` before anything is read or loaded.

Errors that could come from reading an input (``EACCES``, ``EPERM``, ``EIO`` ...) count only
when they name a file under the output folder; ``ENOSPC``, ``EDQUOT``, ``EROFS`` and ``EFBIG``
are write errors wherever they come from (a full ``/tmp`` fails every item as well).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from component.errors import OutputError

LOW_SPACE_BYTES = 64 << 20
"""A GDAL write failure on a device with less than this free is a full disk: a write fails
when the space is used up, and one strip of a 10 m band is 11 MB."""

_WRITE_ANYWHERE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_WRITE_UNDER_OUTPUT = {errno.EACCES, errno.EPERM, errno.EIO, errno.ESTALE, errno.ENOTCONN}

_GDAL_MESSAGES = (
    # (text in a GDAL/rasterio message, lower case) -> errno it stands for
    ("no space left on device", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT),
    ("read-only file system", errno.EROFS),
    ("file too large", errno.EFBIG),
)
_GDAL_WRITE_FAILURES = (
    "write failed",
    "write error",
    "error writing",
    "failed to write",
    "cannot write",
    "short write",
)


def environment_fault(error: BaseException, output: Path) -> OutputError | None:
    """The :class:`OutputError` *error* stands for (a fault of the output's environment), or
    ``None`` when it is something else (a bug, an input's fault)."""
    if isinstance(error, OutputError):
        return error
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno is not None:
            where = _path_of(link)
            if link.errno in _WRITE_ANYWHERE or (
                link.errno in _WRITE_UNDER_OUTPUT and where is not None and _under(where, output)
            ):
                # The message says what ENOSPC... is; strerror adds to the others only.
                said = "" if link.errno in _WRITE_ANYWHERE else (link.strerror or "")
                return OutputError(_message(link.errno, output, where, said))
    gdal = [link for link in _chain(error) if type(link).__module__.startswith("rasterio")]
    if not gdal:
        return None
    texts = [str(link) for link in gdal]
    for needle, code in _GDAL_MESSAGES:
        for text in texts:
            if needle in text.lower():
                return OutputError(_message(code, output, None, _first_line(text)))
    for text in texts:
        if "permission denied" in text.lower() and str(output.resolve()) in text:
            return OutputError(_message(errno.EACCES, output, None, _first_line(text)))
    if any(needle in text.lower() for text in texts for needle in _GDAL_WRITE_FAILURES):
        detail = _first_line(texts[-1])  # the deepest: GDAL's own words
        if _free_bytes(output) < LOW_SPACE_BYTES:
            return OutputError(_message(errno.ENOSPC, output, None, detail))
        return OutputError(
            f"writing into {output} failed ({detail}): check the device holding it (space, "
            "quota, errors) or choose another --output"
        )
    return None


def check_output(output: Path) -> None:
    """Refuse an ``--output`` that cannot be a writable folder, before any work starts.

    Nothing is created: a file in its place, a file where one of its parents should be, a
    read-only file system or a folder without write permission is one line, exit 9.
    """
    if output.exists() and not output.is_dir():
        raise OutputError(
            f"--output {output} is a file, not a folder: remove it or choose another --output"
        )
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"--output {output} cannot be created: {existing} is a file, not a folder: choose "
            "another --output"
        )
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise OutputError(_message(errno.EROFS, output, existing, ""))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(_message(errno.EACCES, output, existing, ""))


def _message(code: int, output: Path, where: Path | None, detail: str) -> str:
    parts = [str(where)] if where is not None and where != output else []
    parts += [detail] if detail else []
    said = f" ({': '.join(parts)})" if parts else ""
    holding = _holding(output, where)
    if code == errno.ENOSPC:
        return (
            f"no space left on the device holding {holding}{said}: free space or choose "
            "another --output"
        )
    if code == errno.EDQUOT:
        return (
            f"disk quota exceeded on the device holding {holding}{said}: free space, raise the "
            "quota or choose another --output"
        )
    if code == errno.EFBIG:
        return (
            f"a file is too large for the file system holding {holding}{said}: choose an "
            "--output on another file system"
        )
    if code == errno.EROFS:
        return (
            f"{holding} is on a read-only file system{said}: remount it read-write or choose "
            "another --output"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"no permission to write into {output}{said}: fix its permissions or choose "
            "another --output"
        )
    return (
        f"the file system holding {output} failed{said}: check the device or mount, or choose "
        "another --output"
    )


def _holding(output: Path, where: Path | None) -> str:
    """The output (or a folder on its way), or the other folder a write failed in (``/tmp``)."""
    if where is None or _under(where, output) or _under(output, where):
        return str(output)
    return str(where.parent)


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and all(link is not other for other in seen) and len(seen) < 16:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


def _path_of(error: OSError) -> Path | None:
    name = error.filename if error.filename is not None else error.filename2
    if name is None or isinstance(name, int):
        return None
    return Path(os.fsdecode(name))


def _under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError, RuntimeError):
        return False


def _free_bytes(output: Path) -> int:
    try:
        stat = os.statvfs(output)
    except OSError:
        return LOW_SPACE_BYTES
    return stat.f_bavail * stat.f_frsize


def _first_line(text: str) -> str:
    """GDAL's words, on one line, short."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return "GDAL: " + (line if len(line) <= 200 else f"{line[:197]}...")
