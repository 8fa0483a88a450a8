"""The scene corrector: coarse atmosphere, per-band inversion on any grid, cirrus, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.core.blocks import block_mean
from component.core.grid import Grid
from component.errors import InvalidItemError
from component.model.atmosphere import DEFAULT_GEOMETRY, Atmosphere, Geometry
from component.model.card import load_card
from component.model.correction import (
    SceneCorrector,
    StandardAtmosphere,
    cirrus_reflectance,
    coarse_to_fine,
    smooth,
    substitute_missing,
    terms_step,
    thinned_terms,
)


@pytest.fixture(scope="module")
def tables() -> tuple[Atmosphere, Atmosphere, Atmosphere]:
    card = load_card()
    assert card.lut_path is not None
    return (
        Atmosphere.load(card.lut_path, card.lut_sha256),
        Atmosphere.load(card.lut_path, None, L2A_BANDS),
        Atmosphere.load(card.lut_path, None, ("B10",)),
    )


def corrector(tables, adjacency: float = 0.0) -> SceneCorrector:  # type: ignore[no-untyped-def]
    _, out, b10 = tables
    return SceneCorrector(out, StandardAtmosphere(0.2, 2.0), L1C_BANDS, adjacency, 0.0, b10, 120.0)


def grid(resolution: float, height: int, width: int, x0: float = 500000, y0: float = 5e6):
    return Grid(None, Affine(resolution, 0, x0, 0, -resolution, y0), width, height)


def test_coarse_to_fine_is_bilinear_at_pixel_centres() -> None:
    coarse = grid(60, 4, 5)
    fine = grid(10, 24, 30)
    ramp = np.tile(np.arange(5, dtype=np.float32), (4, 1))  # value = column index
    out = coarse_to_fine(coarse, fine)(ramp)
    # fine column j has its centre at (j + 0.5) * 10 m = coarse column (j + 0.5) / 6 - 0.5
    expected = np.clip((np.arange(30) + 0.5) / 6 - 0.5, 0, 4)
    np.testing.assert_allclose(out[7], expected, atol=1e-6)
    constant = coarse_to_fine(coarse, fine)(np.full((4, 5), 0.3, np.float32))
    np.testing.assert_allclose(constant, 0.3, atol=1e-7)


def test_a_strip_resamples_like_the_rows_of_the_whole() -> None:
    coarse, fine = grid(120, 6, 6), grid(20, 36, 36)
    values = np.random.default_rng(0).uniform(size=(6, 6)).astype(np.float32)
    whole = coarse_to_fine(coarse, fine)(values)
    strip = coarse_to_fine(coarse, fine.rows(10, 17))(values)
    np.testing.assert_allclose(strip, whole[10:17], atol=1e-6)


def test_inversion_recovers_the_surface_under_the_same_atmosphere(tables) -> None:  # type: ignore[no-untyped-def]
    """Simulate TOA with the table, correct it on a 20 m grid from a 120 m estimate."""
    everything, _, _ = tables
    geometry = Geometry(35.0, 4.0, 70.0)
    rng = np.random.default_rng(1)
    surface = rng.uniform(0.02, 0.5, (len(L1C_BANDS), 30, 30)).astype(np.float32)
    terms = everything.terms(0.2, 2.0, geometry)
    shape = (len(L1C_BANDS), 1, 1)
    toa = Atmosphere.forward(
        surface,
        type(terms)(
            *(t.reshape(shape) for t in (terms.path, terms.transmittance, terms.spherical_albedo))
        ),
    )
    toa[L1C_BANDS.index("B10")] = 0.001  # no cirrus
    scene = corrector(tables)
    state = scene.estimate(block_mean(toa, 6), grid(120, 5, 5), geometry)
    boa = scene.correct("B04", toa[L1C_BANDS.index("B04")], grid(20, 30, 30), state)
    np.testing.assert_allclose(boa, surface[L1C_BANDS.index("B04")], atol=1e-4)
    assert state.notes == []


def _under_cirrus(tables, cirrus: float, dimming: float | None = None):  # type: ignore[no-untyped-def]
    """A surface, and its TOA under the table's atmosphere below a thin cirrus layer."""
    everything, _, _ = tables
    geometry = Geometry(35.0, 4.0, 70.0)
    rng = np.random.default_rng(2)
    surface = rng.uniform(0.02, 0.5, (len(L1C_BANDS), 30, 30)).astype(np.float32)
    terms = everything.terms(0.2, 2.0, geometry)
    shape = (len(L1C_BANDS), 1, 1)
    toa = Atmosphere.forward(
        surface,
        type(terms)(
            *(t.reshape(shape) for t in (terms.path, terms.transmittance, terms.spherical_albedo))
        ),
        cirrus,
        dimming,
    )
    # B10 sees the cirrus alone, above a moist atmosphere that hides the surface.
    toa[L1C_BANDS.index("B10")] = cirrus
    return surface, toa, geometry


def test_cirrus_is_flagged_not_subtracted_by_default(tables) -> None:  # type: ignore[no-untyped-def]
    """Sen2Cor's default configuration: a B10 excess changes no band."""
    _, toa, geometry = _under_cirrus(tables, 0.03)
    scene = corrector(tables)
    state = scene.estimate(block_mean(toa, 6), grid(120, 5, 5), geometry)
    assert not state.cirrus.any()
    clear = toa.copy()
    clear[L1C_BANDS.index("B10")] = 0.0
    clear_state = scene.estimate(block_mean(clear, 6), grid(120, 5, 5), geometry)
    for band in ("B02", "B8A", "B12"):
        i = L1C_BANDS.index(band)
        np.testing.assert_array_equal(
            scene.correct(band, toa[i], grid(20, 30, 30), state),
            scene.correct(band, toa[i], grid(20, 30, 30), clear_state),
        )


def test_cirrus_correction_takes_out_the_layer_in_every_band(tables) -> None:  # type: ignore[no-untyped-def]
    """With the correction on, the surface under a cirrus layer is recovered in every band,
    whatever the layer's dimming (the forward model and the inversion share it)."""
    cirrus = 0.03
    for dimming in (0.0, 1.0):
        surface, toa, geometry = _under_cirrus(tables, cirrus, dimming)
        _, out, _ = tables
        scene = SceneCorrector(
            out, StandardAtmosphere(0.2, 2.0), L1C_BANDS, 0.0, 0.0, None, 120.0,
            cirrus_correction=True,
        )  # fmt: skip
        state = scene.estimate(block_mean(toa, 6), grid(120, 5, 5), geometry)
        np.testing.assert_allclose(state.cirrus, cirrus, atol=1e-5)
        for band in ("B02", "B04", "B8A", "B11", "B12"):
            i = L1C_BANDS.index(band)
            if dimming == 0.0:
                boa = scene.correct(band, toa[i], grid(20, 30, 30), state)
                np.testing.assert_allclose(boa, surface[i], atol=2e-4)
            else:  # the inversion of a layer that dims, checked through the table alone
                terms = out.terms(0.2, 2.0, geometry)
                k = out.bands.index(band)
                single = type(terms)(
                    terms.path[k], terms.transmittance[k], terms.spherical_albedo[k]
                )
                back = Atmosphere.inverse(toa[i], single, cirrus, dimming)
                np.testing.assert_allclose(back, surface[i], atol=2e-4)


def test_cirrus_never_exceeds_what_the_darkest_band_shows(tables) -> None:  # type: ignore[no-untyped-def]
    """B10 raised by something else than cirrus (haze in dry air): the layer taken out of the
    bands is capped so that no band's surface goes below zero."""
    _, toa, geometry = _under_cirrus(tables, 0.0)
    toa[L1C_BANDS.index("B10")] = 0.5  # far more than any band could lose
    _, out, _ = tables
    scene = SceneCorrector(
        out, StandardAtmosphere(0.2, 2.0), L1C_BANDS, 0.0, 0.0, None, 120.0,
        cirrus_correction=True,
    )  # fmt: skip
    coarse = block_mean(toa, 6)
    state = scene.estimate(coarse, grid(120, 5, 5), geometry)
    index = [L1C_BANDS.index(b) for b in L2A_BANDS]
    room = (coarse[index] - state.terms.path).min(axis=0)
    assert (state.cirrus <= room + 1e-6).all() and (state.cirrus < 0.5).all()


def test_unknown_geometry_is_noted_and_defaults_stand_in(tables) -> None:  # type: ignore[no-untyped-def]
    toa = np.full((13, 4, 4), 0.1, np.float32)
    state = corrector(tables).estimate(toa, grid(120, 4, 4), None)
    assert state.geometry is DEFAULT_GEOMETRY
    assert any("geometry" in note for note in state.notes)


def test_cirrus_is_b10_excess_over_the_clear_sky() -> None:
    b10 = np.array([0.002, 0.03, 0.08], np.float32)
    assert cirrus_reflectance(None) == 0.0
    whole = cirrus_reflectance(b10)  # no clear-sky model: Sen2Cor's rule, B10 taken whole
    np.testing.assert_allclose(whole, [0.0, 0.03, 0.08])


def test_dry_air_surface_signal_in_b10_is_not_cirrus(tables) -> None:  # type: ignore[no-untyped-def]
    """Over a dry atmosphere 1375 nm sees the surface: that part of B10 must stay."""
    _, _, b10_table = tables
    geometry = Geometry(30.0, 3.0, 90.0)
    dry = b10_table.terms(0.1, 0.15, geometry)
    clear = type(dry)(dry.path[0], dry.transmittance[0], dry.spherical_albedo[0])
    b8a, b11 = np.float32(0.3), np.float32(0.25)
    surface_1375 = 0.3 * b8a + 0.7 * b11
    b10_clear = clear.path + clear.transmittance * surface_1375
    assert b10_clear > 0.01  # Sen2Cor's bare threshold would call this cirrus
    assert cirrus_reflectance(np.array([b10_clear]), b8a, b11, clear)[0] == 0.0
    thin = cirrus_reflectance(np.array([b10_clear + 0.04]), b8a, b11, clear)[0]
    assert thin == pytest.approx(0.04, abs=1e-5)


def test_missing_bands_are_substituted_with_a_note() -> None:
    toa = np.random.default_rng(0).uniform(0.05, 0.3, (13, 3, 3)).astype(np.float32)
    toa[L1C_BANDS.index("B10")] = np.nan
    toa[L1C_BANDS.index("B8A")] = np.nan
    filled, notes = substitute_missing(toa, L1C_BANDS, cirrus_correction=True)
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[L1C_BANDS.index("B8A")], toa[L1C_BANDS.index("B08")])
    assert (filled[L1C_BANDS.index("B10")] == 0).all()
    assert len(notes) == 2 and any("cirrus" in n for n in notes)
    # Without a cirrus correction asked for, a missing B10 changes nothing worth a note.
    assert len(substitute_missing(toa, L1C_BANDS)[1]) == 1


def test_bands_without_substitute_are_an_input_error_naming_them_all() -> None:
    """An RGB-only chip is the input's problem (exit 4), not the model's (exit 8)."""
    toa = np.full((13, 3, 3), np.nan, np.float32)
    for band in ("B02", "B03", "B04"):
        toa[L1C_BANDS.index(band)] = 0.1
    with pytest.raises(InvalidItemError) as raised:
        substitute_missing(toa, L1C_BANDS)
    assert raised.value.exit_code == 4
    for band in ("B05", "B06", "B07", "B08", "B8A", "B11", "B12"):
        assert band in str(raised.value).split("which")[0]
    assert "B10" not in str(raised.value).split("which")[0]


def test_adjacency_restores_contrast(tables) -> None:  # type: ignore[no-untyped-def]
    """A bright field amid dark forest: adjacency correction makes it brighter, the forest
    darker, and leaves a uniform scene alone."""
    toa = np.full((13, 12, 12), 0.08, np.float32)
    toa[:, 5:7, 5:7] = 0.3
    toa[L1C_BANDS.index("B10")] = 0.0  # no cirrus: the surface stays above the clip at zero
    flat = corrector(tables).correct_array(toa, 120.0, Geometry(30.0, 3.0, 90.0))[0]
    adjusted = corrector(tables, adjacency=300.0).correct_array(
        toa, 120.0, Geometry(30.0, 3.0, 90.0)
    )[0]
    blue = L2A_BANDS.index("B02")
    assert adjusted[blue, 5, 5] > flat[blue, 5, 5]
    assert adjusted[blue, 0, 0] <= flat[blue, 0, 0] + 1e-6
    uniform = np.full((13, 12, 12), 0.1, np.float32)
    uniform[L1C_BANDS.index("B10")] = 0.0
    a = corrector(tables, 300.0).correct_array(uniform, 120.0, DEFAULT_GEOMETRY)[0]
    b = corrector(tables, 0.0).correct_array(uniform, 120.0, DEFAULT_GEOMETRY)[0]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_correct_array_keeps_shape_and_nodata(tables) -> None:  # type: ignore[no-untyped-def]
    toa = np.random.default_rng(3).uniform(0.05, 0.3, (13, 25, 37)).astype(np.float32)
    toa[:, 0, 0] = np.nan
    boa, state = corrector(tables).correct_array(toa, 10.0, None)
    assert boa.shape == (12, 25, 37)
    assert np.isnan(boa[:, 0, 0]).all() and np.isfinite(boa[:, 1:, 1:]).all()
    assert state.grid.transform.a == 120.0 and state.aot.shape == (3, 4)


def test_block_mean_and_smooth_ignore_nan() -> None:
    a = np.array([[[1.0, 3.0, 5.0], [np.nan, 5.0, np.nan]]], np.float32)
    np.testing.assert_allclose(block_mean(a, 2), [[[3.0, 5.0]]])
    field = np.full((9, 9), 2.0, np.float32)
    field[4, 4] = np.nan
    np.testing.assert_allclose(smooth(field, 1.5), 2.0, atol=1e-5)
    assert np.isnan(smooth(np.full((3, 3), np.nan, np.float32), 1.0)).all()


def test_thinned_terms_match_per_pixel_terms_on_smooth_fields(tables) -> None:  # type: ignore[no-untyped-def]
    """Aerosol and angle terms every 2nd pixel, water per pixel: 99.9 % within 2 DN of exact."""
    from scipy.ndimage import gaussian_filter

    _, out, _ = tables
    rng = np.random.default_rng(1)
    n = 61
    aot = (0.3 + 3 * gaussian_filter(rng.normal(0, 1, (n, n)), 8.3)).astype(np.float32)
    water = np.clip(2 + 20 * gaussian_filter(rng.normal(0, 1, (n, n)), 1.0), 0.2, 6)
    rows, cols = np.mgrid[0:n, 0:n] / n
    geometry = Geometry(40 + 2 * rows, 3 + 6 * cols, 100 + 10 * cols)
    assert terms_step(1000.0, 120.0) == 2 and terms_step(0.0, 120.0) == 1
    assert terms_step(4000.0, 120.0) == 4 and terms_step(1000.0, 60.0) == 4
    exact = out.terms(aot, water, geometry)
    thin = thinned_terms(out, aot, water, geometry, 2)
    toa = np.float32(0.15)

    def surface(t):  # type: ignore[no-untyped-def]
        y = (toa - t.path) / t.transmittance
        return y / (1 + t.spherical_albedo * y)

    difference = np.abs(surface(thin) - surface(exact))
    # the table is piecewise linear: across its AOT nodes the thinned terms cut the corner
    assert difference.max() < 1e-3 and np.percentile(difference, 99.9) < 2e-4
    # on the pixels it computes, thinning is exact
    np.testing.assert_allclose(thin.path[:, ::2, ::2], exact.path[:, ::2, ::2], atol=1e-6)


def _uniform_toa(
    everything: Atmosphere, rho: float, aot: float, water: float, geometry: Geometry
) -> np.ndarray:
    """TOA (13, 12, 12) of a uniform surface *rho* under one atmosphere, through the table."""
    surface = np.full((len(L1C_BANDS), 12, 12), rho, np.float32)
    terms = everything.terms(aot, water, geometry)
    shape = (len(L1C_BANDS), 1, 1)
    single = type(terms)(
        *(t.reshape(shape) for t in (terms.path, terms.transmittance, terms.spherical_albedo))
    )
    return Atmosphere.forward(surface, single)


def test_an_aerosol_estimate_that_blackens_clear_pixels_is_shrunk(tables) -> None:  # type: ignore[no-untyped-def]
    """A dark scene under AOT 0.1 with an estimator saying 1.0: blue and red invert far below
    zero, so the estimate's excess over the standard atmosphere is scaled down, and said; the
    same scene with a right estimate is left as it is."""
    everything, out, b10 = tables
    geometry = Geometry(35.0, 4.0, 70.0)
    toa = _uniform_toa(everything, 0.03, 0.1, 1.5, geometry)  # dark: water, forest
    for aot, shrunk in ((1.0, True), (0.1, False)):
        scene = SceneCorrector(out, StandardAtmosphere(aot, 1.5), L1C_BANDS, 0.0, 0.0, b10, 120.0)
        state = scene.estimate(toa, grid(120, 12, 12), geometry)
        noted = [n for n in state.notes if "aerosol estimate" in n]
        assert bool(noted) is shrunk
        if shrunk:
            assert 0.1 < float(state.aot.mean()) < 0.6
            index = [L1C_BANDS.index(b) for b in L2A_BANDS]
            unclipped = Atmosphere.inverse(toa[index], state.terms)
            blue, red = L2A_BANDS.index("B02"), L2A_BANDS.index("B04")
            assert float(unclipped[[blue, red]].min()) >= -0.002  # no longer far below zero
        else:
            np.testing.assert_allclose(state.aot, 0.1)
    unguarded = SceneCorrector(
        out, StandardAtmosphere(1.0, 1.5), L1C_BANDS, 0.0, 0.0, b10, 120.0, guard=False
    )
    np.testing.assert_allclose(unguarded.estimate(toa, grid(120, 12, 12), geometry).aot, 1.0)


def test_the_guard_shrinks_toward_the_aerosol_forecast_where_there_is_one(tables) -> None:  # type: ignore[no-untyped-def]
    """Clear water (0.005) under AOT 0.02 with an estimator saying 1.0: even the standard
    atmosphere's 0.1 leaves it below zero, so the guard stops there without a forecast; with
    a CAMS forecast of 0.03 it shrinks further, until the water is at or above zero."""
    everything, out, b10 = tables
    geometry = Geometry(35.0, 4.0, 70.0)
    toa = _uniform_toa(everything, 0.005, 0.02, 1.5, geometry)
    scene = SceneCorrector(out, StandardAtmosphere(1.0, 1.5), L1C_BANDS, 0.0, 0.0, b10, 120.0)
    alone = scene.estimate(toa, grid(120, 12, 12), geometry)
    np.testing.assert_allclose(alone.aot, 0.1, atol=1e-6)
    prior = np.full((12, 12), 0.03, np.float32)
    guided = scene.estimate(toa, grid(120, 12, 12), geometry, aot_prior=prior)
    assert 0.03 <= float(guided.aot.mean()) < 0.09  # below 0.1: the water is not blackened
    assert any("CAMS forecast" in note for note in guided.notes)
    index = [L1C_BANDS.index(b) for b in L2A_BANDS]
    unclipped = Atmosphere.inverse(toa[index], guided.terms)
    blue, red = L2A_BANDS.index("B02"), L2A_BANDS.index("B04")
    assert float(unclipped[[blue, red]].min()) >= -0.002


def test_the_water_vapour_forecast_replaces_the_estimate_where_it_is_known(tables) -> None:  # type: ignore[no-untyped-def]
    """A surface under 3.5 cm of water, an estimator that says 1.5: where the product's ECMWF
    forecast (3.5) is known, the physics takes it and the water-vapour bands come back right;
    where it is NaN the estimate stays; without the policy the estimate stays everywhere."""
    everything, out, b10 = tables
    geometry = Geometry(35.0, 4.0, 70.0)
    toa = _uniform_toa(everything, 0.25, 0.1, 3.5, geometry)
    forecast = np.full((12, 12), 3.5, np.float32)
    forecast[:4, :4] = np.nan
    estimator = StandardAtmosphere(0.1, 1.5)
    index = [L1C_BANDS.index(b) for b in L2A_BANDS]
    water_band = L2A_BANDS.index("B09")
    for policy in (True, False):
        scene = SceneCorrector(
            out, estimator, L1C_BANDS, 0.0, 0.0, b10, 120.0, forecast_water=policy
        )
        state = scene.estimate(toa, grid(120, 12, 12), geometry, water_prior=forecast)
        boa = Atmosphere.inverse(toa[index], state.terms)[water_band]
        if policy:
            np.testing.assert_allclose(state.water[4:, 4:], 3.5)
            np.testing.assert_allclose(boa[4:, 4:], 0.25, atol=0.002)
        else:
            np.testing.assert_allclose(state.water[4:, 4:], 1.5)
            assert float(np.abs(boa[4:, 4:] - 0.25).min()) > 0.01  # the wrong column shows
        np.testing.assert_allclose(state.water[:4, :4], 1.5)


def test_anchored_water_takes_the_forecasts_level_and_the_estimates_detail(tables) -> None:  # type: ignore[no-untyped-def]
    """A 30 km scene at 120 m whose estimate is 1.0 cm with a valley of 1.3 (the column
    thickens there) and a forecast of 2.0 cm: the result averages the forecast's level, the
    valley stays 30 % above its surroundings, and where the forecast is NaN the estimate
    stays."""
    from component.model.correction import anchored_water, large_scale

    _, out, _ = tables
    estimate = np.ones((250, 250), np.float32)
    estimate[100:120, :] = 1.3
    forecast = np.full((250, 250), 2.0, np.float32)
    forecast[:, 240:] = np.nan
    water = anchored_water(estimate, forecast, 120.0, out)
    assert abs(float(water[:, :240].mean()) - 2.0) < 0.04
    ratio = water[110, 50:200] / water[30, 50:200]
    np.testing.assert_allclose(ratio, 1.3, rtol=0.03)
    np.testing.assert_array_equal(water[:, 240:], estimate[:, 240:])
    # on a tile's grid the smoothing runs on block means: within 1.5 % of the range of scipy's
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    ramp = np.linspace(0.5, 4.0, 915, dtype=np.float32)[None, :] * np.ones((915, 1), np.float32)
    field = ramp + gaussian_filter(rng.normal(0, 20, ramp.shape), 20).astype(np.float32)
    exact = gaussian_filter(field, 14_000 / 120, mode="reflect")
    error = np.abs(large_scale(field, 14_000 / 120) - exact).max()
    assert error < 0.015 * float(field.max() - field.min())
