"""What an input document may name: item ids that become folder names, hrefs the run opens.

Item documents come from remote STAC APIs, third-party catalogs and files users were sent;
nothing in them is trusted. Two rules keep a run inside what its inputs allow:

- **Ids** name the product's folder under ``--output``: only letters, digits, ``.``, ``_`` and
  ``-``, no ``..``, starting with a letter or digit, at most :data:`MAX_ID_LENGTH` characters
  (every Copernicus product id is such a slug). An EOPF product's ``.SAFE`` suffix is dropped,
  so that its product id is the SAFE product's.
- **Hrefs** are accepted only in forms the document's origin allows (:func:`check_href`). A
  document fetched over HTTP(S) or from S3 may name ``https://`` and ``s3://`` data, relative
  hrefs (resolved against its own location) and ``http://`` only on its own host; never local
  paths, ``file://``, GDAL's ``/vsi*`` prefixes or connection strings (``vrt://``,
  ``ZARR:``...): the component adds those itself. An ``https://`` href to a loopback,
  private or link-local address (a cloud node's metadata service) is refused unless the
  document came from that host. A local document (the user's own file) may also name local
  files and ``http://`` URLs, but still no GDAL prefix or connection string, and no other
  scheme. A remote document may name local files only under the folders an operator lists in
  ``COMPONENT_LOCAL_HREF_ROOTS`` (a STAC API indexing a shared mount such as ``/eodata``).

Violations are :class:`~component.errors.InvalidItemError` (exit 4), raised before anything is
opened.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

from pystac.utils import make_absolute_href

from component.errors import InvalidItemError

MAX_ID_LENGTH = 200
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
REMOTE_SCHEMES = ("http", "https", "s3")
_SAFE_SUFFIX = ".SAFE"


def product_id(value: Any) -> str:
    """*value* as a product id that can name a folder; raises naming the rule it breaks."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if text.upper().endswith(_SAFE_SUFFIX):
        text = text[: -len(_SAFE_SUFFIX)]
    if not (0 < len(text) <= MAX_ID_LENGTH and _ID.fullmatch(text) and ".." not in text):
        shown = str(value)[:80]
        raise InvalidItemError(
            f"item id {shown!r} cannot name a product: an id holds only letters, digits, '.', "
            f"'_' and '-' (no '..', at most {MAX_ID_LENGTH}): fix the item's id"
        )
    return text


def origin_kind(origin: str | None) -> str:
    """``"http"`` (fetched over HTTP or HTTPS), ``"s3"`` or ``"local"`` (a file, or none)."""
    scheme = urlparse(origin).scheme.lower() if origin else ""
    if scheme in ("http", "https"):
        return "http"
    return "s3" if scheme == "s3" else "local"


def _is_internal_host(host: str) -> bool:
    """Loopback, private, link-local or unspecified: an address only an insider reaches."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
    )


def _same_host(a: str, b: str) -> bool:
    one, two = urlparse(a), urlparse(b)
    return (one.hostname or "").lower() == (two.hostname or "").lower() and one.port == two.port


def _under(path: str, roots: Iterable[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def check_href(
    href: Any, origin: str | None, what: str = "asset", local_roots: Iterable[str] = ()
) -> None:
    """Raise unless a document from *origin* (its own URL or path; None: a local document)
    may name *href*. *what* names the field in the message; *local_roots* are the folders
    whose files a remote document may name by absolute path
    (:attr:`~component.core.settings.Settings.local_href_roots`)."""
    if not isinstance(href, str) or not href:
        return  # a missing href is the reader's to report (a missing band, ...)
    kind = origin_kind(origin)
    text = href.strip()
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if text.lower().startswith("/vsi"):
        why = "GDAL virtual file systems are added by the component itself"
    elif kind != "local" and not scheme and text.startswith(("/", "\\")):
        allowed = text.startswith("/") and not text.startswith("//") and _under(text, local_roots)
        why = "" if allowed else "a remote document may not name local files"
    elif kind != "local" and not scheme:
        resolved = make_absolute_href(text, origin)
        same = origin_kind(resolved) == kind and _same_host(resolved, origin or "")
        why = "" if same else "a relative href must stay on the document's own host"
    elif not scheme or (len(scheme) == 1 and kind == "local") or scheme == "file":
        why = "" if kind == "local" else "a remote document may not name local files"
    elif scheme not in REMOTE_SCHEMES:
        why = f"{scheme!r} is not a data location (GDAL connection strings are not hrefs)"
    elif scheme == "s3" or kind == "local" or (kind == "http" and _same_host(text, origin or "")):
        why = ""
    elif scheme == "http":
        why = "plain http:// is allowed only on the document's own host"
    elif _is_internal_host(parsed.hostname or ""):
        why = f"{parsed.hostname} is an internal address"
    else:
        why = ""
    if why:
        allowed = (
            "https://, s3://, http:// and local files"
            if kind == "local"
            else "https://, s3:// and hrefs on its own host"
        )
        source = "a local document" if kind == "local" else f"a document from {origin}"
        raise InvalidItemError(
            f"{what} href {text[:120]!r} is refused: {why} ({source} may name {allowed}): "
            "fix the document"
        )


def check_item(
    document: dict[str, Any], origin: str | None, local_roots: Iterable[str] = ()
) -> None:
    """Every asset href of an item document from *origin* (the files a run would open)."""
    assets = document.get("assets")
    if isinstance(assets, dict):
        for key, asset in assets.items():
            if isinstance(asset, dict):
                check_href(asset.get("href"), origin, f"asset {key!r}", local_roots)


def check_links(links: Any, origin: str | None, rels: Iterable[str] = ("item", "child")) -> None:
    """The hrefs of the links in *rels* (those a run follows) of a document from *origin*."""
    if not isinstance(links, list):
        return
    wanted = set(rels)
    for link in links:
        if isinstance(link, dict) and link.get("rel") in wanted:
            check_href(link.get("href"), origin, f"link {link.get('rel')!r}")
