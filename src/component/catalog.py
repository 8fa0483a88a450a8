"""The output folder is a static STAC catalog, and it is the only state a run keeps.

Layout::

    OUTPUT/catalog.json                 root catalog, one item link per product
    OUTPUT/<item id>/<item id>.json     the product's STAC Item (relative asset hrefs)
    OUTPUT/<item id>/*.tif, *.png       its assets
    OUTPUT/.staging/                    products being written (never linked)
    OUTPUT/.lock                        held by the run that writes here

A product is written into ``.staging`` and moved into place with one ``rename`` once it is
complete, so a reader (or the next run) sees it whole or not at all, whatever moment the
process dies at. ``catalog.json`` is then rebuilt from the product folders and replaced
atomically: it is derived state, so it can never disagree with what is on disk for long,
and a killed run leaves the previous valid catalog in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pystac

from component.describe import multihash_sha256
from component.errors import OutputError

CATALOG_ID = "s2-l1c2l2a"
CATALOG_DESCRIPTION = "Sentinel-2 L2A bottom-of-atmosphere reflectance predicted from L1C"
STAGING = ".staging"
LOCK = ".lock"


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
def locked(output: Path) -> Iterator[None]:
    """Hold the output folder for this run; a second run fails at once with a clear message.

    ``flock`` is released by the kernel when the process dies, even by SIGKILL, so a crashed
    run never leaves a stale lock behind.
    """
    try:
        output.mkdir(parents=True, exist_ok=True)
        handle = (output / LOCK).open("a+")
    except OSError as error:
        raise OutputError(
            f"cannot write to {output} ({error.strerror}): choose a writable --output"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputError(
            f"another run is writing to {output}: wait for it to finish or use another --output"
        ) from None
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
    """Leftovers of killed runs: never part of the catalog, safe to delete under the lock."""
    shutil.rmtree(output / STAGING, ignore_errors=True)


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


def write_json_atomic(path: Path, data: object) -> None:
    """Write to a temporary file beside *path*, fsync, then rename over it."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with temporary.open("w") as stream:
        json.dump(data, stream, indent=2)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    temporary.replace(path)


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
    write_json_atomic(target, data)
    return target


def add_parent_links(item: pystac.Item) -> None:
    """Links from a product's Item back to the catalog (relative, so the folder can move)."""
    for rel in ("root", "parent"):
        item.add_link(pystac.Link(rel=rel, target="../catalog.json", media_type="application/json"))
