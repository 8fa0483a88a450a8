"""An L1C input read once into one typed value, :class:`L1CProduct`.

Whatever the source (a STAC item from CDSE or a catalog, an EOPF Zarr product expanded into
band assets by :mod:`component.io.zarr_product`), :func:`from_item` interprets it in this
one place: its band assets and their grids, its radiometry (the baseline offset), where its
sun/view geometry comes from and its scene means. Everything downstream (the read plan, the
band readers, the geometry, the description of the output) reads only that value.

CDSE's Sentinel-2 items use STAC 1.1 forms: ``proj:code`` instead of ``proj:epsg``,
``bands`` instead of ``eo:bands`` and ``raster:scale``/``raster:offset`` on the asset
instead of ``raster:bands[]``. And CDSE writes ``raster:offset: -0.1`` on every product,
although the -1000 DN radiometric offset exists only from processing baseline 04.00 on: for
older products that value is wrong, so the radiometry follows the baseline.
:func:`for_stackstac` rewrites an item for stackstac 0.5, which reads only the older forms
(gjoseph92/stackstac#262).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

from affine import Affine

from component.core.bands import L1C_BANDS, L2A_BANDS, OPTIONAL_BANDS
from component.core.grid import Grid
from component.errors import InvalidItemError

QUANTIFICATION_VALUE = 10000.0
OFFSET_BASELINE = (4, 0)
"""Processing baseline from which L1C DN carry the +1000 radiometric offset."""
NODATA_DN = 0
SATURATED_DN = 65535

_BASELINE_IN_ID = re.compile(r"_N(\d{2})(\d{2})_")
GRANULE_METADATA = "granule_metadata"
AUX_ECMWF = "aux_ecmwft"
"""The asset of the granule's ``AUX_DATA/AUX_ECMWFT`` (ECMWF forecasts)."""
AUX_CAMS = "aux_camsfo"
"""The asset of the granule's ``AUX_DATA/AUX_CAMSFO`` (CAMS aerosol forecasts, baseline 04.00
on)."""
VIEW_KEYS = ("view:sun_elevation", "view:sun_azimuth", "view:incidence_angle", "view:azimuth")


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


def epsg_code(value: Any) -> int | None:
    """An EPSG code from ``proj:epsg`` (an int) or ``proj:code`` (``"EPSG:32633"``); None for
    anything else (a bool is not a code)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.upper().startswith("EPSG:"):
        number = value.split(":", 1)[1]
        return int(number) if number.isdigit() else None
    return None


def epsg_of(item: dict[str, Any], asset_key: str) -> int:
    """The EPSG code of an asset, from ``proj:code``/``proj:epsg`` on the asset or item."""
    asset = item.get("assets", {}).get(asset_key, {})
    props = item.get("properties", {})
    for source in (asset, props):
        epsg = epsg_code(source.get("proj:epsg")) or epsg_code(source.get("proj:code"))
        if epsg is not None:
            return epsg
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


@dataclass(frozen=True)
class BandAsset:
    """One band's file and the grid it holds (its native grid)."""

    href: str
    grid: Grid


@dataclass(frozen=True)
class L1CProduct:
    """One L1C input, interpreted: what every later step needs of it, and nothing to re-read.

    ``bands`` holds every L2A band and B10 when the input has it; ``item`` is the source
    document, kept for the output's description (its properties and links), never
    re-interpreted.
    """

    id: str
    href: str | None
    """Where the description came from: the output's ``derived_from`` link."""
    item: dict[str, Any] = field(repr=False, compare=False)
    bands: dict[str, BandAsset] = field(repr=False)
    radiometry: BandRadiometry
    baseline: tuple[int, int]
    granule_metadata: str | None = None
    """Href of the granule's ``MTD_TL.xml`` (angle grids), when the input links it."""
    view: dict[str, float] = field(default_factory=dict)
    """The input's scene-mean angles (``view:*``), when it states all four."""
    aux_ecmwf: str | None = None
    """Href of the granule's ``AUX_DATA/AUX_ECMWFT`` (ECMWF ozone, pressure, water vapour):
    an ``aux_ecmwft`` asset, else beside the granule metadata of a SAFE layout."""
    eopf_conditions: str | None = None
    """Root of the EOPF Zarr product (its ``product`` asset) whose ``conditions`` group holds
    the angle grids (``geometry``), the ECMWF forecasts (``meteorology/ecmwf``) and the CAMS
    ones (``meteorology/cams``)."""
    aux_camsfo: str | None = None
    """Href of the granule's ``AUX_DATA/AUX_CAMSFO`` (CAMS aerosol optical depths), found as
    :attr:`aux_ecmwf` is: an ``aux_camsfo`` asset, else beside the granule metadata (older
    baselines have none: the file may be absent)."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input bands present, in L1C order (13, or 12 without B10)."""
        return tuple(b for b in L1C_BANDS if b in self.bands)

    @property
    def origin(self) -> tuple[float, float]:
        """The tile's origin (upper-left corner), on which every product grid is anchored."""
        transform = self.bands["B02"].grid.transform
        return (transform.c, transform.f)

    @property
    def epsg(self) -> int:
        epsg = self.bands["B02"].grid.epsg
        assert epsg is not None
        return epsg

    def hrefs(self, bands: tuple[str, ...] | None = None) -> list[str]:
        """The files of *bands* (default every band present)."""
        return [self.bands[b].href for b in (bands or self.inputs)]


def from_item(item: dict[str, Any], href: str | None = None) -> L1CProduct:
    """Interpret an L1C STAC item (asset hrefs absolute) once; raises
    :class:`~component.errors.InvalidItemError` naming what is missing."""
    require_bands(item, L2A_BANDS)
    assets = item.get("assets", {})
    bands: dict[str, BandAsset] = {}
    for band in L1C_BANDS:
        if band in OPTIONAL_BANDS and not assets.get(band, {}).get("href"):
            continue
        try:
            (a, b, c, d, e, f), (height, width) = asset_grid(item, band)
            grid = Grid(epsg_of(item, band), Affine(a, b, c, d, e, f), width, height)
        except InvalidItemError:
            if band not in OPTIONAL_BANDS:
                raise
            grid = bands["B01"].grid  # B10 lies on the 60 m bands' grid
        bands[band] = BandAsset(str(assets[band]["href"]), grid)
    baseline = processing_baseline(item)
    metadata = (assets.get(GRANULE_METADATA) or {}).get("href")
    aux = _aux_file(assets, AUX_ECMWF, metadata, "AUX_ECMWFT")
    cams = _aux_file(assets, AUX_CAMS, metadata, "AUX_CAMSFO")
    properties = item.get("properties", {})
    values = [properties.get(key) for key in VIEW_KEYS]
    finite = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )
    return L1CProduct(
        id=str(item.get("id")),
        href=href,
        item=item,
        bands=bands,
        radiometry=radiometry(item),
        baseline=baseline,
        granule_metadata=str(metadata) if metadata else None,
        view={k: float(v) for k, v in zip(VIEW_KEYS, values, strict=True)} if finite else {},
        aux_ecmwf=aux,
        eopf_conditions=_zarr_root(assets),
        aux_camsfo=cams,
    )


def _aux_file(assets: dict[str, Any], key: str, metadata: Any, name: str) -> str | None:
    """The href of the granule's ``AUX_DATA/<name>``: the *key* asset, else beside the
    granule metadata (*metadata*, its ``MTD_TL.xml``) of a SAFE layout."""
    href = (assets.get(key) or {}).get("href")
    if not href and metadata and str(metadata).endswith("/MTD_TL.xml"):
        href = str(metadata)[: -len("MTD_TL.xml")] + f"AUX_DATA/{name}"
    return str(href) if href else None


def _zarr_root(assets: dict[str, Any]) -> str | None:
    """The href of a ``product`` asset that is an EOPF Zarr product, if any."""
    product = assets.get("product") or {}
    href = product.get("href")
    zarr_type = "zarr" in str(product.get("type", "")).lower()
    return str(href) if href and (zarr_type or str(href).rstrip("/").endswith(".zarr")) else None
