"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from component.training import baselines, metrics


def _full(*values: float, shape=(8, 8)) -> np.ndarray:
    return np.stack([np.full(shape, v, dtype=np.float32) for v in values])


def test_rmse_and_psnr_hand_values() -> None:
    pred, ref = _full(0.2, 0.3), _full(0.1, 0.1)
    mask = np.ones((8, 8), bool)
    # errors 0.1 and 0.2 -> mse (0.01 + 0.04) / 2 = 0.025
    assert metrics.rmse(pred, ref, mask) == pytest.approx(math.sqrt(0.025), rel=1e-6)
    assert metrics.psnr(pred, ref, mask) == pytest.approx(-10 * math.log10(0.025), rel=1e-5)
    assert metrics.psnr(ref, ref, mask) == math.inf


def test_masked_pixels_are_ignored() -> None:
    pred, ref = _full(0.2, 0.2), _full(0.2, 0.2)
    pred[:, 0, 0] = 5.0
    ref[:, 1, 1] = np.nan
    mask = metrics.valid_mask(ref)
    mask[0, 0] = False
    assert metrics.rmse(pred, ref, mask) == 0.0
    assert not mask[1, 1]


def test_bias_and_ndvi_hand_values() -> None:
    pred, ref = _full(0.2, 0.3), _full(0.1, 0.1)
    mask = np.ones((8, 8), bool)
    assert metrics.bias(pred, ref, mask) == pytest.approx(0.15)
    bands = ("B04", "B08")
    ref_veg, pred_veg = _full(0.05, 0.45), _full(0.05, 0.35)  # NDVI 0.8 vs 0.75
    error = metrics.ndvi_error(pred_veg, ref_veg, mask, bands)
    assert error["mae"] == pytest.approx(0.05, abs=1e-6) and error["bias"] < 0
    dark = _full(0.005, 0.01)  # water: B04 + B08 below 0.05, NDVI not scored
    assert metrics.ndvi_error(pred_veg, dark, mask, bands)["pixels"] == 0


def test_ssim_constant_images_hand_value() -> None:
    a, b = 0.2, 0.4
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # variances are 0: contrast term is 1
    mask = np.ones((16, 16), bool)
    got = metrics.ssim_band(np.full((16, 16), a), np.full((16, 16), b), mask)
    assert got == pytest.approx(expected, rel=1e-6)
    rng = np.random.default_rng(0)
    x = rng.random((16, 16))
    assert metrics.ssim_band(x, x, mask) == pytest.approx(1.0)


def test_sam_hand_value() -> None:
    pred = _full(1.0, 0.0)
    ref = _full(1.0, 1.0)
    mask = np.ones((8, 8), bool)
    assert metrics.sam(pred, ref, mask) == pytest.approx(math.pi / 4)
    assert metrics.sam(ref * 3, ref, mask) == pytest.approx(0.0, abs=1e-6)


def test_compare_structure() -> None:
    pred, ref = _full(0.2, 0.3, 0.4), _full(0.1, 0.3, 0.4)
    result = metrics.compare(pred, ref, np.ones((8, 8), bool), ("B02", "B03", "B04"))
    assert result["per_band"]["B02"]["rmse"] == pytest.approx(0.1)
    assert result["per_band"]["B02"]["bias"] == pytest.approx(0.1)
    assert result["per_band"]["B03"]["rmse"] == 0.0
    assert result["all"]["valid_pixels"] == 64
    assert set(result["rgb"]) == {"rmse", "psnr", "ssim", "sam"}
    assert result["ndvi"] == {}  # no B08: no NDVI


def test_baselines() -> None:
    toa = np.stack([np.linspace(0.1, 0.5, 100, dtype=np.float32).reshape(10, 10)] * 2)
    toa[1, 0, 0] = np.nan
    assert np.array_equal(baselines.identity(toa), toa, equal_nan=True)
    dos = baselines.dark_object_subtraction(toa, percentile=0)
    assert np.nanmin(dos[0]) == pytest.approx(0.0)
    assert np.isnan(dos[1, 0, 0])
    assert np.nanmin(dos) >= 0
