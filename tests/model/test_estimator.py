"""The network's input: spectral bands, then the context channels the card lists."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from component.core.bands import L1C_BANDS
from component.errors import ModelError
from component.model.atmosphere import DEFAULT_GEOMETRY, Geometry
from component.model.card import card_from_dict, load_card
from component.model.estimator import CONTEXT_CHANNELS, Context, network_input

SHIPPED_CARD = Path(__file__).resolve().parents[2] / "models" / "model_card.json"
CONTEXT = ("elevation_km", "water_prior_cm", "water_prior_known", "aot_prior", "aot_prior_known")


def card_with(channels: tuple[str, ...]):  # type: ignore[no-untyped-def]
    data = json.loads(SHIPPED_CARD.read_text())
    spectral = [b for b in data["mlm:input"][0]["bands"] if b["name"].startswith("B")]
    data["mlm:input"][0]["bands"] = spectral + [{"name": c} for c in channels]
    return card_from_dict(data, SHIPPED_CARD)


def toa(size: int = 4) -> np.ndarray:
    return np.full((len(L1C_BANDS), size, size), 0.1, np.float32)


def test_every_channel_of_the_shipped_card_is_known() -> None:
    card = load_card(SHIPPED_CARD)
    assert set(card.context_channels) <= set(CONTEXT_CHANNELS)


def test_context_channels_carry_the_elevation_and_the_priors() -> None:
    card = card_with(("geometry_known", *CONTEXT))
    water = np.array([[1.2, np.nan], [2.0, 3.0]], np.float32)
    context = Context(Geometry(30.0, 5.0, 90.0), 1500.0, water, 0.25)
    x = network_input(toa(2), L1C_BANDS, context, card)
    assert x.shape == (13 + 6, 2, 2) and x.dtype == np.float32
    known, elevation, prior, prior_known, aot, aot_known = x[13:]
    assert (known == 1).all() and np.allclose(elevation, 1.5)
    np.testing.assert_allclose(prior, [[1.2, 0.0], [2.0, 3.0]])
    np.testing.assert_array_equal(prior_known, [[1, 0], [1, 1]])  # NaN: unknown there
    assert np.allclose(aot, 0.25) and (aot_known == 1).all()


def test_what_is_unknown_is_zero_with_its_flag_at_zero() -> None:
    card = card_with(("cos_sun_zenith", "geometry_known", *CONTEXT))
    bare = network_input(toa(), L1C_BANDS, None, card)
    assert np.allclose(bare[13], np.cos(np.radians(DEFAULT_GEOMETRY.sun_zenith)))
    assert (bare[14:] == 0).all()  # default geometry unknown, sea level, no priors
    # a bare geometry is a context that knows only it
    geometry = Geometry(50.0, 3.0, 10.0)
    np.testing.assert_array_equal(
        network_input(toa(), L1C_BANDS, geometry, card),
        network_input(toa(), L1C_BANDS, Context(geometry), card),
    )


def test_an_unknown_channel_is_a_card_error() -> None:
    card = replace(card_with(()), context_channels=("moon_phase",))
    with pytest.raises(ModelError, match="moon_phase"):
        network_input(toa(), L1C_BANDS, None, card)
