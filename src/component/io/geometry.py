"""Sun and view geometry of an L1C item, on the grid the atmosphere is estimated on.

The atmospheric terms depend on the sun zenith, the view zenith and their relative azimuth,
and over a 110 km tile these vary by a degree or more (the view zenith by several degrees
across the swath). The best source is the granule's ``MTD_TL.xml`` (asset
``granule_metadata``): a 5 km grid of sun angles (``Sun_Angles_Grid``) and one of viewing
angles per band and detector (``Viewing_Incidence_Angles_Grids``, NaN outside each detector).
Those grids are reduced to one viewing grid (the NaN-aware mean over bands and detectors:
the corrector takes one geometry per pixel) and interpolated bilinearly to the pixel centres
of the coarse grid. Azimuths are averaged and interpolated as unit vectors, so 359 and 1
degrees mean 0, not 180.

Without granule metadata the item's scene means (``view:sun_elevation``, ``view:sun_azimuth``,
``view:incidence_angle``, ``view:azimuth``) stand in; without those either the geometry is
unknown (``None``) and the corrector assumes default angles and says so.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from component.core.grid import Grid
from component.core.settings import Settings
from component.io.l1c import L1CProduct
from component.model.atmosphere import Geometry

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 60.0


def view_properties(geometry: Geometry) -> dict[str, float]:
    """Scene means as the view extension's properties (what CDSE items carry)."""
    assert geometry.sun_azimuth is not None and geometry.view_azimuth is not None
    return {
        "view:sun_azimuth": round(_circular_mean(geometry.sun_azimuth), 4),
        "view:sun_elevation": round(90.0 - float(np.nanmean(geometry.sun_zenith)), 4),
        "view:incidence_angle": round(float(np.nanmean(geometry.view_zenith)), 4),
        "view:azimuth": round(_circular_mean(geometry.view_azimuth), 4),
    }


def _circular_mean(degrees: np.ndarray | float, axis: int | None = None) -> Any:
    radians = np.radians(np.asarray(degrees, np.float64))
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        sin, cos = np.nanmean(np.sin(radians), axis=axis), np.nanmean(np.cos(radians), axis=axis)
    mean = np.degrees(np.arctan2(sin, cos)) % 360.0
    return float(mean) if axis is None else mean


@dataclass(frozen=True)
class TileAngles:
    """MTD_TL.xml angle grids: node ``(row, col)`` lies at ``(ulx + col*dx, uly - row*dy)``."""

    ulx: float
    uly: float
    step_x: float
    step_y: float
    sun_zenith: np.ndarray
    sun_azimuth: np.ndarray
    view_zenith: np.ndarray
    """Mean over bands and detectors (NaN-aware); NaN where no detector sees the node."""
    view_azimuth: np.ndarray
    source: str = "MTD_TL.xml angle grids"
    """Where the grids came from, in the lineage's words."""


def _values(element: ET.Element) -> np.ndarray:
    rows = [row.text or "" for row in element.iter() if _local(row.tag) == "VALUES"]
    return np.array([[float(v) for v in row.split()] for row in rows], dtype=np.float64)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element:
    for child in element:
        if _local(child.tag) == name:
            return child
    raise ValueError(f"no <{name}> in <{_local(element.tag)}>")


def _steps(element: ET.Element) -> tuple[float, float]:
    return float(_child(element, "COL_STEP").text or "nan"), float(
        _child(element, "ROW_STEP").text or "nan"
    )


def parse_tile_angles(document: bytes | str) -> TileAngles:
    """The sun and (band/detector-averaged) viewing grids of a Level-1C ``MTD_TL.xml``.

    Raises ``ValueError`` when the document lacks them or they disagree in shape.
    """
    try:
        root = ET.fromstring(document)
    except ET.ParseError as error:
        raise ValueError(f"not XML ({error})") from None
    elements = {_local(e.tag): e for e in root.iter() if _local(e.tag) in ("Tile_Angles",)}
    if "Tile_Angles" not in elements:
        raise ValueError("no <Tile_Angles>")
    angles = elements["Tile_Angles"]
    positions = [e for e in root.iter() if _local(e.tag) == "Geoposition"]
    if not positions:
        raise ValueError("no <Geoposition>")
    ulx = float(_child(positions[0], "ULX").text or "nan")
    uly = float(_child(positions[0], "ULY").text or "nan")
    sun = _child(angles, "Sun_Angles_Grid")
    sun_zenith = _values(_child(sun, "Zenith"))
    sun_azimuth = _values(_child(sun, "Azimuth"))
    step_x, step_y = _steps(_child(sun, "Zenith"))
    zeniths, azimuths = [], []
    for grid in angles:
        if _local(grid.tag) != "Viewing_Incidence_Angles_Grids":
            continue
        zeniths.append(_values(_child(grid, "Zenith")))
        azimuths.append(_values(_child(grid, "Azimuth")))
    if not zeniths:
        raise ValueError("no <Viewing_Incidence_Angles_Grids>")
    shapes = {a.shape for a in (sun_zenith, sun_azimuth, *zeniths, *azimuths)}
    if len(shapes) != 1 or 0 in next(iter(shapes)):
        raise ValueError(f"angle grids of different or empty shapes {sorted(shapes)}")
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        view_zenith = np.nanmean(np.stack(zeniths), axis=0)
    view_azimuth = _circular_mean(np.stack(azimuths), axis=0)
    view_azimuth = np.where(np.isnan(view_zenith), np.nan, view_azimuth)
    return TileAngles(ulx, uly, step_x, step_y, sun_zenith, sun_azimuth, view_zenith, view_azimuth)


class _quiet_nanmean:  # noqa: N801 (a context manager used like a function)
    """``np.nanmean`` warns on all-NaN slices (nodes no detector sees): expected here."""

    def __enter__(self) -> None:
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._catch.__exit__(*exc)


def _filled(values: np.ndarray) -> np.ndarray:
    """NaN nodes take their nearest valid node's value (the grid extends beyond the swath)."""
    invalid = np.isnan(values)
    if not invalid.any():
        return values
    if invalid.all():
        raise ValueError("an angle grid holds no value")
    from scipy.ndimage import distance_transform_edt  # on use: see component.pipeline

    index = distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return values[tuple(index)]


def eopf_tile_angles(root: str, settings: Settings) -> TileAngles:
    """The angle grids of an EOPF Zarr product at *root* (``conditions/geometry``).

    ``sun_angles`` is (angle, y, x) and ``viewing_incidence_angles`` (band, detector, angle,
    y, x), on the same 23 x 23 nodes as MTD_TL.xml's grids, whose map coordinates ``x`` and
    ``y`` give; the ``angle`` coordinate names the zenith and azimuth planes (in that order
    when it is absent). Reduced as :func:`parse_tile_angles` reduces MTD_TL.xml's: one viewing
    grid, the NaN-aware mean over bands and detectors. Raises ``ValueError`` when the group
    is absent or its arrays disagree.
    """
    from zarr.errors import BaseZarrError

    from component.io.zarr_product import open_group

    try:
        group = open_group(root, settings)["conditions/geometry"]
        sun = np.asarray(group["sun_angles"][...], dtype=np.float64)
        view = np.asarray(group["viewing_incidence_angles"][...], dtype=np.float64)
        x = np.asarray(group["x"][...], dtype=np.float64)
        y = np.asarray(group["y"][...], dtype=np.float64)
        names = ["zenith", "azimuth"]
        if "angle" in group:
            names = [str(name).strip().lower() for name in group["angle"][...]]
    except (KeyError, IndexError, BaseZarrError) as error:
        raise ValueError(f"no conditions/geometry angle grids ({error})") from None
    if "zenith" not in names or "azimuth" not in names:
        raise ValueError(f"conditions/geometry angle names {names}: no zenith/azimuth")
    zenith, azimuth = names.index("zenith"), names.index("azimuth")
    nodes = (len(y), len(x))
    if sun.shape != (len(names), *nodes) or view.ndim != 5 or view.shape[2:] != sun.shape:
        raise ValueError(f"angle grids of shapes {sun.shape} and {view.shape} disagree")
    if min(nodes) < 2:
        raise ValueError(f"angle grids of {nodes} nodes")
    zeniths = view[:, :, zenith].reshape(-1, *nodes)
    azimuths = view[:, :, azimuth].reshape(-1, *nodes)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        view_zenith = np.nanmean(zeniths, axis=0)
    view_azimuth = _circular_mean(azimuths, axis=0)
    view_azimuth = np.where(np.isnan(view_zenith), np.nan, view_azimuth)
    return TileAngles(
        float(x[0]),
        float(y[0]),
        float(x[1] - x[0]),
        float(y[0] - y[1]),
        sun[zenith],
        sun[azimuth],
        view_zenith,
        view_azimuth,
        "the EOPF product's conditions/geometry angle grids",
    )


def angles_on_grid(angles: TileAngles, grid: Grid) -> Geometry:
    """The angle grids interpolated (bilinear) at the pixel centres of *grid*."""
    from scipy.ndimage import map_coordinates  # on use: see component.pipeline

    t = grid.transform
    xs = t.c + (np.arange(grid.width) + 0.5) * t.a
    ys = t.f + (np.arange(grid.height) + 0.5) * t.e
    cols = (xs - angles.ulx) / angles.step_x
    rows = (angles.uly - ys) / angles.step_y
    coordinates = np.meshgrid(rows, cols, indexing="ij")

    def sample(values: np.ndarray) -> np.ndarray:
        return map_coordinates(_filled(values), coordinates, order=1, mode="nearest").astype(
            np.float32
        )

    def sample_azimuth(values: np.ndarray) -> np.ndarray:
        radians = np.radians(_filled(values))
        sin, cos = sample(np.sin(radians)), sample(np.cos(radians))
        return (np.degrees(np.arctan2(sin, cos)) % 360.0).astype(np.float32)

    return Geometry.from_angles(
        sun_zenith=sample(angles.sun_zenith),
        sun_azimuth=sample_azimuth(angles.sun_azimuth),
        view_zenith=sample(angles.view_zenith),
        view_azimuth=sample_azimuth(angles.view_azimuth),
        source=angles.source,
    )


def from_properties(view: dict[str, float]) -> Geometry | None:
    """Scene-mean angles from ``view:*`` properties, or None if any is missing."""
    keys = ("view:sun_elevation", "view:sun_azimuth", "view:incidence_angle", "view:azimuth")
    values = [view.get(key) for key in keys]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    elevation, sun_azimuth, incidence, view_azimuth = (float(v) for v in values)  # type: ignore[arg-type]
    return Geometry.from_angles(
        sun_zenith=90.0 - elevation,
        sun_azimuth=sun_azimuth,
        view_zenith=incidence,
        view_azimuth=view_azimuth,
        source="item view:* properties (scene means)",
    )


def resolve(
    product: L1CProduct, grid: Grid, settings: Settings
) -> tuple[Geometry | None, list[str]]:
    """The best geometry the product offers on *grid*, and notes on any fallback taken.

    An unreadable or malformed granule metadata file does not fail the item: the scene means
    stand in, and the note says why.
    """
    notes: list[str] = []
    if product.granule_metadata or product.eopf_conditions:
        try:
            if product.granule_metadata:
                tile = parse_tile_angles(read_text(product.granule_metadata, settings))
            else:
                tile = eopf_tile_angles(str(product.eopf_conditions), settings)
            return angles_on_grid(tile, grid), notes
        except (OSError, ValueError, requests.RequestException) as error:
            reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            notes.append(
                f"granule metadata unreadable ({reason}): scene-mean angles of the item used"
            )
            log.warning("%s: %s", product.id, notes[-1])
    return from_properties(product.view), notes


def read_text(href: str, settings: Settings) -> bytes:
    """A small file by href: a local path, ``file://``, ``http(s)://``, ``s3://`` or a GDAL
    ``/vsi`` name (inside a SAFE ``.zip``: :func:`component.io.vsi.read`)."""
    if href.startswith("/vsi"):  # only the component writes these: trust refuses them in items
        from component.io import vsi

        return vsi.read(href, settings)
    parsed = urlparse(href)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else href).read_bytes()
    if parsed.scheme in ("http", "https"):
        response = _session(settings).get(href, timeout=READ_TIMEOUT_S)
        response.raise_for_status()
        return response.content
    if parsed.scheme == "s3":
        return _s3_get(parsed.netloc, parsed.path.lstrip("/"), settings)
    raise ValueError(f"unsupported href scheme {parsed.scheme!r}")


def _session(settings: Settings) -> requests.Session:
    """Retries like GDAL's for the band files: 429/5xx and dropped connections."""
    retry = Retry(
        total=settings.http_retries,
        backoff_factor=settings.http_retry_delay_s,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _s3_get(bucket: str, key: str, settings: Settings) -> bytes:
    """GET one object with AWS Signature V4, configured as GDAL's /vsis3 is (same variables).

    Path-style URLs (``AWS_VIRTUAL_HOSTING=FALSE``, what CDSE needs), ``AWS_HTTPS``,
    ``AWS_S3_ENDPOINT`` and ``AWS_DEFAULT_REGION`` of *settings*; the keys appear in no
    message.
    """
    access_key, secret_key = settings.access_key_id, settings.secret_access_key
    if not settings.has_s3_keys:
        raise ValueError("no S3 keys given")
    endpoint, https, region = settings.s3_endpoint, settings.s3_https, settings.s3_region
    path = "/" + quote(f"{bucket}/{key}", safe="/-_.~")
    now = datetime.now(timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": endpoint, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["GET", path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signing_key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"),
                        "aws4_request")  # fmt: skip
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    url = f"{'https' if https else 'http'}://{endpoint}{path}"
    response = _session(settings).get(url, headers=headers, timeout=READ_TIMEOUT_S)
    if response.status_code != 200:
        raise OSError(f"HTTP {response.status_code} reading s3://{bucket}/{key}")
    return response.content
