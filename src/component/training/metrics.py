"""Image-quality metrics on valid pixels only: RMSE, PSNR, SSIM and spectral angle (SAM).

Every metric takes ``(bands, H, W)`` float reflectance arrays and a ``(H, W)`` validity mask, so
the model and the baselines are always scored on exactly the same pixels. PSNR uses a data range
of 1.0 (reflectance), SAM is in radians, averaged over valid pixels.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, uniform_filter

SSIM_WINDOW = 7
_C1 = (0.01 * 1.0) ** 2
_C2 = (0.03 * 1.0) ** 2


def valid_mask(*arrays: np.ndarray) -> np.ndarray:
    """Pixels where every band of every array is finite."""
    mask = np.ones(arrays[0].shape[-2:], dtype=bool)
    for array in arrays:
        mask &= np.all(np.isfinite(array), axis=0)
    return mask


def rmse(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Root mean squared error over all bands' valid pixels."""
    diff = pred[..., mask].astype(np.float64) - ref[..., mask]
    return float(np.sqrt(np.mean(diff**2))) if diff.size else float("nan")


def psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for a reflectance data range of 1."""
    err = rmse(pred, ref, mask)
    if not np.isfinite(err):
        return float("nan")
    if err == 0:
        return float("inf")
    return float(20 * np.log10(data_range / err))


def ssim_band(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM of one band (7×7 uniform window, population statistics, data range 1).

    Invalid pixels are zero-filled and the SSIM map is averaged where the whole window is valid,
    so nodata never leaks into the score; on chips too small for that the valid pixels are used.
    """
    x = np.where(mask, pred, 0.0).astype(np.float64)
    y = np.where(mask, ref, 0.0).astype(np.float64)
    mu_x = uniform_filter(x, SSIM_WINDOW, mode="reflect")
    mu_y = uniform_filter(y, SSIM_WINDOW, mode="reflect")
    var_x = uniform_filter(x * x, SSIM_WINDOW, mode="reflect") - mu_x**2
    var_y = uniform_filter(y * y, SSIM_WINDOW, mode="reflect") - mu_y**2
    cov = uniform_filter(x * y, SSIM_WINDOW, mode="reflect") - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / (
        (mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2)
    )
    inner = binary_erosion(mask, np.ones((SSIM_WINDOW, SSIM_WINDOW)), border_value=1)
    use = inner if inner.any() else mask
    return float(np.mean(smap[use])) if use.any() else float("nan")


def sam(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean spectral angle (radians) between predicted and reference spectra."""
    p = pred[:, mask].astype(np.float64)
    r = ref[:, mask].astype(np.float64)
    norms = np.linalg.norm(p, axis=0) * np.linalg.norm(r, axis=0)
    ok = norms > 0
    if not ok.any():
        return float("nan")
    cos = np.clip(np.sum(p * r, axis=0)[ok] / norms[ok], -1.0, 1.0)
    return float(np.mean(np.arccos(cos)))


def compare(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, bands: list[str] | tuple[str, ...]
) -> dict:
    """Per-band RMSE/PSNR/SSIM and overall RMSE/PSNR/SSIM/SAM, as plain JSON-ready floats."""
    per_band = {}
    for i, name in enumerate(bands):
        p, r = pred[i : i + 1], ref[i : i + 1]
        per_band[name] = {
            "rmse": rmse(p, r, mask),
            "psnr": psnr(p, r, mask),
            "ssim": ssim_band(pred[i], ref[i], mask),
        }
    overall = {
        "rmse": rmse(pred, ref, mask),
        "psnr": psnr(pred, ref, mask),
        "ssim": float(np.mean([b["ssim"] for b in per_band.values()])),
        "sam": sam(pred, ref, mask),
        "valid_pixels": int(mask.sum()),
    }
    return {"per_band": per_band, "overall": overall}
