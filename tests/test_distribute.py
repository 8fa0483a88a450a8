"""Several items run on a Dask LocalCluster and land in one consistent catalog."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from component.io import catalog
from component.params import RunParams
from component.pipeline import run
from support.nrt import models_dir, nrt_models  # noqa: F401 (fixtures)


@pytest.mark.slow
@pytest.mark.usefixtures("nrt_models")
def test_local_cluster_processes_every_item(
    tmp_path: Path,
    l1c_product: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three items -> three products on a LocalCluster; a re-run skips all three."""
    monkeypatch.setenv("COMPONENT_CACHE_DIR", str(tmp_path / "cache"))
    paths = []
    for day in range(3):
        date = datetime(2024, 1, 16, 10, 53, 29, tzinfo=timezone.utc) + timedelta(days=5 * day)
        item = l1c_product(tmp_path / f"p{day}", size_10m=192, seed=day, date=date)
        path = tmp_path / f"item{day}.json"
        path.write_text(json.dumps(item))
        paths.append(str(path))
    output = tmp_path / "out"
    params = RunParams(output=output, items=tuple(paths), resolution=60)

    summary = run(params)

    assert summary.found == 3 and len(summary.processed) == 3 and not summary.failed
    links = json.loads((output / "catalog.json").read_text())["links"]
    assert sum(link["rel"] == "item" for link in links) == 3
    for item_id in summary.processed:
        assert catalog.verify_product(output, item_id) is None
    assert not list((output / catalog.STAGING).glob("*"))

    again = run(params)
    assert not again.processed and len(again.skipped) == 3
