"""Image-quality metrics on valid pixels: RMSE, bias, PSNR, SSIM, spectral angle and NDVI error.

The arithmetic comes from kept libraries: scikit-image (``mean_squared_error``,
``peak_signal_noise_ratio``, ``structural_similarity``) and torchmetrics
(``spectral_angle_mapper``). This module only decides *which* pixels are compared, so that a
model and its baselines are always scored on exactly the same ones:

* every metric takes ``(bands, H, W)`` reflectance arrays and an ``(H, W)`` validity mask;
* PSNR uses a data range of 1.0 (reflectance), SAM is in radians, averaged over valid pixels;
* SSIM is computed on the full image (7x7 window, invalid pixels filled with the reference so
  they add no difference) and averaged where the whole window is valid; on chips too small
  for that, over the valid pixels;
* NDVI (B08, B04) is compared where the reference's B04 + B08 exceeds 0.05, since below that
  (water, deep shadow) NDVI is the ratio of two noise-level numbers.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

SSIM_WINDOW = 7
NDVI_MIN_SUM = 0.05
RGB = ("B04", "B03", "B02")


def valid_mask(*arrays: np.ndarray) -> np.ndarray:
    """Pixels where every band of every array is finite."""
    mask = np.ones(arrays[0].shape[-2:], dtype=bool)
    for array in arrays:
        mask &= np.all(np.isfinite(array), axis=0)
    return mask


def rmse(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Root mean squared error over all bands' valid pixels."""
    if not mask.any():
        return float("nan")
    return float(
        np.sqrt(
            mean_squared_error(
                ref[..., mask].astype(np.float64), pred[..., mask].astype(np.float64)
            )
        )
    )


def bias(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean of prediction minus reference (reflectance units)."""
    if not mask.any():
        return float("nan")
    return float(np.mean(pred[..., mask].astype(np.float64) - ref[..., mask]))


def psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for a reflectance data range of 1."""
    if not mask.any():
        return float("nan")
    p, r = pred[..., mask].astype(np.float64), ref[..., mask].astype(np.float64)
    if np.array_equal(p, r):
        return float("inf")
    return float(peak_signal_noise_ratio(r, p, data_range=data_range))


def ssim_band(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM of one band (7x7 window, data range 1) over fully valid windows."""
    if not mask.any() or min(mask.shape) < SSIM_WINDOW:
        return float("nan")
    r = np.where(mask, ref, 0.0).astype(np.float64)
    p = np.where(mask, pred, r).astype(np.float64)
    _, smap = structural_similarity(r, p, win_size=SSIM_WINDOW, data_range=1.0, full=True)
    inner = binary_erosion(mask, np.ones((SSIM_WINDOW, SSIM_WINDOW)), border_value=1)
    use = inner if inner.any() else mask
    return float(np.mean(smap[use]))


def sam(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Mean spectral angle (radians) between predicted and reference spectra."""
    import torch
    from torchmetrics.functional.image import spectral_angle_mapper

    p = pred[:, mask].astype(np.float64)
    r = ref[:, mask].astype(np.float64)
    usable = (np.linalg.norm(p, axis=0) > 0) & (np.linalg.norm(r, axis=0) > 0)
    if not usable.any():
        return float("nan")
    p_t = torch.from_numpy(p[:, usable])[None, :, :, None]
    r_t = torch.from_numpy(r[:, usable])[None, :, :, None]
    return float(spectral_angle_mapper(p_t, r_t, reduction="elementwise_mean"))


def ndvi(reflectance: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    nir, red = reflectance[bands.index("B08")], reflectance[bands.index("B04")]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (nir - red) / np.maximum(nir + red, 1e-6)


def ndvi_error(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, bands: tuple[str, ...]
) -> dict[str, float]:
    """Mean absolute and mean signed NDVI error where the reference is not near-black."""
    if "B08" not in bands or "B04" not in bands:
        return {}
    sums = ref[bands.index("B08")] + ref[bands.index("B04")]
    use = mask & (sums > NDVI_MIN_SUM)
    if not use.any():
        return {"mae": float("nan"), "bias": float("nan"), "pixels": 0}
    diff = (ndvi(pred, bands) - ndvi(ref, bands))[use]
    return {
        "mae": float(np.mean(np.abs(diff))),
        "bias": float(np.mean(diff)),
        "pixels": int(use.sum()),
    }


def summary(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, bands: tuple[str, ...]
) -> dict[str, float]:
    """RMSE, PSNR, mean SSIM and SAM over *bands* (all of them together)."""
    return {
        "rmse": rmse(pred, ref, mask),
        "psnr": psnr(pred, ref, mask),
        "ssim": float(np.nanmean([ssim_band(pred[i], ref[i], mask) for i in range(len(bands))])),
        "sam": sam(pred, ref, mask),
    }


def compare(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, bands: tuple[str, ...]
) -> dict[str, object]:
    """Per-band RMSE/bias/PSNR/SSIM, the all-band and RGB summaries, and the NDVI error."""
    per_band = {
        name: {
            "rmse": rmse(pred[i : i + 1], ref[i : i + 1], mask),
            "bias": bias(pred[i : i + 1], ref[i : i + 1], mask),
            "psnr": psnr(pred[i : i + 1], ref[i : i + 1], mask),
            "ssim": ssim_band(pred[i], ref[i], mask),
        }
        for i, name in enumerate(bands)
    }
    result: dict[str, object] = {
        "per_band": per_band,
        "all": summary(pred, ref, mask, bands) | {"valid_pixels": int(mask.sum())},
    }
    if all(b in bands for b in RGB):
        index = [bands.index(b) for b in RGB]
        result["rgb"] = summary(pred[index], ref[index], mask, RGB)
    result["ndvi"] = ndvi_error(pred, ref, mask, bands)
    return result
