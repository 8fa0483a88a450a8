"""Parsing and validation of user inputs.

Inputs arrive as strings from three places (the CLI, the DeltaTwin command line and
scheduled runs), so every parser here takes a string, returns a typed value, and raises
:class:`~component.errors.InvalidParameterError` with a message that says what a valid value
looks like. An empty string means "not given": DeltaTwin substitutes optional inputs that
the user left blank as empty strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from component.core.settings import DEM_COLLECTIONS, ELEVATION_SOURCES, Settings
from component.errors import CredentialsError, InvalidParameterError

DEFAULT_STAC_URL = "https://stac.dataspace.copernicus.eu/v1/"
DEFAULT_COLLECTION = "sentinel-2-l1c"
RESOLUTIONS = (10, 20, 60)

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
_MGRS = re.compile(r"^(?:MGRS-)?T?(?P<tile>\d{1,2}[C-HJ-NP-X][A-HJ-NP-Z]{2})$")


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"W,S,E,N"`` in WGS84 degrees; west > east is allowed (antimeridian crossing)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise InvalidParameterError(
            f"bad --bbox {text!r}: give four numbers W,S,E,N in degrees, e.g. 1.2,43.4,1.6,43.7"
        ) from None
    if not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InvalidParameterError(f"bad --bbox {text!r}: longitudes must lie in [-180, 180]")
    if not (-90 <= south < north <= 90):
        raise InvalidParameterError(
            f"bad --bbox {text!r}: latitudes must lie in [-90, 90] with south < north"
        )
    if west == east:
        raise InvalidParameterError(f"bad --bbox {text!r}: west and east must differ")
    return (west, south, east, north)


def _parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_duration(text: str) -> timedelta | None:
    """An ISO 8601 duration such as ``P1D`` or ``PT6H``; ``None`` if *text* is not one."""
    match = _DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        return None
    return timedelta(**{k: int(v) for k, v in match.groupdict().items() if v})


def parse_datetime(text: str, now: datetime | None = None) -> str:
    """A STAC ``datetime`` search value.

    Accepts what the STAC API accepts (an instant, ``start/end`` with ``..`` for open ends)
    plus an ISO duration such as ``P2D``, meaning "from that long ago until now", which is
    what a scheduled run over a rolling window needs. Returns a normalized interval string.
    """
    text = text.strip()
    hint = "give an ISO interval like 2024-01-01/2024-01-31, an instant, or a duration like P1D"
    duration = parse_duration(text)
    if duration is not None:
        end = now or datetime.now(timezone.utc)
        start = end - duration
        return f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/{end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    parts = text.split("/")
    if len(parts) > 2 or not text:
        raise InvalidParameterError(f"bad --datetime {text!r}: {hint}")
    try:
        instants = [None if p in ("", "..") else _parse_instant(p) for p in parts]
    except ValueError:
        raise InvalidParameterError(f"bad --datetime {text!r}: {hint}") from None
    if len(parts) == 2:
        start, end = instants
        if start is None and end is None:
            raise InvalidParameterError(f"bad --datetime {text!r}: both ends are open; {hint}")
        if start and end and start > end:
            raise InvalidParameterError(f"bad --datetime {text!r}: the start is after the end")
    return text


def parse_resolution(text: str | int) -> int:
    """10, 20 or 60 metres: the Sentinel-2 native grids the output is written on."""
    try:
        value = int(str(text).strip().removesuffix("m"))
    except ValueError:
        value = -1
    if value not in RESOLUTIONS:
        raise InvalidParameterError(f"unsupported --resolution {text!r}: choose 10, 20 or 60")
    return value


def parse_cloud_cover(text: str) -> float:
    """A percentage in [0, 100]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise InvalidParameterError(f"bad --max-cloud-cover {text!r}: give a percentage 0-100")
    return value


def parse_tile(text: str) -> str:
    """An MGRS tile such as ``31TCJ`` (``T31TCJ``, ``MGRS-31TCJ`` accepted); returns ``31TCJ``."""
    match = _MGRS.match(text.strip().upper())
    if not match:
        raise InvalidParameterError(f"bad --tile {text!r}: give an MGRS tile such as 31TCJ")
    tile = match["tile"]
    return tile.zfill(5)


def parse_switch(text: str, name: str) -> bool:
    """``true``/``false`` (``yes``/``no``, ``on``/``off``, ``1``/``0``), as DeltaTwin's boolean
    inputs and a bare flag (``true``) give it."""
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise InvalidParameterError(f"bad {name} {text!r}: give true or false")


def parse_elevation(text: str) -> str:
    """``--elevation``: one of :data:`~component.core.settings.ELEVATION_SOURCES`."""
    source = text.strip().lower() or "auto"
    if source not in ELEVATION_SOURCES:
        raise InvalidParameterError(
            f"unsupported --elevation {text!r}: choose {', '.join(ELEVATION_SOURCES)}"
        )
    return source


def check_elevation(source: str, dem: str | None, settings: Settings) -> None:
    """``--dem`` is itself a source (only with ``--elevation auto``); a Copernicus DEM source
    is read from CDSE's S3, so it needs the keys."""
    if dem and source != "auto":
        raise InvalidParameterError(
            f"--dem and --elevation {source} name two elevation sources: give one of them"
        )
    if source in DEM_COLLECTIONS and not settings.has_s3_keys:
        raise CredentialsError(
            f"--elevation {source} reads the Copernicus DEM from CDSE's S3: set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the s3 secret inputs), or use "
            "--elevation auto"
        )


def parse_limit(text: str) -> int:
    """A positive item count."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidParameterError(f"bad --limit {text!r}: give a positive whole number")
    return value


@dataclass(frozen=True)
class SearchParams:
    """What to look for in a STAC API."""

    stac_url: str = DEFAULT_STAC_URL
    collection: str = DEFAULT_COLLECTION
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    max_cloud_cover: float | None = None
    tile: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class RunParams:
    """Everything one ``run`` needs, validated."""

    output: Path
    items: tuple[str, ...] = ()
    search: SearchParams | None = None
    resolution: int = 60
    bbox: tuple[float, float, float, float] | None = None
    max_cloud_cover: float | None = None
    device: str = "auto"
    engine: str = "auto"
    weights: Path | None = None
    cirrus_correction: bool = False
    """Take thin cirrus (from B10) out of every band; off: flagged in SCL and kept out of the
    aerosol estimate only, as Sen2Cor's default configuration does."""
    super_resolve: bool = False
    """Also write B01, B05-B07, B8A, B09, B11, B12 sharpened onto the 10 m grid
    (``<band>_10m``); needs ``resolution`` 10."""
    dem: str | None = None
    """A DEM raster (path or URL) for the terrain's elevation; None: *elevation* decides."""
    elevation: str = "auto"
    """Where the elevation comes from without *dem* (:func:`parse_elevation`)."""
    archive: Path | None = None
    dask_scheduler: str | None = None
    progress: str = "auto"
    """``auto`` (a bar on a terminal, log lines elsewhere), ``bar``, ``log`` or ``off``."""
    settings: Settings = field(default_factory=Settings)
    """How the run reaches S3/HTTP and uses the machine, read from the environment at the edge
    (:meth:`Settings.from_environ`); its keys never appear in ``repr``."""

    def __post_init__(self) -> None:
        check_super_resolve(self.super_resolve, self.resolution)
        check_elevation(self.elevation, self.dem, self.settings)


def check_super_resolve(super_resolve: bool, resolution: int) -> None:
    """The sharpened bands are written on the 10 m grid, beside the 10 m bands."""
    if super_resolve and resolution != 10:
        raise InvalidParameterError(
            f"--super-resolve needs --resolution 10 (the bands are sharpened onto the 10 m "
            f"grid), not {resolution}"
        )
