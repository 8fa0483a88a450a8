"""Simulated scenes: seeded, physically ordered, NaN kept, geometry withheld as designed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.core.blocks import block_mean
from component.model.atmosphere import DEFAULT_GEOMETRY, Atmosphere
from component.model.card import load_card
from component.training.simulate import Ranges, random_patch, simulate, smooth_field
from component.training.surfaces import Surface, load_surfaces, plausible_b09


@pytest.fixture(scope="module")
def atmosphere() -> Atmosphere:
    card = load_card()
    assert card.lut_path is not None
    return Atmosphere.load(card.lut_path)


def surface(value: float = 0.1, size: int = 32) -> np.ndarray:
    return np.full((len(L1C_BANDS), size, size), value, np.float32)


def test_seeded_and_shaped(atmosphere: Atmosphere) -> None:
    a = simulate(surface(), atmosphere, np.random.default_rng(5))
    b = simulate(surface(), atmosphere, np.random.default_rng(5))
    np.testing.assert_array_equal(a.toa, b.toa)
    assert a.toa.shape == (13, 32, 32) and a.surface.shape == (12, 32, 32)
    assert a.aot.shape == a.water.shape == (32, 32)
    assert a.aot.min() >= 0 and a.aot.max() <= 1.2


def test_haze_brightens_dark_surfaces_in_the_blue(atmosphere: Atmosphere) -> None:
    clear = Ranges(aot_low=(0.02, 0.021), high_fraction=0.0, cirrus_fraction=0.0, noise=0.0)
    hazy = replace(clear, aot_low=(0.8, 0.81))
    rng = np.random.default_rng(1)
    blue = L1C_BANDS.index("B02")
    dark_clear = simulate(surface(0.02), atmosphere, rng, ranges=clear).toa[blue].mean()
    rng = np.random.default_rng(1)
    dark_hazy = simulate(surface(0.02), atmosphere, rng, ranges=hazy).toa[blue].mean()
    assert dark_hazy > dark_clear + 0.04


def test_nan_surface_pixels_stay_out(atmosphere: Atmosphere) -> None:
    scene = surface()
    scene[:, 3, 4] = np.nan
    sample = simulate(scene, atmosphere, np.random.default_rng(0))
    assert np.isnan(sample.toa[:, 3, 4]).all() and np.isnan(sample.surface[:, 3, 4]).all()
    assert np.isfinite(sample.toa[:, 5, 5]).all()


def test_geometry_is_withheld_in_the_stated_fraction(atmosphere: Atmosphere) -> None:
    rng = np.random.default_rng(2)
    told = [simulate(surface(size=8), atmosphere, rng).told for _ in range(200)]
    unknown = sum(t is DEFAULT_GEOMETRY for t in told) / len(told)
    assert abs(unknown - Ranges().unknown_geometry_fraction) < 0.1


def test_elevation_and_priors_are_drawn_as_stated(atmosphere: Atmosphere) -> None:
    """Some samples lie at sea level, the rest up to the stated height; the forecasts the
    network is told are off the truth by about the stated errors, and sometimes withheld."""
    ranges = Ranges()
    rng = np.random.default_rng(3)
    samples = [simulate(surface(size=8), atmosphere, rng) for _ in range(300)]
    heights = np.array([s.elevation_m for s in samples])
    assert abs(np.mean(heights == 0) - ranges.sea_level_fraction) < 0.1
    assert heights.max() <= ranges.elevation_max_m and heights.max() > 2000
    water = [s for s in samples if s.water_prior_cm is not None]
    assert abs(len(water) / len(samples) - ranges.water_prior_fraction) < 0.1
    error = np.log([s.water_prior_cm / float(np.mean(s.water)) for s in water])
    assert abs(np.std(error) - ranges.water_prior_error) < 0.05
    aerosol = [s for s in samples if s.aot_prior is not None]
    assert abs(len(aerosol) / len(samples) - ranges.aot_prior_fraction) < 0.1
    assert all(s.aot_prior >= 0 for s in aerosol)


def test_a_higher_target_sees_less_rayleigh_in_the_blue(atmosphere: Atmosphere) -> None:
    flat = Ranges(high_fraction=0.0, cirrus_fraction=0.0, noise=0.0, sea_level_fraction=1.0)
    high = replace(flat, sea_level_fraction=0.0, elevation_max_m=4000.0)
    blue = L1C_BANDS.index("B02")
    low = simulate(surface(0.02), atmosphere, np.random.default_rng(4), ranges=flat)
    up = simulate(surface(0.02), atmosphere, np.random.default_rng(4), ranges=high)
    assert up.elevation_m > 0 and up.toa[blue].mean() < low.toa[blue].mean() - 0.005


def test_smooth_field_and_patches() -> None:
    field = smooth_field(np.random.default_rng(0), 40, 8.0)
    assert abs(field.mean()) < 1e-5 and field.std() == pytest.approx(1.0, rel=1e-3)
    scene = Surface("s", np.random.default_rng(0).random((13, 20, 30)).astype(np.float32), 60.0)
    patch, resolution = random_patch([scene], 32, np.random.default_rng(0))
    assert patch.shape == (13, 32, 32) and resolution == 60.0


def test_surface_helpers() -> None:
    stack = np.ones((13, 4, 4), np.float32)
    stack[L1C_BANDS.index("B09")] = 3.0
    assert plausible_b09(stack)[L1C_BANDS.index("B09")].max() == pytest.approx(1.1)
    assert block_mean(np.arange(16, dtype=np.float32).reshape(1, 4, 4), 2)[0, 0, 0] == 2.5


def test_shared_surfaces_load(shared_data_dir: Path) -> None:
    surfaces = load_surfaces(shared_data_dir, None, 120.0)
    names = {s.name for s in surfaces}
    assert "majortom_199U_1099R_T48QUE_20200223@120m" in names
    for s in surfaces:
        assert s.reflectance.shape[0] == 13
        median = np.nanmedian(s.reflectance[[L1C_BANDS.index(b) for b in L2A_BANDS]])
        assert 0.01 < median < 0.6
