"""Every band at 10 m: the 20 m and 60 m bands sharpened with the 10 m bands' detail.

The contract every method here keeps (the product, the Python API and the evaluation call the
same functions):

* inputs are surface reflectance, float32, NaN where invalid, on grids that share one origin:
  ``guide`` (k, H, W) at 10 m (:data:`GUIDE_BANDS` first, in that order; a method may take more
  guide channels, as the 60 m method takes the sharpened 20 m bands), ``coarse`` (n, h, w) at
  ``factor`` times the pixel (2 for the 20 m bands, 6 for the 60 m bands), with
  ``H = h * factor`` and ``W = w * factor`` (a caller pads a window's edge to whole pixels);
* the output is (n, H, W) float32 at 10 m, NaN where the coarse pixel or the guide is NaN;
* :func:`consistent` then makes each output block average back to its coarse pixel exactly, so
  the product never contradicts the native band it came from.

:class:`Bicubic` is the plain upsampling every method is compared with.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import ndimage

from component.core.blocks import block_mean

GUIDE_BANDS = ("B02", "B03", "B04", "B08")
"""The 10 m bands whose detail the others are given, in the guide's channel order."""
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
"""Sharpened by 2: 20 m -> 10 m."""
BANDS_60M = ("B01", "B09")
"""Sharpened by 6: 60 m -> 10 m."""
SHARPENED_BANDS = ("B01", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")
"""The bands the product gains at 10 m (``<band>_10m``), in the L2A order."""
FACTORS = {**dict.fromkeys(BANDS_20M, 2), **dict.fromkeys(BANDS_60M, 6)}


class SuperResolver(Protocol):
    """Sharpens coarse bands with a 10 m guide (see the module's contract)."""

    name: str

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray: ...


def upsampled(coarse: np.ndarray, factor: int) -> np.ndarray:
    """(n, h, w) -> (n, h * factor, w * factor) by cubic splines on pixel areas (a coarse
    pixel covers ``factor x factor`` fine ones; mirrored edges); NaN where the coarse pixel was
    NaN (filled from its neighbours for the spline, then masked again)."""
    coarse = np.asarray(coarse, np.float32)
    invalid = ~np.isfinite(coarse)
    if invalid.any():
        coarse = _filled(coarse, invalid)
    out = np.stack(
        [ndimage.zoom(band, factor, order=3, grid_mode=True, mode="grid-mirror") for band in coarse]
    ).astype(np.float32)
    if invalid.any():
        out[np.repeat(np.repeat(invalid, factor, axis=1), factor, axis=2)] = np.nan
    return out


def _filled(coarse: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """*coarse* with each invalid pixel given its nearest valid one's value (0 if none)."""
    out = coarse.copy()
    for band, bad in zip(out, invalid, strict=True):
        if bad.all():
            band[:] = 0.0
        elif bad.any():
            index = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
            band[:] = band[tuple(index)]
    return out


def consistent(fine: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
    """*fine* (n, H, W) shifted, block by block, so that each ``factor x factor`` block's mean
    is its *coarse* pixel (n, h, w) exactly: the block's error is taken out of each of its
    pixels. Where a block mean cannot be formed (all NaN) the block stays as it is."""
    error = block_mean(fine, factor) - coarse
    error = np.where(np.isfinite(error), error, np.float32(0.0))
    shift = np.repeat(np.repeat(error, factor, axis=1), factor, axis=2)
    return (fine - shift[:, : fine.shape[1], : fine.shape[2]]).astype(np.float32)


class Bicubic:
    """The baseline: cubic-spline upsampling, no use of the guide."""

    name = "bicubic"

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
        out = upsampled(coarse, factor)
        out[:, ~np.isfinite(guide).all(axis=0)] = np.nan
        return out
