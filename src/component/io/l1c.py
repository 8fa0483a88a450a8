"""CDSE STAC 1.1 items, bridged to what stackstac reads, in this one place.

CDSE's Sentinel-2 items use STAC 1.1 forms: ``proj:code`` instead of ``proj:epsg``,
``bands`` instead of ``eo:bands`` and ``raster:scale``/``raster:offset`` on the asset
instead of ``raster:bands[]``. stackstac 0.5 reads only the older forms, so on a CDSE item it
finds no CRS and does not rescale (gjoseph92/stackstac#262). And CDSE writes
``raster:offset: -0.1`` on every product, although the -1000 DN radiometric offset exists
only from processing baseline 04.00 on: for older products that value is wrong. The
functions here decide the radiometry from the baseline and rewrite an item so stackstac
gets a CRS, a grid and the right offset.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from component.errors import InvalidItemError

QUANTIFICATION_VALUE = 10000.0
OFFSET_BASELINE = (4, 0)
"""Processing baseline from which L1C DN carry the +1000 radiometric offset."""
NODATA_DN = 0
SATURATED_DN = 65535

_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")


@dataclass(frozen=True)
class BandRadiometry:
    """How to turn a band's DN into reflectance: ``(DN + add_offset) / quantification``."""

    add_offset: float
    quantification: float = QUANTIFICATION_VALUE

    @property
    def scale(self) -> float:
        return 1.0 / self.quantification

    @property
    def offset(self) -> float:
        """The STAC ``raster:offset`` equivalent, in reflectance units."""
        return self.add_offset / self.quantification


def processing_baseline(item: dict[str, Any]) -> tuple[int, int]:
    """The processing baseline as ``(major, minor)``.

    Read from ``processing:version`` (CDSE writes e.g. "05.10") or, failing that, from the
    ``_Nxxyy_`` field of the product id. An item with neither cannot be calibrated safely.
    """
    version = item.get("properties", {}).get("processing:version")
    if isinstance(version, str) and re.fullmatch(r"\d{1,2}\.\d{1,2}", version.strip()):
        major, minor = version.strip().split(".")
        return int(major), int(minor)
    match = _BASELINE_IN_ID.search(item.get("id", ""))
    if match:
        return int(match[1]), int(match[2])
    raise InvalidItemError(
        f"item {item.get('id')!r} states no processing baseline (processing:version or _Nxxxx_ "
        "in its id): use a CDSE sentinel-2-l1c item"
    )


def radiometry(item: dict[str, Any]) -> BandRadiometry:
    """The L1C radiometric offset follows the baseline, not CDSE's ``raster:offset``."""
    add_offset = -1000.0 if processing_baseline(item) >= OFFSET_BASELINE else 0.0
    return BandRadiometry(add_offset=add_offset)


def epsg_of(item: dict[str, Any], asset_key: str) -> int:
    """The EPSG code of an asset, from ``proj:code``/``proj:epsg`` on the asset or item."""
    asset = item.get("assets", {}).get(asset_key, {})
    props = item.get("properties", {})
    for source in (asset, props):
        if isinstance(source.get("proj:epsg"), int):
            return int(source["proj:epsg"])
        code = source.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            try:
                return int(code.split(":", 1)[1])
            except ValueError:
                break
    raise InvalidItemError(
        f"item {item.get('id')!r}: asset {asset_key} has no EPSG code (proj:code): "
        "use a CDSE sentinel-2-l1c item"
    )


def asset_grid(item: dict[str, Any], asset_key: str) -> tuple[list[float], list[int]]:
    """``(proj:transform, proj:shape)`` of an asset (asset first, then item properties)."""
    asset = item["assets"][asset_key]
    props = item.get("properties", {})
    transform = asset.get("proj:transform", props.get("proj:transform"))
    shape = asset.get("proj:shape", props.get("proj:shape"))
    if not (isinstance(transform, list) and len(transform) >= 6):
        raise InvalidItemError(
            f"item {item.get('id')!r}: asset {asset_key} lacks proj:transform: "
            "use a CDSE sentinel-2-l1c item"
        )
    if not (isinstance(shape, list) and len(shape) == 2):
        raise InvalidItemError(
            f"item {item.get('id')!r}: asset {asset_key} lacks proj:shape: "
            "use a CDSE sentinel-2-l1c item"
        )
    return [float(v) for v in transform[:6]], [int(v) for v in shape]


def require_bands(item: dict[str, Any], bands: tuple[str, ...]) -> None:
    """Fail early, with the band's name, when an item lacks a band the model needs."""
    assets = item.get("assets", {})
    missing = [b for b in bands if b not in assets or not assets[b].get("href")]
    if missing:
        raise InvalidItemError(
            f"item {item.get('id')!r} lacks band asset(s) {', '.join(missing)} that the model "
            "needs: use a complete sentinel-2-l1c item"
        )


def for_stackstac(item: dict[str, Any], bands: tuple[str, ...]) -> dict[str, Any]:
    """A copy of *item* with only *bands*, in the forms stackstac 0.5 reads.

    ``raster:bands`` carries scale 1 and offset 0 on purpose: the loader reads raw DN so it can
    mask nodata (0) and saturation (65535) before calibrating, then applies
    :func:`radiometry` itself.
    """
    require_bands(item, bands)
    bridged = copy.deepcopy(item)
    bridged["assets"] = {}
    for key in bands:
        asset = copy.deepcopy(item["assets"][key])
        asset["proj:epsg"] = epsg_of(item, key)
        transform, shape = asset_grid(item, key)
        asset["proj:transform"], asset["proj:shape"] = transform, shape
        asset.pop("proj:bbox", None)  # derived from transform + shape, never inconsistent
        asset["raster:bands"] = [{"scale": 1, "offset": 0, "nodata": NODATA_DN}]
        bridged["assets"][key] = asset
    bridged["properties"] = {
        k: v for k, v in item.get("properties", {}).items() if not k.startswith("proj:")
    }
    return bridged
