"""Input parsing: every user-facing value is validated into a typed value or a clear error."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from component.errors import InvalidParameterError
from component.params import (
    parse_bbox,
    parse_cloud_cover,
    parse_datetime,
    parse_duration,
    parse_limit,
    parse_resolution,
    parse_tile,
)

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_bbox_valid() -> None:
    """Four comma-separated numbers (spaces allowed) become a float tuple W,S,E,N."""
    assert parse_bbox("1.2, 43.4,1.6 ,43.7") == (1.2, 43.4, 1.6, 43.7)
    assert parse_bbox("-180,-90,180,90") == (-180.0, -90.0, 180.0, 90.0)


def test_bbox_antimeridian_allowed() -> None:
    """West > east is an antimeridian crossing, which is kept as given."""
    assert parse_bbox("179.5,-17,-179.5,-16") == (179.5, -17.0, -179.5, -16.0)


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3",
        "1,2,3,4,5",
        "",
        "a,b,c,d",
        "1,2,,4",
        "nan,43,2,44",
        "181,43,182,44",
        "1,-91,2,44",
        "1,43,2,91",
        "1,44,2,43",
        "1,43,1,44",
        "1,43,2,43",
    ],
)
def test_bbox_invalid(text: str) -> None:
    """Wrong count, non-numbers, out-of-range or degenerate boxes are refused with a hint."""
    with pytest.raises(InvalidParameterError, match="--bbox"):
        parse_bbox(text)


def test_datetime_instant_and_intervals() -> None:
    """Instants and closed or half-open intervals are passed to the API as written."""
    assert parse_datetime("2024-01-16T10:53:29Z") == "2024-01-16T10:53:29Z"
    assert parse_datetime("2024-01-01/2024-01-31") == "2024-01-01/2024-01-31"
    assert parse_datetime("../2024-01-31T00:00:00Z") == "../2024-01-31T00:00:00Z"
    assert parse_datetime("2024-01-01T00:00:00Z/..") == "2024-01-01T00:00:00Z/.."
    assert parse_datetime("  2024-01-01/2024-01-02 ") == "2024-01-01/2024-01-02"


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("P1D", timedelta(days=1)),
        ("PT6H", timedelta(hours=6)),
        ("P1W", timedelta(weeks=1)),
        ("P2DT3H30M", timedelta(days=2, hours=3, minutes=30)),
        ("PT90S", timedelta(seconds=90)),
    ],
)
def test_datetime_duration_is_relative_to_now(text: str, delta: timedelta) -> None:
    """An ISO duration means 'from that long ago until now', as a closed UTC interval."""
    start, end = parse_datetime(text, now=NOW).split("/")
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    assert end == NOW.strftime(fmt)
    assert start == (NOW - delta).strftime(fmt)


def test_datetime_duration_defaults_to_current_time() -> None:
    """Without ``now`` the window ends at the current UTC time."""
    before = datetime.now(timezone.utc).replace(microsecond=0)
    start, end = parse_datetime("P1D").split("/")
    end_time = datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    start_time = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= end_time <= before + timedelta(minutes=1)
    assert end_time - start_time == timedelta(days=1)


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "1D", "P-1D", "PXD"])
def test_duration_rejects_non_durations(text: str) -> None:
    """Strings that only look like durations are not taken as durations."""
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-13-01",
        "2024-01-31/2024-01-01",
        "../..",
        "/",
        "2024-01-01/2024-01-02/2024-01-03",
        "P",
        "P1DT",
    ],
)
def test_datetime_invalid(text: str) -> None:
    """Garbage, reversed or doubly open intervals and empty durations are refused."""
    with pytest.raises(InvalidParameterError, match="--datetime"):
        parse_datetime(text, now=NOW)


@pytest.mark.parametrize(("text", "value"), [("10", 10), ("20m", 20), (" 60 ", 60), (60, 60)])
def test_resolution_valid(text: str | int, value: int) -> None:
    """The three native Sentinel-2 grids are accepted, with or without an ``m`` suffix."""
    assert parse_resolution(text) == value


@pytest.mark.parametrize("text", ["30", "0", "-10", "ten", "", "10.5"])
def test_resolution_invalid(text: str) -> None:
    """Any other resolution is refused and the message lists the valid ones."""
    with pytest.raises(InvalidParameterError, match="10, 20 or 60"):
        parse_resolution(text)


@pytest.mark.parametrize(
    ("text", "tile"),
    [("31TCJ", "31TCJ"), ("t31tcj", "31TCJ"), ("MGRS-33UUU", "33UUU"), ("1CVP", "01CVP")],
)
def test_tile_valid(text: str, tile: str) -> None:
    """MGRS tiles in their usual spellings normalise to the 5-character form."""
    assert parse_tile(text) == tile


@pytest.mark.parametrize("text", ["", "31", "31TIJ", "31TCJX", "331TCJ", "31ACJ"])
def test_tile_invalid(text: str) -> None:
    """Malformed tiles (wrong length, letters I/O, bad latitude band) are refused."""
    with pytest.raises(InvalidParameterError, match="--tile"):
        parse_tile(text)


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0.0), ("20", 20.0), ("100", 100.0), ("5.5", 5.5)]
)
def test_cloud_cover_valid(text: str, value: float) -> None:
    """Percentages in [0, 100] are accepted."""
    assert parse_cloud_cover(text) == value


@pytest.mark.parametrize("text", ["-1", "100.1", "lots", "", "nan"])
def test_cloud_cover_invalid(text: str) -> None:
    """Anything outside [0, 100] (NaN included) is refused."""
    with pytest.raises(InvalidParameterError, match="--max-cloud-cover"):
        parse_cloud_cover(text)


def test_limit() -> None:
    """A positive whole number is accepted; zero, negatives and non-integers are not."""
    assert parse_limit("3") == 3
    for text in ("0", "-2", "1.5", "many", ""):
        with pytest.raises(InvalidParameterError, match="--limit"):
            parse_limit(text)


def test_super_resolve_needs_the_10m_grid(tmp_path: Path) -> None:
    """``--super-resolve`` writes the sharpened bands on the 10 m grid: at 20 or 60 m it is a
    parameter error (exit 2), from the CLI as from the Python API's RunParams."""
    from component.params import RunParams, check_super_resolve

    check_super_resolve(True, 10)
    check_super_resolve(False, 60)
    assert RunParams(output=tmp_path, resolution=10, super_resolve=True).super_resolve
    for resolution in (20, 60):
        with pytest.raises(InvalidParameterError, match="--super-resolve needs --resolution 10"):
            RunParams(output=tmp_path, resolution=resolution, super_resolve=True)
    assert InvalidParameterError.exit_code == 2


def test_elevation_names_a_source_or_is_refused(tmp_path: Path) -> None:
    """``--elevation``: one of the sources (any case, empty is auto); an unknown one and one
    beside ``--dem`` are parameter errors (exit 2); a Copernicus DEM source without S3 keys is
    a credentials error (exit 7) that names the keys, before any work."""
    from component.core.settings import ELEVATION_SOURCES, Settings
    from component.errors import CredentialsError
    from component.params import RunParams, parse_elevation

    assert [parse_elevation(s.upper()) for s in ELEVATION_SOURCES] == list(ELEVATION_SOURCES)
    assert parse_elevation(" ") == "auto"
    with pytest.raises(InvalidParameterError, match=r"--elevation 'srtm'.*copernicus-30"):
        parse_elevation("srtm")
    with pytest.raises(InvalidParameterError, match="--dem and --elevation offline"):
        RunParams(output=tmp_path, dem="dem.tif", elevation="offline")
    assert RunParams(output=tmp_path, dem="dem.tif").elevation == "auto"
    with pytest.raises(CredentialsError, match="AWS_SECRET_ACCESS_KEY") as raised:
        RunParams(output=tmp_path, elevation="copernicus-30")
    assert raised.value.exit_code == 7
    keyed = Settings().with_keys("id", "secret")
    assert RunParams(output=tmp_path, elevation="copernicus-30", settings=keyed).elevation
