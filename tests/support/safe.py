"""SAFE products as users hold them: the folder :func:`support.synthetic.make_l1c_product`
writes, zipped as ESA delivers it, or damaged in one known way.

ESA's (and the Copernicus Browser's, and CDSE OData's) ``.zip`` holds the ``X.SAFE`` folder as
its one top-level entry, directories included; :func:`zip_safe` writes that layout with
Python's :mod:`zipfile` (deflate), so the component reads a zip it did not make itself.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

__all__ = ["copy_without", "product_folder", "with_footprint", "zip_safe"]


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
