"""SAFE products as users hold them: the folder :func:`support.synthetic.make_l1c_product`
writes, zipped as ESA delivers it, or damaged in one known way.

ESA's (and the Copernicus Browser's, and CDSE OData's) ``.zip`` holds the ``X.SAFE`` folder as
its one top-level entry, directories included; :func:`zip_safe` writes that layout with
Python's :mod:`zipfile` (deflate), so the component reads a zip it did not make itself.
:func:`product_only_item` writes the item a catalog of downloaded products holds for one: no
band assets, only CDSE's ``Product`` asset naming the zip (or an OData download URL).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["copy_without", "product_folder", "product_only_item", "with_footprint", "zip_safe"]

ODATA_HREF = (
    "https://download.dataspace.copernicus.eu/odata/v1/"
    "Products(0f7e2f3a-5b7e-4d2c-9a57-1c3f1f6e8a21)/$value"
)
"""A CDSE item's ``Product`` href: OData's download URL, which redirects and needs a token."""


def product_folder(root: Path) -> Path:
    """The one ``*.SAFE`` folder that ``make_l1c_product(root, ...)`` wrote."""
    (safe,) = sorted(root.glob("*.SAFE"))
    return safe


def zip_safe(safe: Path, archive: Path | None = None, *, top: bool = True) -> Path:
    """*safe* zipped into *archive* (default ``<safe>.zip`` beside it, as CDSE names it).

    With *top* (ESA's layout) every entry lies under ``X.SAFE/``; without, the folder's
    contents lie at the zip's root (a user zipping the folder's contents)."""
    target = archive or safe.with_name(f"{safe.name}.zip")
    base = safe.parent if top else safe
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        if top:
            bundle.write(safe, f"{safe.name}/")
        for path in sorted(safe.rglob("*")):
            name = path.relative_to(base).as_posix()
            bundle.write(path, f"{name}/" if path.is_dir() else name)
    return target


def copy_without(safe: Path, target_root: Path, *patterns: str) -> Path:
    """A copy of *safe* under *target_root* lacking the files matching *patterns* (globs
    relative to the SAFE folder, e.g. ``GRANULE/*/IMG_DATA/*_B03.jp2``)."""
    copy = target_root / safe.name
    shutil.copytree(safe, copy)
    for pattern in patterns:
        matched = list(copy.glob(pattern))
        assert matched, f"{pattern} matches nothing in {safe.name}"
        for path in matched:
            path.unlink()
    return copy


def with_footprint(safe: Path, ring: list[tuple[float, float]]) -> None:
    """Give *safe*'s ``MTD_MSIL1C.xml`` the ``Geometric_Info`` footprint real products carry:
    ``Product_Footprint/Product_Footprint/Global_Footprint/EXT_POS_LIST``, latitude and
    longitude pairs of a closed ring. *ring* holds (longitude, latitude) points."""
    mtd = safe / "MTD_MSIL1C.xml"
    text = mtd.read_text()
    positions = " ".join(f"{lat} {lon}" for lon, lat in ring)
    block = (
        "  <n1:Geometric_Info>\n    <Product_Footprint>\n      <Product_Footprint>\n"
        f"        <Global_Footprint>\n          <EXT_POS_LIST>{positions}</EXT_POS_LIST>\n"
        "        </Global_Footprint>\n      </Product_Footprint>\n"
        "      <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>\n      <PIXEL_ORIGIN>1</PIXEL_ORIGIN>\n"
        "    </Product_Footprint>\n  </n1:Geometric_Info>\n"
    )
    assert "<n1:Quality_Indicators_Info>" in text
    mtd.write_text(
        text.replace("  <n1:Quality_Indicators_Info>", block + "  <n1:Quality_Indicators_Info>")
    )


def product_only_item(path: Path, item_id: str, href: str, *, catalog: bool = True) -> Path:
    """Write at *path* a STAC item whose only asset is CDSE's ``Product`` (``type``
    ``application/zip``, as CDSE's items carry it) at *href* (relative to *path*, absolute, or
    a URL); with *catalog*, a ``catalog.json`` beside it links it. The item states only its
    datetime and level: everything else must come from the product."""
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": item_id,
        "geometry": None,
        "properties": {
            "datetime": "2024-01-16T10:53:29Z",
            "processing:level": "L1",
            "product:type": "S2MSI1C",
        },
        "links": [],
        "assets": {
            "Product": {
                "href": href,
                "type": "application/zip",
                "title": "Zipped product",
                "roles": ["data", "metadata", "archive"],
            }
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(item))
    if catalog:
        document = {
            "type": "Catalog",
            "stac_version": "1.1.0",
            "id": "downloads",
            "description": "products downloaded from the Copernicus Browser",
            "links": [{"rel": "item", "href": f"./{path.name}", "type": "application/geo+json"}],
        }
        (path.parent / "catalog.json").write_text(json.dumps(document))
    return path
