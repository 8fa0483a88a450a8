"""Finding L1C items: a STAC API search, or item documents named by path or URL.

The search goes through pystac-client, which follows ``next`` links for paging. CDSE limits
each user to 4 concurrent connections and 2000 requests a minute and answers 429 beyond
that, so every request is retried with exponential backoff on 429, 5xx and connection
errors inside a bounded budget; past it the run fails with :class:`StacApiError`.
Cloud-cover and tile filters are sent to the API when it declares the Query extension
(CDSE does) and are applied again to what comes back, so any API yields the right items.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import requests
from pystac_client import Client, ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.util.retry import Retry

from component.errors import InvalidItemError, NoItemsFoundError, StacApiError
from component.params import SearchParams

log = logging.getLogger(__name__)

RETRY = Retry(
    total=5,
    connect=5,
    read=5,
    status=5,
    backoff_factor=0.5,
    backoff_max=8,
    status_forcelist=(429, 500, 502, 503, 504),
    allowed_methods=("GET", "POST"),
    respect_retry_after_header=True,
    raise_on_status=False,
)
"""About 15 s of backoff at most per request: enough for CDSE's per-minute quota to refill."""
TIMEOUT_S = 30


@dataclass(frozen=True)
class InputItem:
    """An L1C item and where it came from (the output's ``derived_from`` link)."""

    data: dict[str, Any]
    href: str

    @property
    def id(self) -> str:
        return str(self.data["id"])


def read_item(source: str) -> InputItem:
    """An item from a local path or URL, with asset hrefs made absolute."""
    try:
        item = pystac.Item.from_file(source)
    except FileNotFoundError:
        raise InvalidItemError(f"item file {source} does not exist: check --item") from None
    except (json.JSONDecodeError, ValueError, KeyError, TypeError, pystac.STACError) as error:
        raise InvalidItemError(
            f"{source} is not a valid STAC item ({type(error).__name__}): pass a STAC Item "
            "JSON document"
        ) from None
    except (OSError, requests.RequestException) as error:
        raise InvalidItemError(f"cannot read item {source} ({error}): check --item") from None
    item.make_asset_hrefs_absolute()
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    href = source if "://" in source else str(Path(source).resolve())
    return InputItem(require_l1c(data), href)


def require_l1c(item: dict[str, Any]) -> dict[str, Any]:
    """The model was trained on L1C TOA reflectance: refuse anything else."""
    props = item.get("properties", {})
    level = props.get("processing:level")
    product = props.get("product:type", "")
    if level not in (None, "L1", "L1C") or (product and product != "S2MSI1C"):
        raise InvalidItemError(
            f"item {item.get('id')!r} is not a Sentinel-2 L1C product "
            f"(processing:level {level!r}, product:type {product!r}): give an L1C item"
        )
    return item


def _matches(item: pystac.Item, params: SearchParams) -> bool:
    props = item.properties
    cloud = props.get("eo:cloud_cover")
    if params.max_cloud_cover is not None and cloud is not None and cloud > params.max_cloud_cover:
        return False
    if params.tile is not None:
        code = str(props.get("grid:code", ""))
        if code.removeprefix("MGRS-") != params.tile and f"_T{params.tile}_" not in item.id:
            return False
    return True


def open_client(url: str) -> Client:
    io = StacApiIO(max_retries=RETRY, timeout=TIMEOUT_S)
    try:
        return Client.open(url, stac_io=io)
    except (APIError, requests.RequestException, pystac.STACError, ValueError) as error:
        raise StacApiError(
            f"cannot reach the STAC API at {url} ({_short(error)}): check --stac-url and the "
            "network, or retry later"
        ) from None


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]


def search(params: SearchParams) -> list[InputItem]:
    """L1C items matching *params*, oldest first; raises if there are none."""
    client = open_client(params.stac_url)
    query: dict[str, Any] = {}
    # Only an API that declares the Query extension gets one: some (rustac's in-memory
    # backend) answer a POST with an unknown "query" by matching nothing at all.
    supports_query = client.conforms_to(ConformanceClasses.QUERY)
    if params.max_cloud_cover is not None:
        query["eo:cloud_cover"] = {"lte": params.max_cloud_cover}
    if params.tile is not None:
        query["grid:code"] = {"eq": f"MGRS-{params.tile}"}
    try:
        found = client.search(
            collections=[params.collection],
            bbox=params.bbox,
            datetime=params.datetime,
            query=(query or None) if supports_query else None,
            max_items=params.limit,
            limit=min(params.limit or 100, 100),
        )
        items = [item for item in found.items() if _matches(item, params)]
    except (APIError, requests.RequestException) as error:
        raise StacApiError(
            f"the STAC API at {params.stac_url} failed the search ({_short(error)}): retry "
            "later or check the search parameters"
        ) from None
    if not items:
        raise NoItemsFoundError(
            f"no {params.collection} item matches the search: widen --bbox, --datetime or "
            "--max-cloud-cover"
        )
    items.sort(key=lambda item: (item.datetime.isoformat() if item.datetime else "", item.id))
    result = []
    for item in items:
        data = item.to_dict(include_self_link=False, transform_hrefs=False)
        href = item.get_self_href() or (
            f"{params.stac_url.rstrip('/')}/collections/{params.collection}/items/{item.id}"
        )
        result.append(InputItem(require_l1c(data), href))
    log.info("found %d item(s) in %s", len(result), params.collection)
    return result
