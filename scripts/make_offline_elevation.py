"""Write the component's offline coarse elevation (``src/component/data/elevation_5arcmin.tif``)
from pvlib's ``Altitude.h5`` (build time only; needs ``h5py`` and a pvlib wheel).

pvlib (BSD-3-Clause) ships a global 5 arc-minute (about 9 km) altitude map aggregated by Mapzen
from SRTM, GMTED2010, ETOPO1, EU-DEM and national models: uint8, height = value x 28 - 450 m,
255 = no data; row 0 at 90 N, column 0 at 180 W. The GeoTIFF keeps those bytes (1.4 MB as
DEFLATE) with the scale and offset as GDAL metadata, so any GIS reads metres.

    pip download --no-deps pvlib==0.16.1 -d /tmp/pvlib && unzip -o /tmp/pvlib/pvlib-*.whl \\
        'pvlib/data/Altitude.h5' -d /tmp/pvlib
    .venv/bin/python scripts/make_offline_elevation.py /tmp/pvlib/pvlib/data/Altitude.h5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "src" / "component" / "data" / "elevation_5arcmin.tif"


def main() -> None:
    import h5py

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("altitude_h5", type=Path)
    parser.add_argument("--output", type=Path, default=TARGET)
    args = parser.parse_args()
    with h5py.File(args.altitude_h5, "r") as source:
        data = source["Altitude"][:]
    height, width = data.shape
    args.output.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": from_origin(-180.0, 90.0, 360.0 / width, 180.0 / height),
        "nodata": 255,
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 9,
        "tiled": True,
    }
    with rasterio.open(args.output, "w", **profile) as target:
        target.write(data, 1)
        target.scales, target.offsets = (28.0,), (-450.0,)
        target.update_tags(
            source="pvlib 0.16.1 data/Altitude.h5 (BSD-3-Clause), aggregated by Mapzen",
            units="metres above sea level (value * scale + offset)",
        )
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
