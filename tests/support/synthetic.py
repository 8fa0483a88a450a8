"""Synthetic Sentinel-2 L1C products in the real SAFE layout, with a CDSE-shaped STAC item.

Tests need L1C input that exercises the same code paths as production (JPEG2000 decoding with
reduced-resolution reads, three native resolutions, the processing-baseline radiometric offset,
nodata and saturated pixels, CDSE's STAC 1.1 item shape) without network access. Everything is
generated from ``seed`` so that a test sees the same pixels on every run.

The pixel values are top-of-atmosphere digital numbers of a plausible landscape: vegetation,
bare soil and water patches with spatial texture at several scales and a haze field, so that the
spectra and the spatial statistics look like a real scene (not white noise). They are not a
radiative-transfer simulation.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds, transform_geom

__all__ = [
    "ALL_BANDS",
    "ANGLE_STEP_M",
    "BAND_INFO",
    "CDSE_STAC_EXTENSIONS",
    "cdse_s3_base",
    "make_l1c_product",
    "mgrs_tile_grid",
    "multihash_sha256",
    "synthetic_angles",
    "tile_angles_xml",
]

# name: (resolution m, common name, centre wavelength um as CDSE writes it, MTD band_id)
BAND_INFO: dict[str, tuple[int, str | None, float, int]] = {
    "B01": (60, "coastal", 0.443, 0),
    "B02": (10, "blue", 0.493, 1),
    "B03": (10, "green", 0.56, 2),
    "B04": (10, "red", 0.665, 3),
    "B05": (20, "rededge071", 0.704, 4),
    "B06": (20, "rededge075", 0.74, 5),
    "B07": (20, "rededge078", 0.783, 6),
    "B08": (10, "nir", 0.833, 7),
    "B8A": (20, "nir08", 0.865, 8),
    "B09": (60, "nir09", 0.945, 9),
    "B10": (60, "cirrus", 1.373, 10),
    "B11": (20, "swir16", 1.614, 11),
    "B12": (20, "swir22", 2.202, 12),
}

# TOA reflectance of the landscape's end-members, per band (B01..B12 order of BAND_INFO).
_SPECTRA: dict[str, dict[str, float]] = {
    "vegetation": dict(
        zip(
            BAND_INFO,
            [0.11, 0.085, 0.08, 0.055, 0.10, 0.22, 0.27, 0.30, 0.31, 0.10, 0.004, 0.17, 0.08],
            strict=True,
        )
    ),
    "soil": dict(
        zip(
            BAND_INFO,
            [0.13, 0.12, 0.13, 0.15, 0.17, 0.19, 0.20, 0.22, 0.23, 0.08, 0.005, 0.30, 0.24],
            strict=True,
        )
    ),
    "water": dict(
        zip(
            BAND_INFO,
            [0.12, 0.095, 0.07, 0.045, 0.035, 0.03, 0.028, 0.025, 0.022, 0.01, 0.002, 0.01, 0.008],
            strict=True,
        )
    ),
}

ALL_BANDS = tuple(BAND_INFO)
"""The 13 L1C bands, in the order of their MTD ``bandId`` (0..12)."""

CDSE_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/product/v1.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
VIEW_EXTENSION = "https://stac-extensions.github.io/view/v1.1.0/schema.json"

_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # MGRS letters: no I, no O
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_BANDS_LAT = "CDEFGHJKLMNPQRSTUVWX"
# First orbit of each unit, to give plausible absolute orbit numbers in granule names.
_ORBIT_EPOCH = {
    "sentinel-2a": datetime(2015, 6, 23, tzinfo=timezone.utc),
    "sentinel-2b": datetime(2017, 3, 7, tzinfo=timezone.utc),
    "sentinel-2c": datetime(2024, 9, 5, tzinfo=timezone.utc),
}
_ORBITS_PER_DAY = 143 / 10
_PSD = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd"
_PSD_TILE = "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-1C_Tile_Metadata.xsd"
ANGLE_STEP_M = 5000
"""Spacing of the MTD_TL.xml angle grids: 5 km, 23 x 23 nodes over a 109.8 km tile."""
_ANGLE_NODES = 23
_XSI = "http://www.w3.org/2001/XMLSchema-instance"


def multihash_sha256(path: Path) -> str:
    """``file:checksum`` of a file: sha2-256 multihash in hex (``1220`` + digest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


def cdse_s3_base(date: datetime) -> str:
    """CDSE's S3 prefix for L1C products of a sensing day, to pass as ``href_base``."""
    return f"s3://eodata/Sentinel-2/MSI/L1C/{date:%Y/%m/%d}/"


def mgrs_tile_grid(tile: str) -> tuple[int, float, float]:
    """EPSG code and upper-left corner (x, y) of a Sentinel-2 MGRS tile.

    Sentinel-2 tiles are 109.8 km squares whose corner is the MGRS 100 km square's north-west
    corner moved outwards onto the 60 m grid (31TCJ -> 300000, 4900020; 51CVP -> 399960,
    1400020, as CDSE's items say). Computing it keeps any tile usable without shipping the
    tiling grid.
    """
    zone, band, col, row = int(tile[:2]), tile[2], tile[3], tile[4]
    north = band >= "N"
    epsg = (32600 if north else 32700) + zone
    col_set = _LETTERS[((zone - 1) % 3) * 8 : ((zone - 1) % 3) * 8 + 8]
    easting = (col_set.index(col) + 1) * 100_000
    row_offset = 5 if zone % 2 == 0 else 0
    row_northing = ((_ROW_LETTERS.index(row) - row_offset) % 20) * 100_000
    lat_min = -80 + 8 * _BANDS_LAT.index(band)
    to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
    _, band_north = to_utm.transform(zone * 6 - 183, lat_min)
    k = math.ceil((band_north - 100_000 - row_northing) / 2_000_000)
    north_edge = row_northing + k * 2_000_000 + 100_000
    # The 60 m grid is anchored on the equator: northings from 0 (north) or 10 000 km (south).
    if north:
        top = math.ceil(north_edge / 60) * 60
    else:
        top = 10_000_000 - math.floor((10_000_000 - north_edge) / 60) * 60
    return epsg, float(math.floor(easting / 60) * 60), float(top)


class _Texture:
    """Smooth multi-scale noise in [0, 1], defined in metres and sampled at any resolution.

    Coarse random grids (one per scale) are bilinearly sampled at pixel centres, so the same seed
    gives the same landscape at 10, 20 and 60 m and the bands of a product stay coregistered.
    Rows are produced in blocks so that a whole 10980 x 10980 tile fits in modest memory.
    """

    def __init__(
        self, rng: np.random.Generator, shape: tuple[int, int], res: int, scales_m: tuple[int, ...]
    ) -> None:
        h, w = shape
        self.res, self.width = res, w
        self.octaves = []
        for i, cell in enumerate(scales_m):
            grid = rng.random((int(h * res / cell) + 2, int(w * res / cell) + 2), dtype=np.float32)
            self.octaves.append((cell, grid, 0.5**i))
        self.total = sum(weight for _, _, weight in self.octaves)
        # Contrast stretch from a regular subsample (deterministic, cheap at any size).
        sample = self._raw(np.arange(0, h, max(1, h // 256)))
        self.lo, self.hi = float(sample.min()), float(sample.max())

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), self.width), dtype=np.float32)
        for cell, grid, weight in self.octaves:
            fy = (rows.astype(np.float32) + 0.5) * self.res / cell
            fx = (np.arange(self.width, dtype=np.float32) + 0.5) * self.res / cell
            y0, x0 = fy.astype(np.int64), fx.astype(np.int64)
            wy, wx = (fy - y0)[:, None], (fx - x0)[None, :]
            top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
            bottom = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
            out += weight * (top * (1 - wy) + bottom * wy)
        return out / self.total

    def rows_at(self, rows: np.ndarray) -> np.ndarray:
        """The given rows of the field, stretched to [0, 1]."""
        return np.clip((self._raw(rows) - self.lo) / (self.hi - self.lo + 1e-6), 0, 1)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` of the field, stretched to [0, 1]."""
        return self.rows_at(np.arange(r0, r1))


_BLOCK_ROWS = 512


def _band_dn(
    name: str,
    shape: tuple[int, int],
    seed: int,
    offset: int,
    nodata_fraction: float,
    saturated_fraction: float,
) -> np.ndarray:
    """Digital numbers of one band: landscape reflectance + haze, quantized like L1C."""
    res, _, wavelength, band_id = BAND_INFO[name]
    # The latent fields use their own generators so that every band sees the same landscape.
    veg = _Texture(np.random.default_rng([seed, 1]), shape, res, (2560, 640, 160, 40))
    water = _Texture(np.random.default_rng([seed, 2]), shape, res, (5120, 1280, 320))
    haze = _Texture(np.random.default_rng([seed, 3]), shape, res, (10240, 2560))
    bright = _Texture(np.random.default_rng([seed, 4]), shape, res, (1280, 320, 80))
    noise = np.random.default_rng([seed, 100 + band_id])
    spectra = {k: v[name] for k, v in _SPECTRA.items()}
    # Path radiance grows towards the blue: a spatially smooth haze.
    haze_gain = 0.04 * (0.443 / wavelength) ** 2
    if saturated_fraction > 0:
        sample = bright.rows_at(np.arange(0, shape[0], max(1, shape[0] // 256)))
        threshold = float(np.quantile(sample, 1 - saturated_fraction))
    dn = np.empty(shape, dtype=np.uint16)
    for r0 in range(0, shape[0], _BLOCK_ROWS):
        r1 = min(shape[0], r0 + _BLOCK_ROWS)
        v = np.clip((veg.rows(r0, r1) - 0.35) * 2.5, 0, 1)
        w = np.clip((water.rows(r0, r1) - 0.78) * 12, 0, 1)
        refl = (1 - w) * (v * spectra["vegetation"] + (1 - v) * spectra["soil"])
        refl += w * spectra["water"] + haze.rows(r0, r1) * haze_gain
        refl *= 1 + 0.03 * noise.standard_normal((r1 - r0, shape[1]), dtype=np.float32)
        block = np.clip(np.rint(refl * 10_000) + offset, 1, 65_534).astype(np.uint16)
        if saturated_fraction > 0:
            block[bright.rows(r0, r1) >= threshold] = 65_535
        dn[r0:r1] = block
    if nodata_fraction > 0:
        # L1C nodata sits on the swath edge: a strip on the west side of the tile.
        dn[:, : round(nodata_fraction * shape[1])] = 0
    return dn


def _write_jp2(path: Path, dn: np.ndarray, epsg: int, x0: float, y0: float, res: int) -> None:
    """Write a lossless JPEG2000 with several resolution levels, like the real L1C files.

    Resolution levels are what GDAL exposes as overviews, so reduced-resolution reads (previews,
    pyramids) decode only part of the codestream, as they do on real products.
    """
    h, w = dn.shape
    levels = max(1, min(6, int(math.log2(max(1, min(h, w) // 32))) + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="JP2OpenJPEG",
        width=w,
        height=h,
        count=1,
        dtype="uint16",
        crs=CRS.from_epsg(epsg).to_wkt(),
        transform=Affine(res, 0, x0, 0, -res, y0),
        QUALITY=100,
        REVERSIBLE="YES",
        RESOLUTIONS=levels,
        # JPEG 2000 tiles of 1024 px like the real files; OpenJPEG refuses tiles under 32 px,
        # so a tiny band (a 60 m band of a small test product) is one untiled codestream.
        **({"BLOCKXSIZE": min(w, 1024), "BLOCKYSIZE": min(h, 1024)} if min(h, w) >= 32 else {}),
    ) as dst:
        dst.write(dn, 1)


def _mtd_xml(
    product: str,
    start: datetime,
    baseline: str,
    platform: str,
    rel_orbit: int,
    abs_orbit: int,
    granule: str,
    band_files: dict[str, str],
    cloud_cover: float,
) -> str:
    """A small MTD_MSIL1C.xml with the structure and radiometric fields of the real one."""
    iso = start.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    images = "\n".join(
        f"              <IMAGE_FILE>{rel.removesuffix('.jp2')}</IMAGE_FILE>"
        for rel in band_files.values()
    )
    offsets = ""
    if baseline >= "04.00":
        rows = "\n".join(
            f'        <RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>' for i in range(13)
        )
        offsets = f"\n      <Radiometric_Offset_List>\n{rows}\n      </Radiometric_Offset_List>"
    unit = "Sentinel-2" + platform[-1].upper()
    datatake = f"G{product[:3]}_{start:%Y%m%dT%H%M%S}_{abs_orbit:06d}_N{baseline}"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-1C_User_Product xmlns:n1="{_PSD}" xmlns:xsi="{_XSI}">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{iso}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{iso}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{product}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-1C</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <Datatake datatakeIdentifier="{datatake}">
        <SPACECRAFT_NAME>{unit}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{iso}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>{rel_orbit}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true">
        <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule granuleIdentifier="{granule}" imageFormat="JPEG2000">
{images}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>{offsets}
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud_cover:.1f}</Cloud_Coverage_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-1C_User_Product>
"""


def synthetic_angles(bands: tuple[str, ...] = ALL_BANDS) -> dict[str, Any]:
    """Sun and viewing angle grids (degrees) on the 23 x 23 nodes of MTD_TL.xml, 5 km apart.

    Plausible, smooth and deterministic: the sun about 30 degrees high in the south-south-east,
    varying by about a degree over the tile; two detectors per band seeing the western and the
    eastern part of the tile (overlapping on three node columns, NaN elsewhere as in real
    files), their zenith growing eastwards from 2 to 10 degrees and their azimuths differing by
    8 degrees (odd and even detectors look in slightly different directions).
    Returns ``sun_zenith``, ``sun_azimuth`` (23, 23) and ``view``: ``{band: {detector:
    (zenith, azimuth)}}``.
    """
    rows, cols = np.mgrid[0:_ANGLE_NODES, 0:_ANGLE_NODES].astype(np.float64)
    view: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for name in bands:
        band_id = BAND_INFO[name][3]
        zenith = 2.0 + 0.35 * cols + 0.02 * band_id + 0.01 * rows
        detectors = {}
        for detector, (first, last, azimuth) in {1: (0, 12, 100.0), 2: (10, 22, 108.0)}.items():
            inside = (cols >= first) & (cols <= last)
            detectors[detector] = (
                np.where(inside, zenith, np.nan),
                np.where(inside, azimuth + 0.1 * rows, np.nan),
            )
        view[name] = detectors
    return {
        "sun_zenith": 60.0 + 0.04 * rows - 0.01 * cols,
        "sun_azimuth": 160.0 + 0.05 * cols + 0.02 * rows,
        "view": view,
    }


def _values_list(values: np.ndarray) -> str:
    lines = "\n".join(
        "            <VALUES>"
        + " ".join("NaN" if np.isnan(v) else f"{v:.6g}" for v in row)
        + "</VALUES>"
        for row in values
    )
    return f"          <Values_List>\n{lines}\n          </Values_List>"


def _angle_pair(tag: str, zenith: np.ndarray, azimuth: np.ndarray, attributes: str = "") -> str:
    parts = []
    for name, values in (("Zenith", zenith), ("Azimuth", azimuth)):
        parts.append(
            f"""        <{name}>
          <COL_STEP unit="m">{ANGLE_STEP_M}</COL_STEP>
          <ROW_STEP unit="m">{ANGLE_STEP_M}</ROW_STEP>
{_values_list(values)}
        </{name}>"""
        )
    body = "\n".join(parts)
    return f"      <{tag}{attributes}>\n{body}\n      </{tag}>"


def tile_angles_xml(
    tile_id: str,
    sensing: datetime,
    epsg: int,
    ulx: float,
    uly: float,
    sizes: dict[int, int],
    angles: dict[str, Any],
) -> str:
    """An MTD_TL.xml (Level-1C tile metadata) with the structure of the real one.

    Holds what readers of real files use: ``Tile_Geocoding`` (CRS, sizes and upper-left corner
    per resolution) and ``Tile_Angles``: the sun grid, one viewing grid per band and detector
    (``bandId`` 0..12, NaN outside the detector), and the means.
    """
    iso = sensing.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    zone = f"{epsg % 100}{'N' if epsg < 32700 else 'S'}"
    size_xml = "\n".join(
        f'      <Size resolution="{r}">\n        <NROWS>{n}</NROWS>\n        <NCOLS>{n}</NCOLS>'
        "\n      </Size>"
        for r, n in sorted(sizes.items())
    )
    position_xml = "\n".join(
        f'      <Geoposition resolution="{r}">\n        <ULX>{ulx:.0f}</ULX>\n'
        f"        <ULY>{uly:.0f}</ULY>\n        <XDIM>{r}</XDIM>\n        <YDIM>-{r}</YDIM>"
        "\n      </Geoposition>"
        for r in sorted(sizes)
    )
    viewing = []
    means = []
    for name, detectors in angles["view"].items():
        band_id = BAND_INFO[name][3]
        for detector, (zenith, azimuth) in sorted(detectors.items()):
            attributes = f' bandId="{band_id}" detectorId="{detector}"'
            viewing.append(
                _angle_pair("Viewing_Incidence_Angles_Grids", zenith, azimuth, attributes)
            )
        zeniths = np.concatenate([z.ravel() for z, _ in detectors.values()])
        azimuths = np.concatenate([a.ravel() for _, a in detectors.values()])
        means.append(
            f'        <Mean_Viewing_Incidence_Angle bandId="{band_id}">\n'
            f'          <ZENITH_ANGLE unit="deg">{np.nanmean(zeniths):.6g}</ZENITH_ANGLE>\n'
            f'          <AZIMUTH_ANGLE unit="deg">{np.nanmean(azimuths):.6g}</AZIMUTH_ANGLE>\n'
            "        </Mean_Viewing_Incidence_Angle>"
        )
    sun = _angle_pair("Sun_Angles_Grid", angles["sun_zenith"], angles["sun_azimuth"])
    viewing_xml = "\n".join(viewing)
    means_xml = "\n".join(means)
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-1C_Tile_ID xmlns:n1="{_PSD_TILE}" xmlns:xsi="{_XSI}">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">{tile_id}</TILE_ID>
    <SENSING_TIME metadataLevel="Standard">{iso}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone {zone}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
{size_xml}
{position_xml}
    </Tile_Geocoding>
    <Tile_Angles metadataLevel="Standard">
{sun}
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">{np.mean(angles["sun_zenith"]):.6g}</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">{np.mean(angles["sun_azimuth"]):.6g}</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
{viewing_xml}
      <Mean_Viewing_Incidence_Angle_List>
{means_xml}
      </Mean_Viewing_Incidence_Angle_List>
    </Tile_Angles>
  </n1:Geometric_Info>
</n1:Level-1C_Tile_ID>
"""


ECMWF = {"water_mm": 14.4, "msl_pa": 100886.0, "ozone_du": 277.0}
"""The ECMWF values a real 2017 granule's AUX_ECMWFT held (../shared/docs/atmosphere-inputs.md),
at the centre of the synthetic grid."""


def write_ecmwf_grib(path: Path, centre: tuple[float, float], **values: float) -> Path:
    """An AUX_ECMWFT as a SAFE granule holds it: a GRIB of 9 x 9 points at 0.125 deg around
    *centre* (lon, lat) with total column water vapour (kg/m²), mean sea-level pressure (Pa) and
    total ozone, rising gently eastwards. GDAL writes GRIB2 only, so the elements are GRIB2's
    (``PWAT``, ``PRMSL``, ``TOZNE`` in Dobson units) where the real GRIB1 file names them
    ``TCWV``/``PWC``, ``MSL``, ``TCO3`` (kg/m²); the reader knows both."""
    import rasterio.shutil

    v = ECMWF | values
    ramp = np.linspace(-1.0, 1.0, 9, dtype=np.float32)[None, :] * np.ones((9, 1), np.float32)
    fields = [v["water_mm"] + 0.5 * ramp, v["msl_pa"] + 50.0 * ramp, v["ozone_du"] + 2.0 * ramp]
    lon, lat = centre
    transform = from_origin(lon - 4.5 * 0.125, lat + 4.5 * 0.125, 0.125, 0.125)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_name(f".{path.name}.tif")
    profile = {"driver": "GTiff", "width": 9, "height": 9, "count": 3, "dtype": "float32"}
    with rasterio.open(source, "w", crs="EPSG:4326", transform=transform, **profile) as target:
        target.write(np.stack(fields))
    # Product definition template 4.0: category, number, analysis/forecast..., surface type.
    templates = {1: "1 3 2 0 0 0 0 1 0 1 0 0 255 0 0", 2: "3 1 2 0 0 0 0 1 0 101 0 0 255 0 0"}
    templates[3] = "14 0 2 0 0 0 0 1 0 1 0 0 255 0 0"
    options = {f"BAND_{b}_PDS_TEMPLATE_ASSEMBLED_VALUES": t for b, t in templates.items()}
    rasterio.shutil.copy(source, path, driver="GRIB", DATA_ENCODING="SIMPLE_PACKING", **options)
    source.unlink()
    return path


CAMS = {
    "aod550": 0.123,
    "aod469": 0.151,
    "aod670": 0.095,
    "aod865": 0.068,
    "aod1240": 0.043,
    "bcaod550": 0.004,
    "duaod550": 0.020,
    "omaod550": 0.030,
    "ssaod550": 0.030,
    "suaod550": 0.039,
    "z": 1961.3,
}
"""A CAMS forecast of a rural scene at the centre of the synthetic grid: total aerosol optical
depth at 550 nm (unitless; an Angstrom exponent of 1.3 across 469-1240 nm), its five
components (black carbon, dust, organic matter, sea salt, sulphate: they add up to the total)
and the surface geopotential (m²/s², 200 m)."""

CAMS_TABLE_210 = {
    207: "aod550",
    208: "ssaod550",
    209: "duaod550",
    210: "omaod550",
    211: "bcaod550",
    212: "suaod550",
    213: "aod469",
    214: "aod670",
    215: "aod865",
    216: "aod1240",
}
"""ECMWF's GRIB1 local table 210 (CAMS aerosols): parameter number -> ECMWF short name. The
geopotential ``z`` is table 128's parameter 129."""


def write_cams_grib(
    path: Path, centre: tuple[float, float], *, edition: int = 1, **values: float
) -> Path:
    """An AUX_CAMSFO as a SAFE granule holds it: CAMS forecasts on 9 x 9 points at 0.125 deg
    around *centre* (lon, lat), the :data:`CAMS` fields (or *values*), the optical depths
    rising gently eastwards.

    Edition 1 is the real files' GRIB1, ECMWF's local table 210 (``aod550`` is its parameter
    207) and ``z`` of table 128, written here byte by byte (GDAL writes GRIB2 only): GDAL
    reads it back as ``var207 of table 210 of center ECMWF`` (unit ``[-]``) and ``Z``.
    Edition 2 is written by GDAL as ECMWF encodes the aerosols in GRIB2: ``AOTK``
    (discipline 0, category 20, number 102) with product template 4.48, an aerosol type
    (62000 total, 62001 dust) and a wavelength (550 nm is ``11 9 550``: equal to 550e-9 m);
    it holds dust AOD 550, total AOD 865, total AOD 550 and ``GP``, in that order, so that a
    reader must tell them apart by type and wavelength."""
    v = CAMS | values
    ramp = np.linspace(-1.0, 1.0, 9)[None, :] * np.ones((9, 1))
    lon, lat = centre
    path.parent.mkdir(parents=True, exist_ok=True)
    if edition == 1:
        messages = [(128, 129, v["z"] + 20.0 * ramp, 1)]
        for number, name in CAMS_TABLE_210.items():
            messages.append((210, number, v[name] * (1.0 + 0.1 * ramp), 4))
        path.write_bytes(
            b"".join(
                _grib1_message(values, table, number, (lon, lat), 0.125, decimals)
                for table, number, values, decimals in messages
            )
        )
        return path
    import rasterio.shutil

    bands = [
        ("20 102 62001 255 0 0 0 0 11 9 550 0 0", v["duaod550"]),
        ("20 102 62000 255 0 0 0 0 11 9 865 0 0", v["aod865"]),
        ("20 102 62000 255 0 0 0 0 11 9 550 0 0", v["aod550"]),
    ]
    fields = [value * (1.0 + 0.1 * ramp) for _, value in bands] + [v["z"] + 20.0 * ramp]
    tail = " 2 0 0 0 0 1 0 1 0 0 255 0 0"  # generating process ... surface (template 4.0)
    options: dict[str, Any] = {}
    for index, (template, _) in enumerate(bands, start=1):
        options[f"BAND_{index}_PDS_PDTN"] = 48
        options[f"BAND_{index}_PDS_TEMPLATE_ASSEMBLED_VALUES"] = template + tail
    options["BAND_4_PDS_PDTN"] = 0
    options["BAND_4_PDS_TEMPLATE_ASSEMBLED_VALUES"] = "3 4" + tail  # geopotential
    transform = from_origin(lon - 4.5 * 0.125, lat + 4.5 * 0.125, 0.125, 0.125)
    source = path.with_name(f".{path.name}.tif")
    profile = {"driver": "GTiff", "width": 9, "height": 9, "count": 4, "dtype": "float32"}
    with rasterio.open(source, "w", crs="EPSG:4326", transform=transform, **profile) as target:
        target.write(np.stack(fields).astype(np.float32))
    rasterio.shutil.copy(source, path, driver="GRIB", DATA_ENCODING="SIMPLE_PACKING", **options)
    source.unlink()
    return path


def _grib1_message(
    values: np.ndarray,
    table: int,
    number: int,
    centre: tuple[float, float],
    step: float,
    decimals: int,
) -> bytes:
    """One GRIB1 message as ECMWF writes it (centre 98): *values* (rows north first) on a
    regular latitude/longitude grid of *step* degrees centred on *centre* (lon, lat), at the
    surface, a 12 h forecast, simple packing of 16 bits after scaling by 10***decimals*."""

    def signed(value: int, size: int) -> bytes:  # GRIB1's sign bit, not two's complement
        return ((1 << (8 * size - 1)) | -value if value < 0 else value).to_bytes(size, "big")

    def ibm(value: float) -> bytes:  # IBM single precision: base 16, excess-64 exponent
        if value == 0:
            return bytes(4)
        sign, value, exponent = (0x80 if value < 0 else 0), abs(value), 64
        while value >= 1:
            value, exponent = value / 16, exponent + 1
        while value < 1 / 16:
            value, exponent = value * 16, exponent - 1
        return bytes([sign | exponent]) + int(value * (1 << 24)).to_bytes(3, "big")

    rows, columns = values.shape
    lon, lat = centre
    milli = round(step * 1000)  # GRIB1 states degrees in thousandths
    north = round((lat + step * (rows - 1) / 2) * 1000)
    west = round((lon - step * (columns - 1) / 2) * 1000)
    south, east = north - milli * (rows - 1), west + milli * (columns - 1)
    # Product definition: length, table version, centre, process, grid, GDS present,
    # parameter, surface, 2024-01-16 00 UTC + 12 h, century 21, decimal scale factor.
    pds = bytes([0, 0, 28, table, 98, 145, 255, 0x80, number, 1, 0, 0, 24, 1, 16, 0, 0, 1, 12])
    pds += bytes([0, 0, 0, 0, 0, 21, 0]) + signed(decimals, 2)
    # Grid description: regular lat/lon, Ni x Nj, first and last points, increments, north
    # to south and west to east.
    gds = bytes([0, 0, 32, 0, 255, 0]) + columns.to_bytes(2, "big") + rows.to_bytes(2, "big")
    gds += signed(north, 3) + signed(west, 3) + bytes([0x80]) + signed(south, 3)
    gds += signed(east, 3) + milli.to_bytes(2, "big") + milli.to_bytes(2, "big") + bytes(5)
    scaled = np.round(np.asarray(values, np.float64) * 10.0**decimals)
    reference = float(scaled.min())
    packed = (scaled - reference).astype(">u2").tobytes()  # 16 bits a value
    pad = (11 + len(packed)) % 2  # a section's length is even; the unused bits say so
    bds = (11 + len(packed) + pad).to_bytes(3, "big") + bytes([8 * pad]) + signed(0, 2)
    bds += ibm(reference) + bytes([16]) + packed + bytes(pad)
    body = pds + gds + bds + b"7777"
    return b"GRIB" + (8 + len(body)).to_bytes(3, "big") + bytes([1]) + body


def write_dem(path: Path, bbox: list[float] | tuple[float, ...], metres: float) -> Path:
    """A flat DEM GeoTIFF in degrees (float32, 0.005 deg cells) over *bbox* (W, S, E, N), as
    the Copernicus DEM COGs are (EPSG:4326)."""
    west, south, east, north = bbox
    cell = 0.005
    width = max(2, math.ceil((east - west) / cell))
    height = max(2, math.ceil((north - south) / cell))
    profile = {"driver": "GTiff", "count": 1, "dtype": "float32", "crs": "EPSG:4326"}
    profile |= {"width": width, "height": height, "transform": from_origin(west, north, cell, cell)}
    with rasterio.open(path, "w", **profile) as target:
        target.write(np.full((1, height, width), metres, np.float32))
    return path


def copernicus_dem_item(
    href: str, bbox: list[float] | tuple[float, ...], collection: str = "cop-dem-glo-90-dged-cog"
) -> dict[str, Any]:
    """A CDSE-shaped Copernicus DEM item (by default of the 90 m collection, asset ``data``)."""
    west, south, east, north = bbox
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"Copernicus_DSM_COG_30_{south:.0f}_{west:.0f}_DEM",
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": list(bbox),
        "properties": {"datetime": "2021-04-22T00:00:00Z"},
        "links": [],
        "assets": {
            "data": {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"]}
        },
    }


def make_l1c_product(
    root: Path,
    *,
    tile: str = "31TCJ",
    size_10m: int = 384,
    bands: tuple[str, ...] = ALL_BANDS,
    baseline: str = "05.10",
    date: datetime = datetime(2024, 1, 16, 10, 53, 29, tzinfo=timezone.utc),
    platform: str = "sentinel-2b",
    seed: int = 0,
    nodata_fraction: float = 0.0,
    saturated_fraction: float = 0.0,
    href_base: str | None = None,
    cloud_cover: float = 0.0,
    relative_orbit: int = 51,
    angles: bool = True,
    ecmwf: bool = True,
    cams: bool = False,
) -> dict[str, Any]:
    """Write a synthetic L1C product under ``root`` and return its CDSE-shaped STAC item.

    Layout: ``<root>/<product>.SAFE/MTD_MSIL1C.xml`` and
    ``<root>/<product>.SAFE/GRANULE/L1C_<tile>_A<orbit>_<time>/IMG_DATA/<tile>_<time>_<band>.jp2``.
    The product covers the tile's north-west corner over ``size_10m`` 10 m pixels (10980 for a
    whole tile); 20 m and 60 m bands cover the same extent at their native resolution, so choose a
    multiple of 6 to keep every grid exactly aligned (the default 384 is).

    Digital numbers carry the +1000 radiometric offset when ``baseline`` >= "04.00" (declared in
    the MTD file's ``RADIO_ADD_OFFSET``; older baselines have no offset list, as real products).
    The STAC item keeps CDSE's ``raster:offset`` -0.1 whatever the baseline, like CDSE does.

    Asset hrefs are absolute local paths, or ``href_base`` + the path relative to ``root`` (e.g.
    ``cdse_s3_base(date)`` once the tree is uploaded under that prefix).

    By default the product holds all 13 bands, each on its native grid, and its sun/view
    geometry: the granule's ``MTD_TL.xml`` (asset ``granule_metadata``) with the angle grids of
    :func:`synthetic_angles`, and their scene means as ``view:*`` item properties as CDSE
    writes them. ``angles=False`` leaves both out (a product whose geometry is unknown).
    The granule also holds ``AUX_DATA/AUX_ECMWFT`` (:func:`write_ecmwf_grib`) unless
    ``ecmwf=False``, and with ``cams=True`` ``AUX_DATA/AUX_CAMSFO`` (:func:`write_cams_grib`,
    GRIB1), as products of baseline 04.00 on do (off by default: older baselines lack it).
    """
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    date = date.astimezone(timezone.utc)
    epsg, ulx, uly = mgrs_tile_grid(tile)
    unit = {"sentinel-2a": "S2A", "sentinel-2b": "S2B", "sentinel-2c": "S2C"}[platform]
    stamp = f"{date:%Y%m%dT%H%M%S}"
    discriminator = f"{date + timedelta(minutes=47, seconds=3):%Y%m%dT%H%M%S}"
    n_base = "N" + baseline.replace(".", "")
    product = f"{unit}_MSIL1C_{stamp}_{n_base}_R{relative_orbit:03d}_T{tile}_{discriminator}"
    abs_orbit = int((date - _ORBIT_EPOCH[platform]).total_seconds() / 86400 * _ORBITS_PER_DAY) + 1
    granule = f"L1C_T{tile}_A{abs_orbit:06d}_{date - timedelta(seconds=4):%Y%m%dT%H%M%S}"
    safe = root / f"{product}.SAFE"
    offset = 1000 if baseline >= "04.00" else 0
    extent = size_10m * 10

    def href(path: Path) -> str:
        return href_base + path.relative_to(root).as_posix() if href_base else str(path)

    assets: dict[str, Any] = {}
    band_files: dict[str, str] = {}
    for name in bands:
        res, common, wavelength, _ = BAND_INFO[name]
        n = math.ceil(extent / res)
        path = safe / "GRANULE" / granule / "IMG_DATA" / f"T{tile}_{stamp}_{name}.jp2"
        dn = _band_dn(name, (n, n), seed, offset, nodata_fraction, saturated_fraction)
        _write_jp2(path, dn, epsg, ulx, uly, res)
        band_files[name] = path.relative_to(safe).as_posix()
        band_meta: dict[str, Any] = {"name": name}
        if common:
            band_meta["eo:common_name"] = common
        band_meta["eo:center_wavelength"] = wavelength
        assets[name] = {
            "href": href(path),
            "type": "image/jp2",
            "title": f"{name} - {res}m",
            "roles": ["data", "reflectance"],
            "bands": [band_meta],
            "data_type": "uint16",
            "nodata": 0,
            "raster:scale": 0.0001,
            "raster:offset": -0.1,
            "gsd": res,
            "proj:code": f"EPSG:{epsg}",
            "proj:shape": [n, n],
            "proj:bbox": [ulx, uly - n * res, ulx + n * res, uly],
            "proj:transform": [res, 0, ulx, 0, -res, uly],
            "file:size": path.stat().st_size,
            "file:checksum": multihash_sha256(path),
        }
    properties_view: dict[str, float] = {}
    if angles:
        grids = synthetic_angles(bands)
        sizes = {r: math.ceil(extent / r) for r in (10, 20, 60)}
        tile_id = f"{unit}_OPER_MSI_L1C_TL_2BPS_{discriminator}_A{abs_orbit:06d}_T{tile}_{n_base}"
        mtd_tl = safe / "GRANULE" / granule / "MTD_TL.xml"
        mtd_tl.parent.mkdir(parents=True, exist_ok=True)
        mtd_tl.write_text(tile_angles_xml(tile_id, date, epsg, ulx, uly, sizes, grids))
        west, south, east, north = transform_bounds(
            f"EPSG:{epsg}", "EPSG:4326", ulx, uly - extent, ulx + extent, uly
        )
        centre = ((west + east) / 2, (south + north) / 2)
        if ecmwf:
            write_ecmwf_grib(mtd_tl.parent / "AUX_DATA" / "AUX_ECMWFT", centre)
        if cams:
            write_cams_grib(mtd_tl.parent / "AUX_DATA" / "AUX_CAMSFO", centre)
        assets["granule_metadata"] = {
            "href": href(mtd_tl),
            "type": "application/xml",
            "title": "MTD_TL.xml",
            "roles": ["metadata"],
            "file:size": mtd_tl.stat().st_size,
            "file:checksum": multihash_sha256(mtd_tl),
        }
        view_zenith = np.concatenate(
            [z.ravel() for detectors in grids["view"].values() for z, _ in detectors.values()]
        )
        view_azimuth = np.concatenate(
            [a.ravel() for detectors in grids["view"].values() for _, a in detectors.values()]
        )
        properties_view = {
            "view:sun_azimuth": round(float(np.mean(grids["sun_azimuth"])), 6),
            "view:sun_elevation": round(90.0 - float(np.mean(grids["sun_zenith"])), 6),
            "view:incidence_angle": round(float(np.nanmean(view_zenith)), 6),
            "view:azimuth": round(float(np.nanmean(view_azimuth)), 6),
        }
    mtd = safe / "MTD_MSIL1C.xml"
    mtd.write_text(
        _mtd_xml(
            product,
            date,
            baseline,
            platform,
            relative_orbit,
            abs_orbit,
            granule,
            band_files,
            cloud_cover,
        )
    )
    assets["product_metadata"] = {
        "href": href(mtd),
        "type": "application/xml",
        "title": "MTD_MSIL1C.xml",
        "roles": ["metadata"],
        "file:size": mtd.stat().st_size,
        "file:checksum": multihash_sha256(mtd),
    }
    ring = [
        (ulx, uly - extent),
        (ulx + extent, uly - extent),
        (ulx + extent, uly),
        (ulx, uly),
        (ulx, uly - extent),
    ]
    geom = transform_geom(f"EPSG:{epsg}", "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    coords = [[round(x, 7), round(y, 7)] for x, y in geom["coordinates"][0]]
    coords[-1] = coords[0]
    lons, lats = [c[0] for c in coords], [c[1] for c in coords]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": list(CDSE_STAC_EXTENSIONS) + ([VIEW_EXTENSION] if angles else []),
        "id": product,
        "geometry": {"type": "Polygon", "coordinates": [coords]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": date.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "platform": platform,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "processing:level": "L1",
            "processing:version": baseline,
            "product:type": "S2MSI1C",
            "eo:cloud_cover": cloud_cover,
            "grid:code": f"MGRS-{tile}",
            "sat:relative_orbit": relative_orbit,
            "sat:orbit_state": "descending",
            **properties_view,
        },
        "links": [
            {
                "rel": "collection",
                "href": "https://stac.dataspace.copernicus.eu/v1/collections/sentinel-2-l1c",
                "type": "application/json",
            }
        ],
        "assets": assets,
        "collection": "sentinel-2-l1c",
    }
