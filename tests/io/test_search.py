"""Finding L1C items: STAC API search against a loopback rustac server, and item files."""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from component.core.settings import LOCAL_HREF_ROOTS_ENV, Settings
from component.errors import InvalidItemError, NoItemsFoundError, StacApiError
from component.io.search import read_item, read_items, require_l1c, search
from component.params import SearchParams, parse_bbox, parse_datetime
from support.stac_api import absolute_hrefs
from support.synthetic import make_l1c_product

StacApi = Callable[..., str]
START = datetime(2024, 1, 10, 10, 53, 29, tzinfo=timezone.utc)
# (day offset, cloud cover) of the 31TCJ items; one 33UUU item (the sample) on 2017-02-16.
SCHEDULE = [(0, 5.0), (1, 50.0), (2, 10.0), (3, 80.0), (4, 0.0)]
AREA = "0.498,44.222,0.501,44.224"  # inside the synthetic products (31TCJ's north-west corner)


@pytest.fixture(scope="module")
def base_item(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small synthetic 31TCJ product's item (absolute local hrefs)."""
    return make_l1c_product(tmp_path_factory.mktemp("l1c"), size_10m=60)


SETTINGS = Settings.from_environ({LOCAL_HREF_ROOTS_ENV: os.environ[LOCAL_HREF_ROOTS_ENV]})


def _variant(base: dict[str, Any], day: int, cloud: float) -> dict[str, Any]:
    item = copy.deepcopy(base)
    date = START + timedelta(days=day)
    old = item["id"]
    item["id"] = old.replace("20240116T105329", f"{date:%Y%m%dT%H%M%S}").replace(
        old[-15:], f"{date + timedelta(hours=1):%Y%m%dT%H%M%S}"
    )
    item["properties"]["datetime"] = date.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    item["properties"]["eo:cloud_cover"] = cloud
    return item


@pytest.fixture(scope="module")
def catalog_items(base_item: dict[str, Any], sample_item_path: Path) -> list[dict[str, Any]]:
    """Five 31TCJ items on consecutive days plus the embedded 33UUU sample."""
    items = [_variant(base_item, day, cloud) for day, cloud in SCHEDULE]
    sample = json.loads(sample_item_path.read_text())
    items.append(absolute_hrefs(sample, sample_item_path.parent))
    return items


def params(url: str, **kwargs: Any) -> SearchParams:
    return SearchParams(stac_url=url, **kwargs)


def test_bbox_and_datetime_search(stac_api: StacApi, catalog_items: list[dict[str, Any]]) -> None:
    """bbox and datetime are applied by the API; results come oldest first."""
    url = stac_api(catalog_items)
    found = search(params(url, bbox=parse_bbox(AREA)), SETTINGS)
    assert [f.data["properties"]["datetime"][:10] for f in found] == [
        f"2024-01-{10 + d}" for d, _ in SCHEDULE
    ]
    window = parse_datetime("2024-01-11T00:00:00Z/2024-01-12T23:59:59Z")
    found = search(params(url, bbox=parse_bbox(AREA), datetime=window), SETTINGS)
    assert [f.data["properties"]["eo:cloud_cover"] for f in found] == [50.0, 10.0]
    found = search(params(url, datetime="2017-02-16T00:00:00Z/2017-02-17T00:00:00Z"), SETTINGS)
    assert [f.id for f in found] == [catalog_items[-1]["id"]]
    assert all(f.href.startswith(url) and f.href.endswith(f.id) for f in found)


def test_datetime_duration_search(stac_api: StacApi, catalog_items: list[dict[str, Any]]) -> None:
    """An ISO duration relative to 'now' selects the trailing window."""
    url = stac_api(catalog_items)
    window = parse_datetime("P2D", now=START + timedelta(days=4, hours=1))
    found = search(params(url, datetime=window), SETTINGS)
    assert [f.data["properties"]["datetime"][:10] for f in found] == ["2024-01-13", "2024-01-14"]


def test_cloud_cover_and_tile_filters(
    stac_api: StacApi, catalog_items: list[dict[str, Any]]
) -> None:
    """Tile filters apply even on an API without the Query extension (rustac).

    Cloud cover is sent only to APIs that declare Query; items an API returns anyway reach the
    pipeline, which skips them with the cloud cover as the stated reason.
    """
    url = stac_api(catalog_items)
    found = search(params(url, datetime="2000-01-01T00:00:00Z/..", max_cloud_cover=10), SETTINGS)
    clouds = sorted(f.data["properties"]["eo:cloud_cover"] for f in found if "31TCJ" in f.id)
    assert clouds == sorted(cloud for _, cloud in SCHEDULE)
    found = search(params(url, datetime="2000-01-01T00:00:00Z/..", tile="33UUU"), SETTINGS)
    assert [f.id for f in found] == [catalog_items[-1]["id"]]
    found = search(params(url, datetime="2000-01-01T00:00:00Z/..", tile="31TCJ"), SETTINGS)
    assert len(found) == len(SCHEDULE)


def test_paging_and_limit(stac_api: StacApi, base_item: dict[str, Any]) -> None:
    """More results than one page (100) are all returned; ``limit`` caps the count."""
    items = [_variant(base_item, 0, 1.0) for _ in range(130)]
    for index, item in enumerate(items):
        item["id"] = f"{item['id']}_{index:03d}"
        moment = START + timedelta(minutes=index)
        item["properties"]["datetime"] = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    url = stac_api(items)
    found = search(params(url, bbox=parse_bbox(AREA)), SETTINGS)
    assert len(found) == 130 and len({f.id for f in found}) == 130
    found = search(params(url, bbox=parse_bbox(AREA), limit=3), SETTINGS)
    assert len(found) == 3


def test_no_result(stac_api: StacApi, catalog_items: list[dict[str, Any]]) -> None:
    """A search that matches nothing raises NoItemsFoundError."""
    url = stac_api(catalog_items)
    with pytest.raises(NoItemsFoundError):
        search(params(url, bbox=parse_bbox("-60,-30,-59,-29")), SETTINGS)
    with pytest.raises(NoItemsFoundError):
        search(params(url, bbox=parse_bbox(AREA), tile="33UUU"), SETTINGS)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_default_retry_budget_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default retry policy sleeps about 15 s at most per request (under 20 s)."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    from component.io.search import retry_policy

    for name in ("COMPONENT_STAC_RETRIES", "COMPONENT_STAC_BACKOFF_MAX_S"):
        monkeypatch.delenv(name, raising=False)
    policy = retry_policy(SETTINGS)
    slept = 0.0
    with pytest.raises(MaxRetryError):
        while True:
            policy = policy.increment(
                "GET",
                "/",
                error=NewConnectionError(None, "refused"),  # type: ignore[arg-type]
            )
            slept += policy.get_backoff_time()
    assert 10 <= slept < 20


def test_unreachable_api_fails_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed port fails with StacApiError once the (here small) retry budget is spent."""
    monkeypatch.setenv("COMPONENT_STAC_RETRIES", "1")
    monkeypatch.setenv("COMPONENT_STAC_BACKOFF_MAX_S", "0.5")
    url = f"http://127.0.0.1:{_closed_port()}/"
    started = time.monotonic()
    with pytest.raises(StacApiError, match="cannot reach"):
        search(params(url, bbox=parse_bbox(AREA)), Settings.from_environ())
    assert time.monotonic() - started < 5


def test_non_l1c_item_in_search_is_refused(
    stac_api: StacApi, catalog_items: list[dict[str, Any]]
) -> None:
    """An L2A item returned by the API is refused rather than corrected twice."""
    l2a = copy.deepcopy(catalog_items[0])
    l2a["id"] = l2a["id"].replace("MSIL1C", "MSIL2A")
    l2a["properties"] |= {"processing:level": "L2", "product:type": "S2MSI2A"}
    url = stac_api([l2a])
    with pytest.raises(InvalidItemError, match="not a Sentinel-2 L1C"):
        search(params(url, bbox=parse_bbox(AREA)), SETTINGS)


def test_read_item_file(sample_item_path: Path) -> None:
    """An item file is read with hrefs made absolute; its href is the absolute path."""
    found = read_item(str(sample_item_path))
    assert found.href == str(sample_item_path.resolve())
    assert Path(found.data["assets"]["B02"]["href"]).is_file()


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2, 3]", '{"type": "Feature"}', '{"type": "Catalog", "id": "x"}', ""],
)
def test_malformed_item_file(tmp_path: Path, content: str) -> None:
    """Malformed JSON or a document that is not an Item raises InvalidItemError."""
    path = tmp_path / "item.json"
    path.write_text(content)
    with pytest.raises(InvalidItemError):
        read_item(str(path))


def test_missing_item_file(tmp_path: Path) -> None:
    """A path that does not exist raises InvalidItemError saying so."""
    with pytest.raises(InvalidItemError, match="does not exist"):
        read_item(str(tmp_path / "absent.json"))


@pytest.mark.parametrize(
    "properties",
    [
        {"processing:level": "L2"},
        {"product:type": "S2MSI2A"},
        {"processing:level": "L1", "product:type": "S2MSI1B"},
    ],
)
def test_require_l1c(properties: dict[str, str]) -> None:
    """Items whose level or product type is not L1C are refused; L1C ones pass."""
    with pytest.raises(InvalidItemError):
        require_l1c({"id": "x", "properties": properties})
    ok = {"id": "x", "properties": {"processing:level": "L1", "product:type": "S2MSI1C"}}
    assert require_l1c(ok) is ok


def test_non_l1c_item_file_refused(tmp_path: Path, l1c_product: Callable[..., Any]) -> None:
    """An L2A item given as a file is refused with InvalidItemError."""
    item = l1c_product(size_10m=60)
    item["properties"]["processing:level"] = "L2"
    path = tmp_path / "l2a.json"
    path.write_text(json.dumps(item))
    with pytest.raises(InvalidItemError, match="not a Sentinel-2 L1C"):
        read_item(str(path))


def test_saved_search_results_are_read_item_by_item(
    base_item: dict[str, Any], tmp_path: Path
) -> None:
    """A FeatureCollection (saved results) gives each feature as an input, checked as a
    search result is; a file with a bad feature, or none, is refused in one line."""
    features = [_variant(base_item, day, cloud) for day, cloud in SCHEDULE[:2]]
    saved = tmp_path / "results.geojson"
    saved.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    found = read_items(str(saved), SETTINGS)
    assert [f.id for f in found] == [f["id"] for f in features]
    assert all(f.href.startswith(str(saved)) for f in found)
    assert found[0].data["assets"]["B02"]["href"] == features[0]["assets"]["B02"]["href"]
    single = tmp_path / "item.json"
    single.write_text(json.dumps(features[0]))
    assert [f.id for f in read_items(str(single), SETTINGS)] == [features[0]["id"]]

    bad = copy.deepcopy(features)
    bad[1]["assets"]["B02"]["href"] = "/vsicurl/http://127.0.0.1:9/B02.jp2"
    saved.write_text(json.dumps({"type": "FeatureCollection", "features": bad}))
    with pytest.raises(InvalidItemError, match="GDAL virtual file"):
        read_items(str(saved), SETTINGS)
    bad[1] = {"type": "Feature", "id": "x"}
    saved.write_text(json.dumps({"type": "FeatureCollection", "features": bad}))
    with pytest.raises(InvalidItemError, match=r"feature 1 of .* is not a valid STAC item"):
        read_items(str(saved), SETTINGS)
    saved.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.raises(InvalidItemError, match="without items"):
        read_items(str(saved), SETTINGS)
