"""Published products compared raster by raster: two inputs of the same data must give the
same L2A (within one DN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio


def product_rasters(output: Path) -> dict[str, np.ndarray]:
    """Every COG of the one product published in the catalog *output*, by file name."""
    (folder,) = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
    rasters = {}
    for path in sorted(folder.glob("*.tif")):
        with rasterio.open(path) as dataset:
            rasters[path.name] = dataset.read().astype(np.int32)
    return rasters


def assert_same_l2a(one: Path, other: Path, tolerance: int = 1) -> None:
    """The products of the catalogs *one* and *other* have the same files (at least the 12
    bands and AOT, WVP, SCL), shapes, and values within *tolerance* DN."""
    a, b = product_rasters(one), product_rasters(other)
    assert sorted(a) == sorted(b) and len(a) >= 15
    for name in a:
        assert a[name].shape == b[name].shape, name
        assert np.abs(a[name] - b[name]).max() <= tolerance, name
