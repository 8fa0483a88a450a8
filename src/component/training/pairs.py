"""Paired training data: local L1C/L2A GeoTIFF pairs and L1C/L2A STAC item pairing.

Real L1C/L2A pairs come in files with different band layouts (L2A drops B10; some products
drop B8A), different scales, offsets and nodata values, so each side is described by a
:class:`RasterSpec` with 1-based band indices. Patches are sampled at random positions and
augmented with the eight flips/rotations, which are physically valid for a spatially uniform
atmosphere. For archive-scale pairs, :func:`pair_items` matches ``sentinel-2-l1c`` items to the
``sentinel-2-l2a`` items of the same datatake and tile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from component.errors import AssetReadError, InvalidParameterError

# Band order of the files in the shared real-pair folders (README of the data).
TERRAMIND_L1C = [
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
]
TERRAMIND_L2A = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
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
    """1-based indices of ``names`` in a file whose bands are ``order``."""
    try:
        return tuple(order.index(n) + 1 for n in names)
    except ValueError as exc:
        raise InvalidParameterError(f"band not in file layout {list(order)}: {exc}") from exc


def parse_band_list(text: str) -> tuple[int, ...]:
    """``"2,3,4"`` -> (2, 3, 4); 1-based like GDAL."""
    try:
        bands = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError as exc:
        raise InvalidParameterError(f"bands must be comma-separated integers: {text!r}") from exc
    if not bands or min(bands) < 1:
        raise InvalidParameterError(f"bands are 1-based and non-empty: {text!r}")
    return bands


def read_reflectance(spec: RasterSpec) -> tuple[np.ndarray, dict]:
    """Selected bands as float32 reflectance with NaN at nodata, plus the rasterio profile."""
    import rasterio

    try:
        with rasterio.open(spec.path) as src:
            if max(spec.bands) > src.count:
                raise InvalidParameterError(
                    f"{spec.path.name} has {src.count} bands, asked for band {max(spec.bands)}"
                )
            dn = src.read(list(spec.bands)).astype(np.float32)
            profile = dict(src.profile)
            nodata = spec.nodata if spec.nodata is not None else src.nodata
    except InvalidParameterError:
        raise
    except Exception as exc:
        raise AssetReadError(f"cannot read {spec.path}: {exc}") from exc
    refl = (dn + np.float32(spec.offset)) / np.float32(spec.scale)
    if nodata is not None:
        refl[:, np.any(dn == np.float32(nodata), axis=0)] = np.nan
    return refl.astype(np.float32), profile


def load_pair(name: str, l1c: RasterSpec, l2a: RasterSpec) -> Pair:
    """Read both sides and check they share a grid (same shape)."""
    toa, _ = read_reflectance(l1c)
    boa, _ = read_reflectance(l2a)
    if toa.shape[1:] != boa.shape[1:]:
        raise InvalidParameterError(f"{name}: L1C {toa.shape} and L2A {boa.shape} grids differ")
    invalid = ~(np.all(np.isfinite(toa), axis=0) & np.all(np.isfinite(boa), axis=0))
    toa[:, invalid] = np.nan
    boa[:, invalid] = np.nan
    return Pair(name, toa, boa)


def shared_pairs(root: Path, bands: Sequence[str]) -> dict[str, Pair]:
    """All real pairs of the shared data folder, keyed by a short name."""
    pairs: dict[str, Pair] = {}
    tm = root / "pairs" / "terramind"
    for l1c in sorted((tm / "L1C").glob("*.tif")):
        pairs[l1c.stem] = load_pair(
            l1c.stem,
            RasterSpec(l1c, band_indices(bands, TERRAMIND_L1C)),
            RasterSpec(tm / "L2A" / l1c.name, band_indices(bands, TERRAMIND_L2A)),
        )
    sr = root / "pairs" / "sen2r"
    for toa in sorted(sr.glob("S2A1C_*_TOA_10.tif")):
        date = toa.name.split("_")[1]
        boa = sr / toa.name.replace("S2A1C", "S2A2A").replace("_TOA_", "_BOA_")
        pairs[f"sen2r_{date}"] = load_pair(
            f"sen2r_{date}",
            RasterSpec(toa, band_indices(bands, SEN2R_TOA), nodata=65535),
            RasterSpec(boa, band_indices(bands, SEN2R_BOA), nodata=65535),
        )
    return pairs


def sample_patch(
    toa: np.ndarray, boa: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size``² window of both arrays; chips smaller than that are reflect-padded."""
    _, h, w = toa.shape
    if h < size or w < size:
        pad = ((0, 0), (0, max(0, size - h)), (0, max(0, size - w)))
        toa, boa = np.pad(toa, pad, mode="reflect"), np.pad(boa, pad, mode="reflect")
        _, h, w = toa.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return toa[:, y : y + size, x : x + size], boa[:, y : y + size, x : x + size]


def augment(
    toa: np.ndarray, boa: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One of the eight dihedral transforms, applied identically to both arrays."""
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    out = []
    for a in (toa, boa):
        a = np.rot90(a, k, axes=(1, 2))
        if flip:
            a = a[:, :, ::-1]
        out.append(np.ascontiguousarray(a))
    return out[0], out[1]


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
