"""The atmospheric simulation behaves like an atmosphere."""

from __future__ import annotations

import numpy as np
import pytest

from component.training import physics

BANDS = ("B02", "B03", "B04")


def test_rayleigh_matches_literature() -> None:
    # Bodhaine et al. (1999): about 0.155 at 490 nm, 0.045 at 665 nm at sea level.
    assert physics.rayleigh_optical_depth(0.492) == pytest.approx(0.155, rel=0.05)
    assert physics.rayleigh_optical_depth(0.665) == pytest.approx(0.045, rel=0.05)
    assert physics.rayleigh_optical_depth(0.492, 700) < physics.rayleigh_optical_depth(0.492)


def test_toa_is_brighter_over_dark_and_blue_most_affected() -> None:
    boa = np.full((3, 4, 4), 0.02, dtype=np.float32)
    toa = physics.simulate_toa(boa, BANDS, physics.Atmosphere(aot550=0.2))
    assert np.all(toa > boa)
    assert toa[0].mean() - 0.02 > toa[2].mean() - 0.02  # blue path radiance is largest


def test_more_aerosol_means_more_haze_and_less_transmission() -> None:
    clear = physics.band_terms("B02", physics.Atmosphere(aot550=0.05))
    hazy = physics.band_terms("B02", physics.Atmosphere(aot550=0.8))
    assert hazy[0] > clear[0]
    assert hazy[1] < clear[1]
    assert 0 < hazy[2] < 1


def test_simulated_pair_keeps_nan_and_is_seeded() -> None:
    boa = np.random.default_rng(1).uniform(0, 0.5, (3, 8, 8)).astype(np.float32)
    boa[:, 0, 0] = np.nan
    a = physics.simulate_pair(boa, BANDS, np.random.default_rng(7))
    b = physics.simulate_pair(boa, BANDS, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0], equal_nan=True)
    assert np.isnan(a[0][:, 0, 0]).all()
    assert a[0].dtype == np.float32
