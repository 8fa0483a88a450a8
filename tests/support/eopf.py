"""An EOPF Zarr L1C product written from a SAFE-style item's band files (the embedded sample).

The layout is the one ESA's EOPF products and the ``xarray-eopf`` reader use: each band's DN
(uint16, ``_FillValue`` 0) under ``measurements/reflectance/r10m|r20m|r60m/<b02...>`` with
pixel-centre ``x``/``y`` coordinates, ``scale_factor``/``add_offset`` for the reflectance,
the CRS in ``other_metadata.horizontal_CRS_code`` and the STAC metadata in
``stac_discovery``; Zarr v2 with consolidated metadata, as the EOPF sample service publishes.
"""

from __future__ import annotations

import json
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


def write_eopf_zarr(item_path: Path, folder: Path, zarr_format: int = 2) -> Path:
    """The product of the item at *item_path* as ``folder/<id>.zarr``; returns its path."""
    item = json.loads(item_path.read_text())
    baseline = tuple(int(v) for v in item["properties"]["processing:version"].split("."))
    offset = -0.1 if baseline >= (4, 0) else 0.0
    epsg = int(str(item["properties"].get("proj:code", "EPSG:32633")).split(":")[1])
    tree: dict[str, xr.Dataset] = {}
    for group, bands in BAND_GROUPS.items():
        variables = {}
        coords: dict[str, np.ndarray] = {}
        for band in bands:
            href = item["assets"][band]["href"]
            with rasterio.open(item_path.parent / href) as dataset:
                dn = dataset.read(1)
                transform = dataset.transform
                epsg = dataset.crs.to_epsg() or epsg
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
                "proj:epsg": epsg,
            }
            variables[band.lower()] = xr.Variable(("y", "x"), dn, attrs)
        dataset = xr.Dataset(variables, coords=coords)
        for name in dataset.data_vars:
            dataset[name].encoding.update({"_FillValue": 0, "chunks": (256, 256)})
        tree[f"/measurements/reflectance/{group}"] = dataset
    datatree = xr.DataTree.from_dict(tree)
    properties = {k: v for k, v in item["properties"].items() if not k.startswith("proj:")}
    properties.update({"product:type": "S02MSIL1C", "proj:code": f"EPSG:{epsg}"})
    datatree.attrs.update(
        {
            "stac_discovery": {
                "type": "Feature",
                "stac_version": "1.1.0",
                "id": item["id"],
                "geometry": item["geometry"],
                "bbox": item["bbox"],
                "properties": properties,
            },
            "other_metadata": {"horizontal_CRS_code": f"EPSG:{epsg}"},
        }
    )
    target = folder / product_name(item)
    datatree.to_zarr(target, mode="w", consolidated=True, zarr_format=zarr_format)
    return target
