"""Finding L1C items: a STAC API search, or item documents named by path or URL.

The search goes through pystac-client, which follows ``next`` links for paging. CDSE limits
each user to 4 concurrent connections and 2000 requests a minute and answers 429 beyond
that, so every request (GET and POST /search, each page) is retried with exponential
backoff on 429, 5xx, timeouts and connection errors, honouring ``Retry-After`` (capped),
inside a bounded budget; past it the run fails with :class:`StacApiError` (exit code 6).
The budget is set by ``COMPONENT_STAC_RETRIES`` (retries per request, default 5),
``COMPONENT_STAC_BACKOFF_MAX_S`` (longest single wait, default 8 s, also the cap on
``Retry-After``) and ``COMPONENT_STAC_TIMEOUT_S`` (connect/read timeout, default 30 s).
Cloud-cover and tile filters are sent to the API when it declares the Query extension
(CDSE does). The tile filter is applied again to what comes back; an item over the
cloud-cover limit that an API returns anyway is kept, and the pipeline skips it with its
cloud cover as the stated reason (a scheduled run's summary says why it was not produced).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pystac
import requests
from pystac.utils import make_absolute_href
from pystac_client import Client, ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.util.retry import Retry

from component.core.settings import Settings
from component.errors import InvalidItemError, NoItemsFoundError, StacApiError
from component.io import trust
from component.params import SearchParams

log = logging.getLogger(__name__)

BACKOFF_FACTOR_S = 0.5
"""The first retry's wait, doubling after (capped by ``Settings.stac_backoff_max_s``); with the
default timeout, one request gives up after about 3 minutes in the worst case."""


class BoundedRetry(Retry):
    """urllib3's Retry, but a server's ``Retry-After`` never waits longer than ``backoff_max``.

    urllib3 sleeps whatever ``Retry-After`` says; a misconfigured gateway answering
    ``Retry-After: 3600`` would stall a scheduled run for an hour per request.
    """

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), self.backoff_max)


def retry_policy(settings: Settings) -> Retry:
    """The retry budget of every STAC API request (*settings*' ``stac_*``)."""
    retries, backoff_max = settings.stac_retries, settings.stac_backoff_max_s
    return BoundedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=min(BACKOFF_FACTOR_S, backoff_max),
        backoff_max=backoff_max,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET", "POST"),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


_NOT_AN_ITEM = (
    ValueError,  # json.JSONDecodeError among them
    KeyError,
    TypeError,
    AttributeError,
    pystac.STACError,
    pystac.STACTypeError,
)
"""What pystac raises on a document (or a feature) that is not a valid STAC item."""


@dataclass(frozen=True)
class InputItem:
    """An L1C item and where it came from (the output's ``derived_from`` link)."""

    data: dict[str, Any]
    href: str

    @property
    def id(self) -> str:
        return str(self.data["id"])


def read_item(source: str, document: dict[str, Any] | None = None) -> InputItem:
    """An item from a local path or URL, with asset hrefs made absolute; *document*: its JSON
    as the installed reader already gave it (a product it names already expanded), so that
    nothing is read twice."""
    try:
        if document is None:
            item = pystac.Item.from_file(source)
        else:
            href = make_absolute_href(source)
            item = pystac.Item.from_dict(document, href=href, migrate=True, preserve_dict=False)
    except FileNotFoundError:
        raise InvalidItemError(f"item file {source} does not exist: check --item") from None
    except _NOT_AN_ITEM as error:
        raise InvalidItemError(
            f"{source} is not a valid STAC item ({type(error).__name__}): pass a STAC Item "
            "JSON document"
        ) from None
    except (OSError, requests.RequestException) as error:
        raise InvalidItemError(f"cannot read item {source} ({error}): check --item") from None
    item.make_asset_hrefs_absolute()
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    data["id"] = trust.product_id(data.get("id"))
    return InputItem(require_l1c(data), _location(source))


def read_items(source: str, settings: Settings) -> list[InputItem]:
    """The items *source* names: one item document (:func:`read_item`), or every feature of
    saved search results (a GeoJSON FeatureCollection of items, as STAC Browser and
    pystac-client save them), each checked as a search result is. A feature that is not a
    valid item refuses the whole file (one line, exit 4)."""
    document = _json_document(source)
    if not isinstance(document, dict):
        return [read_item(source)]
    if document.get("type") != "FeatureCollection":
        return [read_item(source, document)]
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise InvalidItemError(
            f"{source} is a FeatureCollection without items: save the search with its results"
        )
    origin = _location(source)
    result = []
    for index, feature in enumerate(features):
        try:
            item = pystac.Item.from_dict(feature)
        except _NOT_AN_ITEM as error:
            raise InvalidItemError(
                f"feature {index} of {source} is not a valid STAC item ({type(error).__name__})"
                ": pass a FeatureCollection of STAC Items"
            ) from None
        self_link = item.get_self_href()
        item.set_self_href(self_link or origin)
        item.make_asset_hrefs_absolute()
        data = item.to_dict(include_self_link=False, transform_hrefs=False)
        href = self_link or f"{origin}#{item.id}"
        result.append(_admitted(data, self_link or origin, href, settings))
    return result


def _location(source: str) -> str:
    """Where *source* lies: a URL as given, a path made absolute."""
    return source if "://" in source else str(Path(source).resolve())


def _admitted(data: dict[str, Any], origin: str, href: str, settings: Settings) -> InputItem:
    """A remote or saved item document as an input: its hrefs checked against *origin* (before
    a Zarr product is opened), its id made a product id, its Zarr product expanded."""
    from component.io import zarr_product  # EOPF Zarr items get band assets like SAFE ones

    trust.check_item(data, origin, settings.local_href_roots)
    data["id"] = trust.product_id(data.get("id"))
    return InputItem(require_l1c(zarr_product.expand(data, settings, href)), href)


def _json_document(source: str) -> Any:
    """The parsed JSON of *source* when it names a ``.json``/``.geojson`` document that can
    be read, else None (:func:`read_item` then reports what is wrong with it)."""
    path = urlparse(source).path if "://" in source else source
    if not path.lower().endswith((".json", ".geojson")):
        return None
    try:
        return json.loads(pystac.StacIO.default().read_text(source))
    except (OSError, ValueError, requests.RequestException, pystac.STACError):
        return None


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
    if params.tile is not None:
        code = str(props.get("grid:code", ""))
        if code.removeprefix("MGRS-") != params.tile and f"_T{params.tile}_" not in item.id:
            return False
    return True


def open_client(url: str, settings: Settings) -> Client:
    # The timeout goes to Client.open too: it calls ``stac_io.update(timeout=...)``, which
    # would otherwise reset the StacApiIO's timeout to None (requests then wait forever).
    timeout = settings.stac_timeout_s
    io = StacApiIO(max_retries=retry_policy(settings), timeout=timeout)
    try:
        return Client.open(url, stac_io=io, timeout=timeout)
    except (APIError, requests.RequestException, pystac.STACError, ValueError) as error:
        raise StacApiError(
            f"cannot reach the STAC API at {url} ({_short(error)}): check --stac-url and the "
            "network, or retry later"
        ) from None


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:160]


def search(params: SearchParams, settings: Settings) -> list[InputItem]:
    """L1C items matching *params*, oldest first; raises if there are none. *settings*: how to
    reach the data of EOPF Zarr items (their band assets are read from the product)."""
    client = open_client(params.stac_url, settings)
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
    refused: list[InvalidItemError] = []
    for item in items:
        data = item.to_dict(include_self_link=False, transform_hrefs=False)
        href = item.get_self_href() or (
            f"{params.stac_url.rstrip('/')}/collections/{params.collection}/items/{item.id}"
        )
        try:
            result.append(_admitted(data, href, href, settings))
        except InvalidItemError as error:  # one bad or untrusted item must not stop the others
            log.warning("%s: refused: %s", str(item.id)[:80], error)
            refused.append(error)
    if refused and not result:
        raise refused[0]
    log.info("found %d item(s) in %s", len(result), params.collection)
    return result
