"""A static STAC catalog folder as input: the item documents it links, found without a search.

An OGC EO Application Package hands its application a ``Directory`` holding a
``catalog.json`` (the platform's stage-in); the run mode ``--catalog DIR`` reads it here. Only
the links are followed (``item`` and, recursively, ``child``), so the items are then read by
the same code as ``--item``: the same checks, the same expansion of an item whose data is a
Zarr ``product`` or a SAFE ``Product`` asset (a downloaded ``.zip``), the same
``derived_from`` hrefs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from component.errors import InvalidParameterError, NoItemsFoundError
from component.io import trust

CATALOG_FILE = "catalog.json"
MAX_DEPTH = 16
"""Nested child catalogs followed at most (a link loop must not hang the run)."""


def _document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidParameterError(
            f"--catalog: {path} does not exist: give a folder holding a STAC catalog.json"
        ) from None
    except (OSError, ValueError) as error:
        raise InvalidParameterError(
            f"--catalog: {path} is not readable JSON ({type(error).__name__}): give a folder "
            "holding a STAC catalog.json"
        ) from None
    if not isinstance(document, dict):
        raise InvalidParameterError(f"--catalog: {path} is not a STAC document")
    return document


def catalog_items(folder: str | Path) -> list[str]:
    """Paths (or URLs) of every item the catalog in *folder* links, in link order.

    A folder without ``catalog.json`` is a bad parameter (exit 2); a catalog that links no
    item found nothing to process (exit 3), as an empty search does.
    """
    root = Path(folder)
    path = root / CATALOG_FILE if root.is_dir() else root
    items: list[str] = []
    seen: set[Path] = set()

    def walk(catalog: Path, depth: int) -> None:
        resolved = catalog.resolve()
        if resolved in seen or depth > MAX_DEPTH:
            return
        seen.add(resolved)
        document = _document(catalog)
        if document.get("type") == "Feature":  # a folder may hold a single item
            items.append(str(resolved))
            return
        trust.check_links(document.get("links"), str(catalog))
        for link in document.get("links", []):
            href = link.get("href") if isinstance(link, dict) else None
            if not isinstance(href, str) or not href:
                continue
            target = href if "://" in href else str((catalog.parent / href).resolve())
            if link.get("rel") == "item" and target not in items:
                items.append(target)
            elif link.get("rel") == "child" and "://" not in href:
                walk(Path(target), depth + 1)

    walk(path, 0)
    if not items:
        raise NoItemsFoundError(f"--catalog {folder}: the catalog links no item: nothing to do")
    return items
