"""Reference points a learned correction must beat: no correction, and dark-object subtraction.

Identity (L2A = L1C) shows how large the atmospheric signal is; dark-object subtraction (DOS) is
the classic scene-based correction: the darkest pixels of a band are assumed to be nearly black
at the surface, so their TOA value is the path radiance to remove from the whole band.
"""

from __future__ import annotations

import numpy as np


def identity(toa: np.ndarray) -> np.ndarray:
    """No atmospheric correction."""
    return toa.astype(np.float32, copy=True)


def dark_object_subtraction(
    toa: np.ndarray, percentile: float = 1.0, dark_reflectance: float = 0.0
) -> np.ndarray:
    """Subtract, per band, the ``percentile``-th valid value minus an assumed dark reflectance.

    A low percentile instead of the minimum keeps single noisy or shadow pixels from driving the
    correction; results are clipped at 0 since reflectance cannot be negative. NaN stays NaN.
    """
    out = np.empty_like(toa, dtype=np.float32)
    for i, band in enumerate(toa):
        valid = band[np.isfinite(band)]
        dark = float(np.percentile(valid, percentile)) if valid.size else 0.0
        haze = max(dark - dark_reflectance, 0.0)
        out[i] = np.maximum(band - haze, 0.0)
    return out
