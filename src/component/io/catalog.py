"""The output folder is a static STAC catalog, and it is the only state a run keeps.

Layout::

    OUTPUT/catalog.json                 root catalog, one item link per product
    OUTPUT/<item id>/<item id>.json     the product's STAC Item (relative asset hrefs)
    OUTPUT/<item id>/*.tif, *.png       its assets
    OUTPUT/.staging/                    products being written (never linked)
    OUTPUT/.lock                        held by the run that writes here
    OUTPUT/run-summary.json             what the last run found, processed, skipped, failed

A product is written into ``.staging`` and moved into place with one ``rename`` once it is
complete, so a reader (or the next run) sees it whole or not at all, whatever moment the
process dies at. ``catalog.json`` is then rebuilt from the product folders and replaced
atomically: it is derived state, so it can never disagree with what is on disk for long,
and a killed run leaves the previous valid catalog in place. It is rebuilt at the start of a
run (a product published by a run killed before its catalog update is linked then) and after
each publish (a long run killed half-way keeps what it finished).

Scheduled runs may overlap when one overruns its slot: the second waits for the first's lock
for a bounded time (``COMPONENT_LOCK_TIMEOUT_S``, default 600 s) and then skips what the first
published; past the timeout it fails with exit code 9. ``0`` restores fail-fast.

A full disk, a read-only mount or missing permissions are exit code 9 too, in one line
(:mod:`component.io.output_faults`): a failed write leaves the previous ``catalog.json`` in
place, and what was staged is discarded (or, on a file system gone read-only, cleared by the
next run).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pystac

from component.core.files import multihash_sha256
from component.core.settings import LOCK_TIMEOUT_ENV
from component.errors import OutputError
from component.io.output_faults import environment_fault

CATALOG_ID = "s2-l1c2l2a"
CATALOG_DESCRIPTION = "Sentinel-2 L2A bottom-of-atmosphere reflectance predicted from L1C"
STAGING = ".staging"
LOCK = ".lock"
_LOCK_POLL_S = 0.2
PAUSE_ENV = "COMPONENT_TEST_PAUSE_AT"
PAUSE_MARKER_ENV = "COMPONENT_TEST_PAUSE_MARKER"
_PAUSE_MAX_S = 300.0

log = logging.getLogger(__name__)


def pause_point(stage: str) -> None:
    """Test seam for the crash tests (``tests/test_kill.py``); a no-op in production.

    When ``COMPONENT_TEST_PAUSE_AT`` equals *stage*, write this process's id into the file named
    by ``COMPONENT_TEST_PAUSE_MARKER`` and sleep until that file is deleted (at most 300 s), so
    that a test can SIGKILL the run at a known moment, or let it go on. Stages: ``staged``
    (staging folder made, nothing read), then each stage the pipeline times, once finished:
    ``read`` (asset headers checked, grids and geometry known), ``decode`` (every band decoded
    once, its DN on scratch in staging), ``estimate`` (the atmosphere estimated), ``correct``
    (every raster corrected and drafted into staging, some COGs finished), ``write`` (COGs
    finished in staging), ``describe`` (Item staged),
    ``publish`` (product moved into place, catalog not yet updated), and ``catalog`` (the new
    catalog.json written beside the old one, not yet renamed over it).
    """
    if os.environ.get(PAUSE_ENV) != stage:
        return
    marker = Path(os.environ[PAUSE_MARKER_ENV])
    written = marker.with_name(f".{marker.name}.tmp")
    written.write_text(str(os.getpid()))
    written.replace(marker)  # whole: a waiting test never reads it half-written
    deadline = time.monotonic() + _PAUSE_MAX_S
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def item_path(output: Path, item_id: str) -> Path:
    return output / item_id / f"{item_id}.json"


def verify_product(output: Path, item_id: str) -> str | None:
    """``None`` if the product exists and every asset matches its checksum, else the reason."""
    path = item_path(output, item_id)
    if not path.is_file():
        return "absent"
    try:
        item = json.loads(path.read_text())
    except (OSError, ValueError):
        return "item JSON unreadable"
    for key, asset in item.get("assets", {}).items():
        file = (path.parent / asset.get("href", "")).resolve()
        if not file.is_file():
            return f"asset {key} missing"
        if asset.get("file:size") != file.stat().st_size:
            return f"asset {key} has the wrong size"
        if asset.get("file:checksum") != multihash_sha256(file):
            return f"asset {key} fails its checksum"
    return None


@contextlib.contextmanager
def locked(output: Path, timeout_s: float) -> Iterator[None]:
    """Hold the output folder for this run, waiting at most *timeout_s* for another run.

    Why wait rather than fail at once: scheduled runs fire every few hours and one that
    overruns its slot (a slow S3 day, retries) must not turn the next one into an alert; the
    next run waits, then finds the overrunning run's products published and skips them. The
    wait is bounded (*timeout_s*: ``COMPONENT_LOCK_TIMEOUT_S``, default 600 s) so that a hung
    run is still reported, with exit code 9. ``flock`` is released by the kernel when the
    process dies, even by SIGKILL, so a crashed run never leaves a stale lock behind.
    """
    timeout = timeout_s
    try:
        output.mkdir(parents=True, exist_ok=True)
        handle = (output / LOCK).open("a+")
    except OSError as error:
        fault = environment_fault(error, output)
        raise fault or OutputError(
            f"cannot write to {output} ({error.strerror}): choose a writable --output"
        ) from None
    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise OutputError(
                    f"another run is writing to {output} (waited {timeout:g} s, "
                    f"{LOCK_TIMEOUT_ENV}): wait for it to finish or use another --output"
                ) from None
            if not waiting:
                waiting = True
                log.warning(
                    "another run is writing to %s: waiting up to %g s for it", output, timeout
                )
            time.sleep(_LOCK_POLL_S)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def new_staging_folder(output: Path, item_id: str) -> Path:
    folder = output / STAGING / f"{item_id}.{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return folder


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def clear_staging(output: Path) -> None:
    """Leftovers of killed runs: never part of the catalog, safe to delete under the lock.

    That is the staging folder and the temporary files of :func:`write_json_atomic`.
    """
    shutil.rmtree(output / STAGING, ignore_errors=True)
    for leftover in output.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def publish(output: Path, staged: Path, item_id: str) -> Path:
    """Move a complete staged product into place (replacing an invalid earlier one)."""
    target = output / item_id
    if target.exists():
        trash = output / STAGING / f"{item_id}.replaced.{uuid.uuid4().hex[:8]}"
        target.rename(trash)
        staged.rename(target)
        discard(trash)
    else:
        staged.rename(target)
    _fsync_dir(output)
    return item_path(output, item_id)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: object, stage: str | None = None) -> None:
    """Write to a temporary file beside *path*, fsync, then rename over it.

    *stage* names a :func:`pause_point` between the write and the rename. A write that fails
    (no space left) removes its temporary file and leaves *path* as it was.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("w") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:  # a full disk: no half-written file left beside *path*
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    if stage is not None:
        pause_point(stage)
    temporary.replace(path)
    _fsync_dir(path.parent)


def rebuild(output: Path) -> Path:
    """Rewrite ``catalog.json`` so that it links exactly the published products."""
    catalog = pystac.Catalog(id=CATALOG_ID, description=CATALOG_DESCRIPTION)
    links = []
    for folder in sorted(p for p in output.iterdir() if p.is_dir() and p.name[0] != "."):
        path = item_path(output, folder.name)
        if path.is_file():
            links.append(
                {"rel": "item", "href": f"./{folder.name}/{path.name}", "type": "application/json"}
            )
    data = catalog.to_dict(include_self_link=False)
    data["links"] = [
        {"rel": "root", "href": "./catalog.json", "type": "application/json"},
        *links,
    ]
    target = output / "catalog.json"
    try:
        unchanged = json.loads(target.read_text()) == data
    except (OSError, ValueError):
        unchanged = False
    if not unchanged:  # a run that only skips leaves the catalog (and its mtime) alone
        write_json_atomic(target, data, stage="catalog")
    return target


def add_parent_links(item: pystac.Item) -> None:
    """Links from a product's Item back to the catalog (relative, so the folder can move)."""
    for rel in ("root", "parent"):
        item.add_link(pystac.Link(rel=rel, target="../catalog.json", media_type="application/json"))
