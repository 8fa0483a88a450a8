"""CDSE production faults: 429/5xx, stalls and dropped connections on the STAC API and on S3.

A fault-injecting proxy (``support.faults``) sits between the component and the loopback STAC
API (rustac) or S3 server (moto): the component talks HTTP to it as to CDSE, and GDAL reads
``s3://`` assets through ``/vsis3`` with CDSE's settings (only the endpoint and TLS differ).
Retry budgets are lowered through the environment so that each test takes seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from component import cli
from support.faults import Fault, FaultProxy
from support.nrt import (
    catalog_problems,
    items_in_process,  # noqa: F401 (fixture)
    linked_ids,
    models_dir,  # noqa: F401 (fixture)
    nrt_models,  # noqa: F401 (fixture)
)
from support.s3 import S3Server
from support.synthetic import cdse_s3_base

SIZE_10M = 192
SECRET = "nrt-S3cr3t-7f3a9c1e-do-not-log"
ACCESS_KEY = "nrt-access-key-5b2d"


@pytest.fixture
def fast_stac_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small STAC retry budget: 0.3 s per wait at most, 0.5 s timeout, 3 retries."""
    monkeypatch.setenv("COMPONENT_STAC_BACKOFF_MAX_S", "0.3")
    monkeypatch.setenv("COMPONENT_STAC_TIMEOUT_S", "0.5")
    monkeypatch.setenv("COMPONENT_STAC_RETRIES", "3")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = cli.main(["run", "--device", "cpu", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


@pytest.mark.usefixtures("nrt_models", "items_in_process", "fast_stac_budget")
def test_stac_api_429_503_resets_and_stalls_are_retried_and_cloudy_items_skipped(
    l1c_product: Callable[..., dict[str, Any]],
    stac_api: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clear = l1c_product(size_10m=SIZE_10M, seed=21, cloud_cover=5.0, relative_orbit=1)
    cloudy = l1c_product(size_10m=SIZE_10M, seed=22, cloud_cover=80.0, relative_orbit=2)
    upstream = stac_api([clear, cloudy]).split("//")[1].rstrip("/")
    faults = [
        Fault("status", count=2, status=429, retry_after=1),  # capped to 0.3 s
        Fault("status", count=1, status=503),
        Fault("reset", count=1, method="POST"),
        Fault("delay", count=1, delay_s=2.0, method="POST"),  # beyond the 0.5 s timeout
        Fault("status", count=1, status=502, method="POST"),
    ]
    with FaultProxy(upstream, faults) as proxy:
        started = time.monotonic()
        code, summary, _ = _run(
            capsys,
            "--stac-url",
            proxy.url,
            "--bbox",
            ",".join(map(str, clear["bbox"])),
            "--datetime",
            "2024-01-15/2024-01-17",
            "--max-cloud-cover",
            "50",
            "--output",
            str(tmp_path / "out"),
        )
        elapsed = time.monotonic() - started
        actions = proxy.actions()
    assert code == 0, summary
    assert [a for a in actions if a != "forward"] == [
        "status 429",
        "status 429",
        "status 503",
        "reset",
        "delay",
        "status 502",
    ]
    assert actions[-1] == "forward"
    assert elapsed < 30
    assert summary["found"] == 2
    assert (
        len(summary["processed"]) == 1
        and clear["id"].replace("L1C", "L2A") in (summary["processed"][0])
    )
    assert summary["skipped"][0]["reason"] == ("eo:cloud_cover 80 % is over --max-cloud-cover 50 %")
    assert catalog_problems(tmp_path / "out") == []


@pytest.mark.usefixtures("fast_stac_budget")
def test_a_stac_api_that_keeps_failing_fails_the_run_within_its_budget(
    stac_api: Callable[..., str],
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream = stac_api([l1c_product(size_10m=SIZE_10M)]).split("//")[1].rstrip("/")
    with FaultProxy(upstream, [Fault("status", count=-1, status=503)]) as proxy:
        started = time.monotonic()
        code, _, err = _run(
            capsys, "--stac-url", proxy.url, "--bbox", "0,43,1,44", "--output", str(tmp_path)
        )
        elapsed = time.monotonic() - started
        assert proxy.actions() == ["status 503"] * 4  # the request and its 3 retries
    assert code == 6
    assert "STAC API" in err and "retry later" in err
    assert elapsed < 10
    assert not (tmp_path / "catalog.json").exists()


@pytest.mark.usefixtures("nrt_models", "items_in_process")
def test_s3_faults_are_retried_a_persistent_one_fails_only_its_item_and_no_secret_leaks(
    s3_server: S3Server,
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    date = datetime(2024, 1, 16, 10, 53, 29, tzinfo=timezone.utc)
    base = cdse_s3_base(date).replace("s3://eodata/", f"s3://eodata/nrt-{tmp_path.name}/")
    prefix = base.removeprefix("s3://eodata/")
    items = []
    for seed in (31, 32):
        root = tmp_path / f"l1c-{seed}"
        item = l1c_product(
            root=root, size_10m=SIZE_10M, seed=seed, href_base=base, relative_orbit=seed
        )
        s3_server.upload_tree(root, prefix)
        path = tmp_path / f"item-{seed}.json"
        path.write_text(json.dumps(item))
        items.append((item, path))
    (healthy, healthy_path), (broken, broken_path) = items
    # Request paths are /eodata/<key>: match on the key, unique to each product.
    healthy_b02 = healthy["assets"]["B02"]["href"].removeprefix("s3://eodata")
    healthy_b04 = healthy["assets"]["B04"]["href"].removeprefix("s3://eodata")
    broken_b03 = broken["assets"]["B03"]["href"].removeprefix("s3://eodata")
    faults = [  # GDAL_HTTP_MAX_RETRY=3: three failures, then the fourth attempt succeeds
        Fault("status", count=1, status=503, path_contains=healthy_b02),
        Fault("reset", count=1, path_contains=healthy_b02),
        Fault("delay", count=1, delay_s=3.0, path_contains=healthy_b02),  # > GDAL_HTTP_TIMEOUT
        Fault("status", count=2, status=429, retry_after=1, path_contains=healthy_b04),
        Fault("status", count=-1, status=503, path_contains=broken_b03),
    ]
    with FaultProxy(s3_server.endpoint, faults) as proxy:
        for key, value in {
            "AWS_S3_ENDPOINT": proxy.address,
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_DEFAULT_REGION": "default",
            "GDAL_HTTP_MAX_RETRY": "3",
            "GDAL_HTTP_RETRY_DELAY": "0.1",
            "GDAL_HTTP_TIMEOUT": "1",
            # Placeholders, replaced by the secret inputs below and restored afterwards.
            "AWS_ACCESS_KEY_ID": "placeholder",
            "AWS_SECRET_ACCESS_KEY": "placeholder",
        }.items():
            monkeypatch.setenv(key, value)
        caplog.set_level("DEBUG")
        output = tmp_path / "out"
        capfd.readouterr()
        code = cli.main(
            [
                "-v",
                "run",
                "--device",
                "cpu",
                "--item",
                str(healthy_path),
                "--item",
                str(broken_path),
                "--output",
                str(output),
                "--s3-access-key-id",
                ACCESS_KEY,
                "--s3-secret-access-key",
                SECRET,
            ]
        )
        captured = capfd.readouterr()
        healthy_actions = proxy.actions(healthy_b02)
        quota_actions = proxy.actions(healthy_b04)
        broken_actions = proxy.actions(broken_b03)

    assert code == 10, captured.err
    summary = json.loads(captured.out)
    results = {entry["input_id"]: entry for entry in summary["items"]}
    assert results[healthy["id"]]["status"] == "processed"
    assert results[broken["id"]]["status"] == "failed"
    assert results[broken["id"]]["exit_code"] == 5
    assert "B03" in results[broken["id"]]["reason"]
    assert summary["failed"] == [{"id": broken["id"], "reason": results[broken["id"]]["reason"]}]
    # GDAL retried the transient faults, then read the file; it gave the broken one up.
    assert healthy_actions[:4] == ["status 503", "reset", "delay", "forward"]
    assert quota_actions[:3] == ["status 429", "status 429", "forward"]
    assert "forward" in healthy_actions
    assert broken_actions == ["status 503"] * 4
    assert linked_ids(output) == [results[healthy["id"]]["output_id"]]
    assert catalog_problems(output) == []

    # The keys appear nowhere: not in stdout, stderr (GDAL's included), the debug logs with
    # their failing URLs, or any output file.
    for key in (SECRET, ACCESS_KEY):
        assert all(key not in text for text in (captured.out, captured.err, caplog.text)), key
        for path in output.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path


def test_retry_after_is_honoured_on_post_search_and_capped(
    stac_api: Callable[..., str],
    l1c_product: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CDSE's 429 says when to come back: wait that long, but never past the budget's cap."""
    from component.core.settings import Settings
    from component.io.search import search
    from component.params import SearchParams

    item = l1c_product(size_10m=SIZE_10M)
    upstream = stac_api([item]).split("//")[1].rstrip("/")
    with FaultProxy(upstream) as proxy:
        params = SearchParams(stac_url=proxy.url, bbox=tuple(item["bbox"]))
        proxy.add(Fault("status", count=1, status=429, retry_after=1, method="POST"))
        started = time.monotonic()
        assert len(search(params, Settings.from_environ())) == 1
        assert time.monotonic() - started >= 0.95  # waited the full Retry-After

        monkeypatch.setenv("COMPONENT_STAC_BACKOFF_MAX_S", "0.2")
        proxy.add(Fault("status", count=1, status=429, retry_after=3600, method="POST"))
        started = time.monotonic()
        assert len(search(params, Settings.from_environ())) == 1
        assert time.monotonic() - started < 5  # not an hour
        assert proxy.actions("/search") == ["status 429", "forward", "status 429", "forward"]
