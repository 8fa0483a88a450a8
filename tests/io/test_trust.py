"""Untrusted item fields, contained: ids that cannot name a folder outside ``--output``, hrefs
that cannot make a run contact a host the input did not come from or read local files for a
remote document. The end-to-end cases run the real CLI against a loopback HTTP server that
serves the items and a loopback listener that must receive nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from component.core.settings import LOCAL_HREF_ROOTS_ENV
from component.errors import InvalidItemError
from component.io.trust import check_href, product_id
from support.nrt import models_dir  # noqa: F401 (fixture)
from support.synthetic import make_l1c_product

REPO_ROOT = Path(__file__).resolve().parents[2]
REMOTE = "https://stac.example.org/collections/s2/items/x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("S2B_MSIL1C_20240116T105329_N0510_R051_T31TCJ_20240116T114033", None),
        ("S2B_MSIL1C_20240116T105329_N0510_R051_T31TCJ_20240116T114033.SAFE", "drop"),
        ("item-1.v2", None),
    ],
)
def test_product_ids_that_can_name_a_folder(value: str, expected: str | None) -> None:
    assert product_id(value) == (value.removesuffix(".SAFE") if expected else value)


@pytest.mark.parametrize(
    "value",
    ["../../x", "/abs/path", "a/../../b", "..", ".hidden", "a b", "x" * 201, "", None, "a\\b"],
)
def test_ids_that_could_escape_the_output_are_refused(value: Any) -> None:
    with pytest.raises(InvalidItemError, match="cannot name a product"):
        product_id(value)


@pytest.mark.parametrize(
    ("href", "origin"),
    [
        ("s3://eodata/Sentinel-2/MSI/L1C/B02.jp2", REMOTE),
        ("https://data.example.org/B02.jp2", REMOTE),
        ("../B02.jp2", REMOTE),  # resolved on the document's own host
        ("http://stac.example.org/B02.jp2", "http://stac.example.org/items/x"),
        ("http://127.0.0.1:9/B02.jp2", "http://127.0.0.1:9/items/x.json"),
        ("B02.jp2", "s3://bucket/items/x.json"),
        ("s3://other/B02.jp2", "s3://bucket/items/x.json"),
        ("/data/S2/B02.jp2", "/data/S2/item.json"),  # a local document may name local files
        ("file:///data/S2/B02.jp2", None),
        ("http://127.0.0.1:9/B02.jp2", "/data/item.json"),
        ("C:/data/B02.jp2", None),
    ],
)
def test_hrefs_the_origin_allows(href: str, origin: str | None) -> None:
    check_href(href, origin)


@pytest.mark.parametrize(
    ("href", "origin", "why"),
    [
        ("/vsicurl/http://127.0.0.1:9/x.jp2", REMOTE, "GDAL virtual file"),
        ("/vsicurl/http://127.0.0.1:9/x.jp2", "/data/item.json", "GDAL virtual file"),
        ("/VSIS3/bucket/x.jp2", None, "GDAL virtual file"),
        ('ZARR:"/data/x.zarr":/b02', None, "not a data location"),
        ("vrt:///vsicurl/http://x/y.tif", None, "not a data location"),
        ("ftp://example.org/x.jp2", REMOTE, "not a data location"),
        ("/etc/passwd", REMOTE, "may not name local files"),
        ("file:///etc/passwd", REMOTE, "may not name local files"),
        ("file:///etc/passwd", "s3://bucket/item.json", "may not name local files"),
        ("http://169.254.169.254/latest/meta-data/", REMOTE, "plain http"),
        ("https://169.254.169.254/latest/meta-data/", REMOTE, "internal address"),
        ("https://127.0.0.1:8443/x.jp2", REMOTE, "internal address"),
        ("https://10.0.0.7/x.jp2", REMOTE, "internal address"),
        ("https://localhost/x.jp2", REMOTE, "internal address"),
        ("https://[::1]/x.jp2", REMOTE, "internal address"),
        ("//127.0.0.1:9/x.jp2", REMOTE, "may not name local files"),
        ("../../x.jp2", "s3://bucket/a/item.json", None),  # stays in the bucket: allowed
    ],
)
def test_hrefs_the_origin_does_not_allow(href: str, origin: str | None, why: str | None) -> None:
    if why is None:
        check_href(href, origin)
        return
    with pytest.raises(InvalidItemError, match=why):
        check_href(href, origin)


def test_a_remote_document_names_local_files_only_under_the_operator_roots(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "eodata"
    (shared / "S2").mkdir(parents=True)
    (tmp_path / "eodata-other").mkdir()
    inside = str(shared / "S2" / "B02.jp2")
    check_href(inside, REMOTE, local_roots=[str(shared)])
    for outside in (
        str(tmp_path / "eodata-other" / "B02.jp2"),  # a sibling sharing the prefix
        str(shared / ".." / "secret.txt"),
        "/etc/passwd",
    ):
        with pytest.raises(InvalidItemError, match="may not name local files"):
            check_href(outside, REMOTE, local_roots=[str(shared)])
    (shared / "S2" / "link").symlink_to("/etc")
    with pytest.raises(InvalidItemError, match="may not name local files"):
        check_href(str(shared / "S2" / "link" / "passwd"), REMOTE, local_roots=[str(shared)])


class _Listener:
    """A loopback TCP listener that counts the connections it receives."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port = int(self.socket.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@pytest.fixture(scope="module")
def cases(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,  # noqa: F811
) -> Iterator[tuple[dict[str, subprocess.CompletedProcess[str]], Path, int]]:
    """Every case run once through the CLI, concurrently; the listener's count after."""
    root = tmp_path_factory.mktemp("trust")
    served = root / "served"
    served.mkdir()
    good = make_l1c_product(root / "data", size_10m=60)
    listener = _Listener()
    bait = f"http://127.0.0.1:{listener.port}/B02.jp2"
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def variant(
        name: str, *, item_id: str | None = None, b02: str | None = None, remote: bool = False
    ) -> dict:
        item = json.loads(json.dumps(good))
        if remote:  # served over HTTP: its other assets where a remote item keeps them
            for key, asset in item["assets"].items():
                asset["href"] = f"s3://eodata/{name}/{key}"
        if item_id is not None:
            item["id"] = item_id
        if b02 is not None:
            item["assets"]["B02"]["href"] = b02
        (served / f"{name}.json").write_text(json.dumps(item))
        return item

    variant("escape", item_id="../../escaped")
    variant("escape_inner", item_id="S2B_MSIL1C_x/../../escaped")
    variant("vsicurl", b02=f"/vsicurl/{bait}")
    variant("vsicurl_remote", b02=f"/vsicurl/{bait}", remote=True)
    variant("remote_http_elsewhere", b02=bait, remote=True)
    variant("remote_https_loopback", b02=f"https://127.0.0.1:{listener.port}/B02.jp2", remote=True)
    variant("remote_local_path", b02=good["assets"]["B02"]["href"], remote=True)
    catalog = root / "catalog"
    catalog.mkdir()
    (catalog / "catalog.json").write_text(
        json.dumps(
            {
                "type": "Catalog",
                "stac_version": "1.1.0",
                "id": "c",
                "description": "d",
                "links": [{"rel": "item", "href": f"/vsicurl/{bait}.json"}],
            }
        )
    )
    runs = {
        "escape": ["--item", str(served / "escape.json")],
        "escape_inner": ["--item", str(served / "escape_inner.json")],
        "vsicurl": ["--item", str(served / "vsicurl.json")],
        "vsicurl_remote": ["--item", f"{base}/vsicurl_remote.json"],
        "remote_http_elsewhere": ["--item", f"{base}/remote_http_elsewhere.json"],
        "remote_https_loopback": ["--item", f"{base}/remote_https_loopback.json"],
        "remote_local_path": ["--item", f"{base}/remote_local_path.json"],
        "catalog_vsicurl": ["--catalog", str(catalog)],
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k != LOCAL_HREF_ROOTS_ENV  # the default: no local roots
    }
    env |= {"COMPONENT_MODELS_DIR": str(models_dir), "OMP_NUM_THREADS": "1"}
    processes = {}
    for name, args in runs.items():
        output = root / "runs" / name / "out"
        output.parent.mkdir(parents=True)
        command = [sys.executable, "-m", "component", "run", "--device", "cpu"]
        processes[name] = subprocess.Popen(
            [*command, "--output", str(output), "--resolution", "60", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
    server.shutdown()
    listener.close()
    yield results, root, listener.connections


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("escape", "cannot name a product"),
        ("escape_inner", "cannot name a product"),
        ("vsicurl", "GDAL virtual file"),
        ("vsicurl_remote", "GDAL virtual file"),
        ("remote_http_elsewhere", "plain http"),
        ("remote_https_loopback", "internal address"),
        ("remote_local_path", "may not name local files"),
        ("catalog_vsicurl", "GDAL virtual file"),
    ],
)
def test_each_refused_case_is_a_one_line_exit_4(
    cases: tuple[dict[str, subprocess.CompletedProcess[str]], Path, int], name: str, words: str
) -> None:
    results, root, _ = cases
    run = results[name]
    assert run.returncode == 4, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    output = root / "runs" / name / "out"
    assert not any(output.rglob("*.tif")) if output.exists() else True


def test_nothing_was_written_outside_the_output_and_the_listener_heard_nothing(
    cases: tuple[dict[str, subprocess.CompletedProcess[str]], Path, int],
) -> None:
    results, root, connections = cases
    assert set(results)  # every case ran
    assert not list(root.rglob("escaped*"))
    assert sorted(p.name for p in (root / "runs").iterdir()) == sorted(results)
    for name in results:
        assert [p.name for p in (root / "runs" / name).iterdir()] in (["out"], [])
    assert connections == 0
