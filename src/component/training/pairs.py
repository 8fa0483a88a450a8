"""Paired training data: local L1C/L2A GeoTIFF pairs and L1C/L2A STAC item pairing.

Real L1C/L2A pairs come in files with different band layouts (L2A drops B10; some products
drop B8A), different scales, offsets and nodata values, so each side is described by a
:class:`RasterSpec` with 1-based band indices (0 for a band the file lacks). For archive-scale
pairs, :func:`pair_items` matches ``sentinel-2-l1c`` items to the
``sentinel-2-l2a`` items of the same datatake and tile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.errors import AssetReadError, InvalidParameterError

# Band order of the files in the shared real-pair folders (README of the data).
TERRAMIND_L1C = list(L1C_BANDS)
TERRAMIND_L2A = list(L2A_BANDS)
SEN2R_TOA = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12"]
SEN2R_BOA = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12"]


@dataclass(frozen=True)
class RasterSpec:
    """One side of a pair: file, 1-based band indices, ``refl = (DN + offset) / scale``."""

    path: Path
    bands: tuple[int, ...]
    scale: float = 10000.0
    offset: float = 0.0
    nodata: float | None = None


@dataclass
class Pair:
    """Co-registered TOA and BOA reflectance (bands, H, W), NaN where invalid."""

    name: str
    toa: np.ndarray
    boa: np.ndarray


def band_indices(names: Sequence[str], order: Sequence[str]) -> tuple[int, ...]:
    """1-based indices of ``names`` in a file whose bands are ``order``; 0 where it has none."""
    return tuple(order.index(n) + 1 if n in order else 0 for n in names)


def parse_band_list(text: str) -> tuple[int, ...]:
    """``"2,3,4"`` -> (2, 3, 4); 1-based like GDAL, ``0`` for a band the file does not have."""
    try:
        bands = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError as exc:
        raise InvalidParameterError(
            f"bands must be comma-separated integers (0 = not in the file): {text!r}"
        ) from exc
    if not bands or min(bands) < 0 or not any(bands):
        raise InvalidParameterError(f"bands are 1-based (0 = missing) and non-empty: {text!r}")
    return bands


def read_reflectance(spec: RasterSpec) -> tuple[np.ndarray, dict]:
    """Selected bands as float32 reflectance with NaN at nodata, plus the rasterio profile."""
    import rasterio

    present = [b for b in spec.bands if b > 0]
    try:
        with rasterio.open(spec.path) as src:
            if max(spec.bands) > src.count:
                raise InvalidParameterError(
                    f"{spec.path.name} has {src.count} bands, asked for band {max(spec.bands)}"
                )
            dn = src.read(present).astype(np.float32)
            profile = dict(src.profile)
            nodata = spec.nodata if spec.nodata is not None else src.nodata
    except InvalidParameterError:
        raise
    except Exception as exc:
        raise AssetReadError(f"cannot read {spec.path}: {exc}") from exc
    read = (dn + np.float32(spec.offset)) / np.float32(spec.scale)
    if nodata is not None:
        read[:, np.any(dn == np.float32(nodata), axis=0)] = np.nan
    refl = np.full((len(spec.bands), *dn.shape[1:]), np.nan, np.float32)
    refl[[i for i, b in enumerate(spec.bands) if b > 0]] = read
    return refl, profile


def load_pair(name: str, l1c: RasterSpec, l2a: RasterSpec) -> Pair:
    """Read both sides and check they share a grid (same shape)."""
    toa, _ = read_reflectance(l1c)
    boa, _ = read_reflectance(l2a)
    if toa.shape[1:] != boa.shape[1:]:
        raise InvalidParameterError(f"{name}: L1C {toa.shape} and L2A {boa.shape} grids differ")
    present_toa = [i for i in range(len(toa)) if np.isfinite(toa[i]).any()]
    present_boa = [i for i in range(len(boa)) if np.isfinite(boa[i]).any()]
    invalid = ~(
        np.all(np.isfinite(toa[present_toa]), axis=0)
        & np.all(np.isfinite(boa[present_boa]), axis=0)
    )
    toa[:, invalid] = np.nan
    boa[:, invalid] = np.nan
    return Pair(name, toa, boa)


def shared_pairs(
    root: Path, l1c_bands: Sequence[str], l2a_bands: Sequence[str] | None = None
) -> dict[str, Pair]:
    """All real pairs of the shared data folder, keyed by a short name.

    TOA holds *l1c_bands*, BOA *l2a_bands* (default: the same); a band a file lacks is an
    all-NaN plane (sen2r has no B8A, L2A no B10).
    """
    l2a_bands = l2a_bands if l2a_bands is not None else l1c_bands
    pairs: dict[str, Pair] = {}
    tm = root / "pairs" / "terramind"
    for l1c in sorted((tm / "L1C").glob("*.tif")):
        pairs[l1c.stem] = load_pair(
            l1c.stem,
            RasterSpec(l1c, band_indices(l1c_bands, TERRAMIND_L1C)),
            RasterSpec(tm / "L2A" / l1c.name, band_indices(l2a_bands, TERRAMIND_L2A)),
        )
    sr = root / "pairs" / "sen2r"
    for toa in sorted(sr.glob("S2A1C_*_TOA_10.tif")):
        date = toa.name.split("_")[1]
        boa = sr / toa.name.replace("S2A1C", "S2A2A").replace("_TOA_", "_BOA_")
        pairs[f"sen2r_{date}"] = load_pair(
            f"sen2r_{date}",
            RasterSpec(toa, band_indices(l1c_bands, SEN2R_TOA), nodata=65535),
            RasterSpec(boa, band_indices(l2a_bands, SEN2R_BOA), nodata=65535),
        )
    return pairs


# --- STAC pairing --------------------------------------------------------------------------

_ID = re.compile(
    r"^(?P<mission>S2[A-D])_MSIL(?P<level>1C|2A)_(?P<sensing>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>[0-9]{2}[A-Z]{3})_(?P<discriminator>\d{8}T\d{6})"
)


def datatake_key(item) -> tuple[str, str, str, int]:
    """``(platform, sensing time, MGRS tile, relative orbit)``: equal for L1C and its L2A.

    Taken from the item properties (CDSE: ``platform``, ``datetime``, ``grid:code``,
    ``sat:relative_orbit``), falling back to the product id; the processing baseline and
    generation time are deliberately not part of the key, since an L2A may be reprocessed.
    """
    props = item.properties
    match = _ID.match(item.id)
    platform = props.get("platform") or (
        f"sentinel-2{match['mission'][-1].lower()}" if match else ""
    )
    if match:
        sensing = match["sensing"]
    elif item.datetime is not None:
        sensing = item.datetime.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S")
    else:
        sensing = ""
    grid = props.get("grid:code") or (f"MGRS-{match['tile']}" if match else "")
    orbit = props.get("sat:relative_orbit")
    if orbit is None and match:
        orbit = int(match["orbit"])
    return (str(platform).lower(), sensing, str(grid).upper(), int(orbit or -1))


def pair_items(l1c_items: Iterable, l2a_items: Iterable) -> list[tuple]:
    """``(l1c, l2a)`` for each L1C that has an L2A of the same datatake and tile.

    When several L2A products match (reprocessings), the most recently generated one (largest
    id discriminator / ``processing:version``) is kept.
    """
    best: dict[tuple, object] = {}
    for item in l2a_items:
        key = datatake_key(item)
        if key not in best or _generation(item) > _generation(best[key]):
            best[key] = item
    return [(item, best[datatake_key(item)]) for item in l1c_items if datatake_key(item) in best]


def _generation(item) -> tuple[str, str]:
    match = _ID.match(item.id)
    version = str(item.properties.get("processing:version", ""))
    return (version, match["discriminator"] if match else item.id)


def search_pairs(
    url: str,
    bbox: Sequence[float] | None = None,
    datetime_range: str | None = None,
    max_items: int = 100,
    l1c_collection: str = "sentinel-2-l1c",
    l2a_collection: str = "sentinel-2-l2a",
) -> list[tuple]:
    """Search both collections of a STAC API over the same area/time and pair the results."""
    from pystac_client import Client

    client = Client.open(url)
    kwargs = {"bbox": bbox, "datetime": datetime_range, "max_items": max_items}
    l1c = list(client.search(collections=[l1c_collection], **kwargs).items())
    l2a = list(client.search(collections=[l2a_collection], **kwargs).items())
    return pair_items(l1c, l2a)


def sensing_datetime(item) -> datetime | None:
    """The datatake sensing time of an item (for logs and reports)."""
    sensing = datatake_key(item)[1]
    return (
        datetime.strptime(sensing, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        if sensing
        else None
    )
