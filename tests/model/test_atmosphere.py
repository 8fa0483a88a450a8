"""The 6S table at run time: values against 6S, physical behaviour, round trips, integrity."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from component.errors import ModelError
from component.model.atmosphere import Atmosphere, Geometry, relative_azimuth
from component.model.card import load_card


@pytest.fixture(scope="module")
def atmosphere() -> Atmosphere:
    card = load_card()
    assert card.lut_path is not None
    return Atmosphere.load(card.lut_path, card.lut_sha256)


def band(atmosphere: Atmosphere, name: str) -> int:
    return atmosphere.bands.index(name)


def test_blue_terms_match_a_direct_6s_run(atmosphere: Atmosphere) -> None:
    """6SV1.1, continental AOT 0.3, sun 40 deg, view 5 deg, relative azimuth 100 deg, water
    2 g/cm², ozone 0.3 atm-cm, B02 (S2A): apparent reflectance of a black surface 0.08386,
    spherical albedo 0.16879 and, over a 0.1 surface, 0.15418 (run by hand with Py6S; see
    ../shared/docs/field-tools.md for the same case rounded). The tolerance is the table's own
    largest B02 error against full 6S runs at random states (model card, ``lut.validation``)."""
    terms = atmosphere.terms(0.3, 2.0, Geometry(40.0, 5.0, 100.0), ozone=0.3)
    b = band(atmosphere, "B02")
    assert terms.path[b] == pytest.approx(0.08386, abs=0.002)
    assert terms.spherical_albedo[b] == pytest.approx(0.16879, abs=0.002)
    toa = Atmosphere.forward(np.full(len(atmosphere.bands), 0.1, np.float32), terms)
    assert toa[b] == pytest.approx(0.15418, abs=0.0025)  # path + transmittance errors


def test_aerosol_and_water_act_where_physics_says(atmosphere: Atmosphere) -> None:
    geometry = Geometry(35.0, 5.0, 90.0)
    clear, hazy = atmosphere.terms(0.05, 1.5, geometry), atmosphere.terms(0.6, 1.5, geometry)
    blue, swir = band(atmosphere, "B02"), band(atmosphere, "B12")
    assert hazy.path[blue] - clear.path[blue] > 0.03  # haze brightens the blue a lot
    assert abs(hazy.path[swir] - clear.path[swir]) < 0.01  # and hardly the 2.2 µm band
    assert hazy.transmittance[blue] < clear.transmittance[blue]
    dry, humid = atmosphere.terms(0.1, 0.3, geometry), atmosphere.terms(0.1, 4.0, geometry)
    b09, b04 = band(atmosphere, "B09"), band(atmosphere, "B04")
    assert humid.transmittance[b09] < 0.5 * dry.transmittance[b09]  # the water-vapour band
    assert humid.transmittance[b04] > 0.97 * dry.transmittance[b04]  # red barely notices
    b10 = band(atmosphere, "B10")
    assert humid.transmittance[b10] < 0.01  # 1375 nm: the surface is hidden by water vapour


def test_more_airmass_more_path(atmosphere: Atmosphere) -> None:
    low, high = (atmosphere.terms(0.2, 1.5, Geometry(z, 5.0, 90.0)) for z in (20.0, 70.0))
    blue = band(atmosphere, "B02")
    assert high.path[blue] > low.path[blue]
    assert high.transmittance[blue] < low.transmittance[blue]


def test_forward_inverse_round_trip_on_fields(atmosphere: Atmosphere) -> None:
    rng = np.random.default_rng(0)
    shape = (7, 9)
    aot = rng.uniform(0.0, 1.2, shape)
    water = rng.uniform(0.0, 6.5, shape)
    geometry = Geometry(
        rng.uniform(0, 78, shape), rng.uniform(0, 12, shape), rng.uniform(-180, 360, shape)
    )
    terms = atmosphere.terms(aot, water, geometry)
    assert terms.path.shape == (len(atmosphere.bands), *shape)
    rho = rng.uniform(0.0, 0.9, terms.path.shape).astype(np.float32)
    back = Atmosphere.inverse(Atmosphere.forward(rho, terms, 0.02), terms, 0.02)
    # float32 TOA: its rounding is divided by the transmittance (0.03 for B10 in humid air)
    tolerance = 2e-6 / np.minimum(terms.transmittance, 1.0) + 1e-6
    assert (np.abs(back - rho) <= tolerance).all()


def test_curves_are_the_terms_at_fixed_geometry(atmosphere: Atmosphere) -> None:
    """Training inverts with per-geometry curves; between nodes they must give the terms."""
    geometry = Geometry(47.0, 8.0, 133.0)
    curves = atmosphere.curves(geometry)
    for aot, water in [(0.07, 0.6), (0.33, 2.2), (1.0, 5.9)]:
        terms = atmosphere.terms(aot, water, geometry)

        def at(key: str, x: float, nodes: np.ndarray) -> np.ndarray:
            return np.array([np.interp(x, nodes, c) for c in curves[key]])

        a, w = curves["aot"], curves["water"]
        path = at("path", aot, a) * at("path_water", water, w)
        transmittance = (
            at("t_down", aot, a)
            * at("t_up", aot, a)
            * curves["t_fixed"]
            * np.exp(at("log_t_water", water, w))
        )
        np.testing.assert_allclose(path, terms.path, rtol=1e-5)
        np.testing.assert_allclose(transmittance, terms.transmittance, rtol=1e-5)


def test_adjacency_gain_is_at_least_one_and_grows_with_aerosol(atmosphere: Atmosphere) -> None:
    gain = atmosphere.adjacency_gain(np.array([0.0, 0.3, 1.0]), 5.0)
    assert (gain >= 1.0).all()
    blue = band(atmosphere, "B02")
    assert gain[blue, 0] < gain[blue, 1] < gain[blue, 2]


def test_relative_azimuth_folds_into_0_180() -> None:
    assert relative_azimuth(150.0, 100.0) == pytest.approx(50.0)
    assert relative_azimuth(10.0, 350.0) == pytest.approx(20.0)
    assert relative_azimuth(0.0, 180.0) == pytest.approx(180.0)


def test_missing_or_tampered_table_is_refused(tmp_path: Path) -> None:
    card = load_card()
    assert card.lut_path is not None
    with pytest.raises(ModelError, match="not found"):
        Atmosphere.load(tmp_path / "absent.npz", card.lut_sha256)
    copy = tmp_path / "lut.npz"
    shutil.copyfile(card.lut_path, copy)
    with copy.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01")
    with pytest.raises(ModelError, match="sha256"):
        Atmosphere.load(copy, card.lut_sha256)
    with pytest.raises(ModelError, match="no band"):
        Atmosphere.load(card.lut_path, None, ("B99",))


def test_a_target_above_sea_level_has_less_air_above_it(atmosphere: Atmosphere) -> None:
    """At 2 km: less Rayleigh path, most in the blue; more transmittance; an elevation of 0
    gives the sea-level terms exactly."""
    geometry = Geometry(40.0, 5.0, 90.0)
    sea = atmosphere.terms(0.1, 1.5, geometry)
    same = atmosphere.terms(0.1, 1.5, geometry, elevation_m=0.0)
    for a, b in zip(dataclasses.astuple(same), dataclasses.astuple(sea), strict=True):
        np.testing.assert_array_equal(a, b)
    high = atmosphere.terms(0.1, 1.5, geometry, elevation_m=2000.0)
    blue, nir = atmosphere.bands.index("B02"), atmosphere.bands.index("B8A")
    loss = sea.path - high.path  # the Rayleigh path lost: steep in wavelength
    assert loss[blue] / sea.path[blue] > 0.1 and loss[blue] > 5 * loss[nir] > 0
    assert (high.transmittance >= sea.transmittance - 1e-6).all()
    assert high.transmittance[blue] > sea.transmittance[blue] * 1.03
    assert (high.spherical_albedo <= sea.spherical_albedo + 1e-6).all()


def test_the_rayleigh_tables_are_the_aerosol_free_terms_at_their_altitudes(
    atmosphere: Atmosphere,
) -> None:
    """Without aerosol the elevation-corrected terms are the Rayleigh runs themselves at each
    table altitude (the sea-level table's aerosol-free entry plus the Rayleigh difference)."""
    assert atmosphere.altitude_range_m is not None
    geometry = Geometry(35.0, 0.0, 0.0)
    with np.load(load_card().lut_path) as tables:
        altitudes, rayleigh = tables["altitude_km"], tables["rayleigh_path"]
        bands = [str(b) for b in tables["bands"]]
        sun = list(tables["sun_zenith"]).index(35.0)
    for k, altitude in enumerate(altitudes):
        path = atmosphere.dry_terms(0.0, geometry, ozone=0.0, elevation_m=altitude * 1000.0).path
        expected = [rayleigh[bands.index(b), k, sun, 0, 0] for b in atmosphere.bands]
        np.testing.assert_allclose(path.ravel(), expected, rtol=0.02, atol=2e-4)
