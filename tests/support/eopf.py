"""An EOPF Zarr L1C product written from a SAFE-style item's band files (the embedded sample).

The layout is the one ESA's EOPF products and the ``xarray-eopf`` reader use: each band's DN
(uint16, ``_FillValue`` 0) under ``measurements/reflectance/r10m|r20m|r60m/<b02...>`` with
pixel-centre ``x``/``y`` coordinates, ``scale_factor``/``add_offset`` for the reflectance,
the CRS in ``other_metadata.horizontal_CRS_code`` and the STAC metadata in
``stac_discovery``; Zarr v2 with consolidated metadata, as the EOPF sample service publishes.
With ``zarr_format=3`` the store is laid out as ESA's ``sentinel-2-l1c-zarr3`` products: one
shard per band (``sharding_indexed``, blosc/zstd inner chunks), a ``spatial_ref`` variable in
each resolution group, and multiscale levels: each coarser group also holds the finer bands,
their DN averaged over 2x2, 3x3 or 6x6 blocks (0 = nodata left out), and the reflectance group
a ``multiscales`` attribute naming the levels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr

BAND_GROUPS = {
    "r10m": ("B02", "B03", "B04", "B08"),
    "r20m": ("B05", "B06", "B07", "B8A", "B11", "B12"),
    "r60m": ("B01", "B09", "B10"),
}


def product_name(item: dict[str, Any]) -> str:
    return f"{item['id']}.zarr"


LAYOUTS = ("cpm-2.5", "cpm-2.6")
"""Root and band metadata as ESA's products carry them (``../shared/docs/atmosphere-inputs.md``,
"EOPF Zarr, as ESA publishes it", from dumps of real products' metadata): CPM 2.5 keeps a
``proj:epsg`` on each band; from CPM 2.6.2 the CRS is only in ``other_metadata`` (spelled
``horizontal_CRS_code``, or ``horizontal_crs_code`` in some products). Both carry
``stac_discovery.properties.datetime`` as the string ``"null"``, an id ending in ``.SAFE`` and
a bbox with its longitudes swapped."""


def write_eopf_zarr(
    item_path: Path,
    folder: Path,
    zarr_format: int = 2,
    layout: str | None = None,
    angles: dict[str, Any] | None = None,
    angle_origin: tuple[float, float] | None = None,
    crs_key: str = "horizontal_CRS_code",
    ecmwf_grib: Path | None = None,
    inner_chunk: int = 256,
    cams_grib: Path | None = None,
    encoding: Callable[[tuple[int, ...], int, int], dict[str, Any]] | None = None,
) -> Path:
    """The product of the item at *item_path* as ``folder/<id>.zarr``; returns its path.

    *layout* None writes the tidy metadata a converter would guess (a real datetime, the
    plain id, a right bbox, per-band ``proj:epsg``); one of :data:`LAYOUTS` writes ESA's.
    *angles* (``support.synthetic.synthetic_angles``'s grids, nodes 5 km apart from
    *angle_origin*, the tile's upper-left corner) become ``conditions/geometry`` as ESA
    writes it: ``sun_angles`` (angle, y, x) and ``viewing_incidence_angles`` (band,
    detector, angle, y, x), with ``angle``/``band``/``detector``/``x``/``y`` coordinates.
    *ecmwf_grib* (a granule's AUX_ECMWFT) becomes ``conditions/meteorology/ecmwf`` as ESA
    writes it: ``tcwv``, ``msl``, ``tco3`` (latitude, longitude) in the GRIB1 units.
    *cams_grib* (a granule's AUX_CAMSFO, GRIB1 as ``support.synthetic.write_cams_grib``
    writes it) becomes ``conditions/meteorology/cams``: ``aod550``, ``aod469``, ...,
    ``suaod550`` (unitless) and ``z`` (m²/s²) on the same coordinates, with cfgrib's scalar
    coordinates (``number``, ``step``, ``surface``, ``time``, ``valid_time``).
    *inner_chunk*: the inner chunk side of a v3 store's shards (ESA's is 1024; the sample's
    bands are smaller). *encoding(shape, zarr_format, inner_chunk)*: each band array's chunks
    and compressor (default :func:`_encoding`: one chunk per band, blosc/zstd).
    """
    assert layout in (None, *LAYOUTS), layout
    item = json.loads(item_path.read_text())
    baseline = tuple(int(v) for v in item["properties"]["processing:version"].split("."))
    offset = -0.1 if baseline >= (4, 0) else 0.0
    epsg = int(str(item["properties"].get("proj:code", "EPSG:32633")).split(":")[1])
    tree: dict[str, xr.Dataset] = {}
    levels: dict[str, dict[str, tuple[np.ndarray, Any]]] = {}  # group -> band -> (DN, grid)
    for group, bands in BAND_GROUPS.items():
        levels[group] = {}
        for band in bands:
            href = item["assets"][band]["href"]
            with rasterio.open(item_path.parent / href) as dataset:
                levels[group][band] = (dataset.read(1), dataset.transform)
                epsg = dataset.crs.to_epsg() or epsg
    if zarr_format >= 3:
        _add_multiscale_levels(levels)
    for group, per_band in levels.items():
        variables = {}
        coords: dict[str, np.ndarray] = {}
        for band, (dn, transform) in per_band.items():
            height, width = dn.shape
            coords = {
                "x": transform.c + (np.arange(width) + 0.5) * transform.a,
                "y": transform.f + (np.arange(height) + 0.5) * transform.e,
            }
            attrs = {
                "long_name": f"TOA reflectance, band {band.lower()}",
                "units": "digital_counts",
                "scale_factor": 0.0001,
                "add_offset": offset,
                "valid_min": 1,
                "valid_max": 65535,
            }
            if layout in (None, "cpm-2.5"):
                attrs["proj:epsg"] = epsg
            variables[band.lower()] = xr.Variable(("y", "x"), dn, attrs)
        dataset = xr.Dataset(variables, coords=coords)
        for name in dataset.data_vars:
            encode = encoding or _encoding
            dataset[name].encoding.update(encode(dataset[name].shape, zarr_format, inner_chunk))
        if zarr_format >= 3:
            wkt = rasterio.crs.CRS.from_epsg(epsg).to_wkt()
            dataset["spatial_ref"] = xr.Variable(
                (), np.int64(0), {"crs_wkt": wkt, "spatial_ref": wkt}
            )
        tree[f"/measurements/reflectance/{group}"] = dataset
    if zarr_format >= 3:
        tree["/measurements/reflectance"] = xr.Dataset(attrs={"multiscales": _multiscales(levels)})
    if angles is not None:
        assert angle_origin is not None, "angle grids need the tile's upper-left corner"
        tree["/conditions/geometry"] = _geometry_group(angles, angle_origin)
    if ecmwf_grib is not None:
        tree["/conditions/meteorology/ecmwf"] = _ecmwf_group(ecmwf_grib)
    if cams_grib is not None:
        tree["/conditions/meteorology/cams"] = _cams_group(cams_grib)
    datatree = xr.DataTree.from_dict(tree)
    properties = {k: v for k, v in item["properties"].items() if not k.startswith("proj:")}
    properties.update({"product:type": "S02MSIL1C"})
    product_id, bbox = item["id"], list(item["bbox"])
    if layout is None:
        properties["proj:code"] = f"EPSG:{epsg}"
    else:
        properties["datetime"] = "null"
        product_id = f"{product_id}.SAFE"
        bbox = [bbox[2], bbox[1], bbox[0], bbox[3]]
    datatree.attrs.update(
        {
            "stac_discovery": {
                "type": "Feature",
                "stac_version": "1.1.0",
                "id": product_id,
                "geometry": item["geometry"],
                "bbox": bbox,
                "properties": properties,
            },
            "other_metadata": {crs_key: f"EPSG:{epsg}"},
        }
    )
    target = folder / product_name(item)
    datatree.to_zarr(target, mode="w", consolidated=True, zarr_format=zarr_format)
    return target


def _encoding(shape: tuple[int, ...], zarr_format: int, inner_chunk: int) -> dict[str, Any]:
    """v2: 256 px chunks; v3: one shard per band of *inner_chunk* px blosc/zstd chunks."""
    if zarr_format < 3:
        return {"_FillValue": 0, "chunks": (256, 256)}
    from zarr.codecs import BloscCodec

    chunks = tuple(min(inner_chunk, side) for side in shape)
    shards = tuple(-(-side // chunk) * chunk for side, chunk in zip(shape, chunks, strict=True))
    return {
        "_FillValue": 0,
        "chunks": chunks,
        "shards": shards,
        "compressors": (BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),),
    }


RESOLUTIONS = {"r10m": 10, "r20m": 20, "r60m": 60}


def block_mean(dn: np.ndarray, factor: int) -> np.ndarray:
    """*dn* averaged over *factor* x *factor* blocks, rounded, DN 0 (nodata) left out."""
    height, width = dn.shape[0] // factor, dn.shape[1] // factor
    blocks = dn[: height * factor, : width * factor].reshape(height, factor, width, factor)
    valid = blocks != 0
    total = (blocks.astype(np.float64) * valid).sum(axis=(1, 3))
    count = valid.sum(axis=(1, 3))
    mean = np.where(count > 0, np.floor(total / np.maximum(count, 1) + 0.5), 0)
    return mean.astype(np.uint16)


def _add_multiscale_levels(levels: dict[str, dict[str, tuple[np.ndarray, Any]]]) -> None:
    """Each coarser group gets the finer groups' bands, averaged onto its grid."""
    from affine import Affine

    for coarse, resolution in RESOLUTIONS.items():
        for fine, fine_resolution in RESOLUTIONS.items():
            if fine_resolution >= resolution:
                continue
            factor = resolution // fine_resolution
            for band, (dn, transform) in list(levels[fine].items()):
                if band in levels[coarse]:
                    continue
                grid = transform @ Affine.scale(factor)
                levels[coarse][band] = (block_mean(dn, factor), grid)


def _multiscales(levels: dict[str, Any]) -> dict[str, Any]:
    """The reflectance group's ``multiscales`` attribute: the levels, finest first."""
    layout: list[dict[str, Any]] = []
    for group, resolution in RESOLUTIONS.items():
        entry: dict[str, Any] = {"asset": group, "resolution": resolution}
        if layout:
            entry["derived_from"] = "r10m"
            entry["transform"] = {"scale": [resolution / 10, resolution / 10]}
            entry["resampling_method"] = "average"
        layout.append(entry)
    return {"layout": layout, "resampling_method": "average"}


ANGLE_STEP_M = 5000


def _geometry_group(angles: dict[str, Any], origin: tuple[float, float]) -> xr.Dataset:
    """``conditions/geometry`` of an EOPF L1C product from MTD_TL-style grids."""
    sun = np.stack([angles["sun_zenith"], angles["sun_azimuth"]])
    rows, cols = sun.shape[1:]
    bands = sorted(angles["view"])
    detectors = sorted({d for per_band in angles["view"].values() for d in per_band})
    view = np.full((len(bands), len(detectors), 2, rows, cols), np.nan)
    for b, band in enumerate(bands):
        for d, detector in enumerate(detectors):
            if detector in angles["view"][band]:
                zenith, azimuth = angles["view"][band][detector]
                view[b, d] = np.stack([zenith, azimuth])
    ulx, uly = origin
    coords = {
        "angle": ["zenith", "azimuth"],
        "band": [band.lower() for band in bands],
        "detector": np.asarray(detectors, np.int64),
        "x": (ulx + ANGLE_STEP_M * np.arange(cols)).astype(np.int64),
        "y": (uly - ANGLE_STEP_M * np.arange(rows)).astype(np.int64),
    }
    return xr.Dataset(
        {
            "sun_angles": (("angle", "y", "x"), sun, {"units": "deg"}),
            "viewing_incidence_angles": (
                ("band", "detector", "angle", "y", "x"),
                view,
                {"units": "deg"},
            ),
            "mean_sun_angles": (("angle",), np.nanmean(sun.reshape(2, -1), axis=1)),
        },
        coords=coords,
    )


DOBSON_KG_M2 = 2.1415e-5
_GRIB2_TO_EOPF = {"PWAT": ("tcwv", 1.0, "kg m**-2"), "PRMSL": ("msl", 1.0, "Pa")}
_GRIB2_TO_EOPF["TOZNE"] = ("tco3", DOBSON_KG_M2, "kg m**-2")  # Dobson units -> kg/m²


def _ecmwf_group(grib: Path) -> xr.Dataset:
    """``conditions/meteorology/ecmwf`` from a GRIB as :func:`write_ecmwf_grib` writes it."""
    with rasterio.open(grib) as dataset:
        transform, height, width = dataset.transform, dataset.height, dataset.width
        variables = {}
        for index in range(1, dataset.count + 1):
            element = dataset.tags(index).get("GRIB_ELEMENT", "")
            name, scale, unit = _GRIB2_TO_EOPF[element]
            values = dataset.read(index).astype(np.float64) * scale
            variables[name] = (("latitude", "longitude"), values, {"units": unit})
    coords = {
        "latitude": transform.f + (np.arange(height) + 0.5) * transform.e,
        "longitude": transform.c + (np.arange(width) + 0.5) * transform.a,
    }
    return xr.Dataset(variables, coords=coords)


def _cams_group(grib: Path) -> xr.Dataset:
    """``conditions/meteorology/cams`` from a GRIB1 AUX_CAMSFO (ECMWF's table 210 aerosols
    and table 128's ``z``), its arrays float32 and attributed as cfgrib decodes them."""
    from support.synthetic import CAMS_TABLE_210

    with rasterio.open(grib) as dataset:
        transform, height, width = dataset.transform, dataset.height, dataset.width
        variables: dict[str, Any] = {}
        for index in range(1, dataset.count + 1):
            tags = dataset.tags(index)
            element = tags.get("GRIB_ELEMENT", "")
            match = re.match(r"var(\d+) of table 210\b", element)
            if match:
                name, unit, param = CAMS_TABLE_210[int(match[1])], "~", 210000 + int(match[1])
            else:
                assert element == "Z", element
                name, unit, param = "z", "m**2 s**-2", 129
            attrs = {"units": unit, "GRIB_units": unit, "GRIB_shortName": name}
            attrs["GRIB_paramId"] = param
            values = dataset.read(index).astype(np.float32)
            variables[name] = (("latitude", "longitude"), values, attrs)
        reference = int(tags["GRIB_REF_TIME"])
        valid = int(tags["GRIB_VALID_TIME"])
    coords: dict[str, Any] = {
        "latitude": transform.f + (np.arange(height) + 0.5) * transform.e,
        "longitude": transform.c + (np.arange(width) + 0.5) * transform.a,
        "number": np.int64(0),
        "surface": np.float64(0.0),
        "time": np.datetime64(reference, "s"),
        "step": np.timedelta64(valid - reference, "s"),
        "valid_time": np.datetime64(valid, "s"),
    }
    return xr.Dataset(variables, coords=coords)
