"""A real STAC API on loopback: ``rustac serve`` with its in-memory backend.

Tests of the search stage talk HTTP to this server through pystac-client, exactly as production
talks to ``https://stac.dataspace.copernicus.eu/v1/``. What rustac 0.9 (server "stac-server-rs")
supports, checked against the running server:

- conformance: core, ogcapi-features, collections, item-search. No query, filter, sort or fields
  conformance classes, so pystac-client warns ``DoesNotConformTo`` for those parameters.
- ``/search`` GET and POST: ``bbox``, ``intersects``, ``datetime`` (instant or interval),
  ``collections``, ``ids``, ``limit``. Paging works with ``next`` links carrying a ``skip``
  token (POST: in the link body), so pystac-client's ``items()``/``pages()`` walk all pages.
- ``query`` (Query extension): ignored on GET, and on POST it matches NOTHING (empty result).
- ``filter`` (CQL2 text or JSON): matches nothing. ``sortby``: ignored (insertion order).
  So cloud-cover filtering cannot be tested server-side here; the component must not rely on it
  being applied (CDSE does apply it) or must filter again client-side.
- GET paging combined with ``collections`` fails with HTTP 500 ("unsupported value") on the
  second page; POST (pystac-client's default when the API advertises POST search) is fine.
- Items are served with their own ``links`` plus root/self/parent/collection links added; asset
  hrefs are served verbatim, so seed absolute hrefs (relative ones would resolve against the API).
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["StacApiServer", "absolute_hrefs", "start_stac_api"]


def _rustac_executable() -> str:
    """The ``rustac`` CLI of the running interpreter's environment (venvs are not on PATH)."""
    candidate = Path(sys.executable).parent / "rustac"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("rustac")
    if found is None:
        raise FileNotFoundError("rustac CLI not found: pip install rustac")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def absolute_hrefs(item: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Copy of ``item`` whose relative asset hrefs are made absolute paths under ``base_dir``.

    Needed to serve the embedded sample item (relative hrefs) through the API.
    """
    out = copy.deepcopy(item)
    for asset in out.get("assets", {}).values():
        href = asset["href"]
        if "://" not in href and not Path(href).is_absolute():
            asset["href"] = str((Path(base_dir) / href).resolve())
    return out


def _collection(collection_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal valid collection whose extent covers ``items``."""
    bboxes = [i["bbox"] for i in items if i.get("bbox")] or [[-180.0, -90.0, 180.0, 90.0]]
    times = sorted(i["properties"].get("datetime") for i in items) or [None]
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": collection_id,
        "description": f"Test collection {collection_id}",
        "license": "other",
        "extent": {
            "spatial": {
                "bbox": [
                    [
                        min(b[0] for b in bboxes),
                        min(b[1] for b in bboxes),
                        max(b[2] for b in bboxes),
                        max(b[3] for b in bboxes),
                    ]
                ]
            },
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "links": [],
    }


@dataclass
class StacApiServer:
    """A running ``rustac serve`` process; ``url`` is the API root (``http://127.0.0.1:PORT/``)."""

    url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    _own_workdir: bool = field(default=False, repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server and wait for it (idempotent); kill it if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> StacApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "collections", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    return False


def start_stac_api(
    items: Iterable[dict[str, Any]],
    *,
    collection_id: str = "sentinel-2-l1c",
    workdir: Path | None = None,
    timeout: float = 30.0,
) -> StacApiServer:
    """Serve ``items`` in collection ``collection_id`` on a free loopback port.

    Items keep their own ``collection`` when they have one (extra collections are created), else
    they are put in ``collection_id``. Blocks until the API answers; raises RuntimeError with the
    server's output if it does not start (a port taken in the meantime is retried).
    """
    seeded = [copy.deepcopy(i) for i in items]
    for item in seeded:
        item.setdefault("collection", collection_id)
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="stac-api-")) if workdir is None else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    collection_file = work / "collection.json"
    collection_file.write_text(
        json.dumps(
            _collection(collection_id, [i for i in seeded if i["collection"] == collection_id])
        )
    )
    items_file = work / "items.json"
    items_file.write_text(json.dumps({"type": "FeatureCollection", "features": seeded}))
    log_path = work / "rustac.log"
    for _attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    _rustac_executable(),
                    "serve",
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--create-collections",
                    str(collection_file),
                    str(items_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if _wait_ready(url, process, timeout):
            return StacApiServer(url=url, process=process, workdir=work, _own_workdir=own)
        StacApiServer(url=url, process=process, workdir=work).stop()
    raise RuntimeError(f"rustac serve did not start: {log_path.read_text(errors='replace')}")
