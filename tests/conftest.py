"""Shared fixtures: the embedded sample, real data when present, synthetic products, servers.

Helpers live in ``tests/support`` (importable as ``support``: pytest puts ``tests/`` on
``sys.path`` for this conftest). Servers are real processes/threads on 127.0.0.1 so that tests
go through the same HTTP, STAC and GDAL code paths as production against CDSE.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from component.core.settings import LOCAL_HREF_ROOTS_ENV
from support.s3 import S3Server, start_s3_server
from support.stac_api import StacApiServer, start_stac_api
from support.synthetic import make_l1c_product

REPO_ROOT = Path(__file__).resolve().parent.parent

# The loopback STAC APIs serve items whose assets are local files (the test products): an
# operator's opt-in, as for an API indexing a shared mount. Subprocesses inherit it;
# tests of the default refusal remove it (tests/io/test_trust.py).
os.environ.setdefault(
    LOCAL_HREF_ROOTS_ENV, os.pathsep.join([tempfile.gettempdir(), str(REPO_ROOT)])
)


@pytest.fixture(scope="session")
def sample_item_path() -> Path:
    """The embedded real L1C sample item (relative hrefs next to it)."""
    from component.sample import item_path

    return item_path()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``../shared/data`` next to the checkout; tests skip when it is absent (fresh clones)."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real shared data not available at {path}")
    return path


@pytest.fixture
def l1c_product(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Factory writing synthetic L1C products under ``tmp_path``; returns the STAC item dict.

    Keyword arguments are those of ``support.synthetic.make_l1c_product``; pass ``root`` to
    choose the folder (default: a fresh ``tmp_path/l1c-N``).
    """
    counter = iter(range(1_000_000))

    def factory(root: Path | None = None, **kwargs: Any) -> dict[str, Any]:
        target = root if root is not None else tmp_path / f"l1c-{next(counter)}"
        target.mkdir(parents=True, exist_ok=True)
        return make_l1c_product(target, **kwargs)

    return factory


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server for the session, bucket ``eodata``; use distinct keys per test.

    ``s3_server.gdal_env()`` is the CDSE-style GDAL configuration, ``s3_server.rasterio_env()``
    a ready ``rasterio.Env``, ``s3_server.upload_tree(root, prefix)`` uploads a product.
    """
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def stac_api() -> Iterator[Callable[..., str]]:
    """Factory: ``stac_api(items, collection_id="sentinel-2-l1c") -> root URL``.

    Each call starts a ``rustac serve`` process (about 0.1 s) seeded with the items; all are
    stopped at teardown. See ``support.stac_api`` for what the server supports.
    """
    servers: list[StacApiServer] = []

    def factory(items: list[dict[str, Any]], **kwargs: Any) -> str:
        server = start_stac_api(items, **kwargs)
        servers.append(server)
        return server.url

    yield factory
    for server in servers:
        server.stop()
