"""The super-resolution contract: shapes, NaN, and consistency with the native band."""

from __future__ import annotations

import numpy as np

from component.core.blocks import block_mean
from component.model.super_resolution import Bicubic, consistent, upsampled


def test_upsampled_keeps_shapes_nan_and_smooth_fields() -> None:
    rows, cols = np.mgrid[0:12, 0:18]
    coarse = np.stack([0.1 + 0.01 * rows + 0.002 * cols]).astype(np.float32)
    coarse[0, 3, 4] = np.nan
    fine = upsampled(coarse, 2)
    assert fine.shape == (1, 24, 36) and fine.dtype == np.float32
    assert np.isnan(fine[0, 6:8, 8:10]).all() and np.isfinite(fine[0, :6]).all()
    # a linear ramp stays a ramp (cubic splines on pixel areas: no shift of half a pixel)
    means = block_mean(fine, 2)
    inside = np.isfinite(means) & np.isfinite(coarse)
    np.testing.assert_allclose(means[inside][:20], coarse[inside][:20], atol=2e-3)


def test_consistent_blocks_average_back_to_the_coarse_pixels() -> None:
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0.0, 0.5, (2, 5, 7)).astype(np.float32)
    fine = (upsampled(coarse, 6) + rng.normal(0, 0.02, (2, 30, 42))).astype(np.float32)
    assert np.abs(block_mean(fine, 6) - coarse).max() > 1e-3
    fixed = consistent(fine, coarse, 6)
    np.testing.assert_allclose(block_mean(fixed, 6), coarse, atol=1e-6)
    # the detail within each block is the input's
    np.testing.assert_allclose(np.diff(fixed[0, :6, 0]), np.diff(fine[0, :6, 0]), atol=1e-6)


def test_bicubic_masks_where_the_guide_is_invalid() -> None:
    guide = np.full((4, 8, 8), 0.1, np.float32)
    guide[2, 0, 0] = np.nan
    out = Bicubic()(guide, np.full((1, 4, 4), 0.2, np.float32), 2)
    assert np.isnan(out[0, 0, 0]) and np.allclose(out[0, 1:, 1:], 0.2, atol=1e-5)
