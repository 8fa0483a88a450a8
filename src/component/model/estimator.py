"""The atmosphere network: TOA reflectance of all bands on the coarse grid -> AOT and water vapour.

:func:`network_input` is the one place that turns TOA reflectance and what is known of the scene
into the network's channels (training calls it too, so the two never drift apart): the card's
spectral bands, clipped and with invalid pixels filled, then the context channels the card lists
(:data:`CONTEXT_CHANNELS`): the sun/view geometry, the terrain's elevation, and the product's own
forecasts of water vapour (ECMWF) and aerosol (CAMS) as priors. What is unknown is given as the
value the network was trained to take for unknown with its ``*_known`` channel at 0: the default
angles (the network then gives the *effective* AOT that corrects the scene best with them), sea
level, no prior.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from component.errors import ModelError
from component.model.atmosphere import DEFAULT_GEOMETRY, Geometry
from component.model.card import ModelCard
from component.model.inference import TiledNetwork


@dataclass(frozen=True)
class Context:
    """What is known of a scene besides its TOA: each field a scalar or an array on the coarse
    grid (NaN where unknown), or None when unknown everywhere."""

    geometry: Geometry | None = None
    elevation_m: np.ndarray | float | None = None
    """The terrain (the air column above the target, pressure included), metres."""
    water_prior_cm: np.ndarray | float | None = None
    """A forecast of the water-vapour column (ECMWF), cm."""
    aot_prior: np.ndarray | float | None = None
    """A forecast of the aerosol optical depth at 550 nm (CAMS)."""


def _known(value: np.ndarray | float | None) -> np.ndarray | float:
    if value is None:
        return 0.0
    return np.isfinite(np.asarray(value, np.float32)).astype(np.float32)


def _or_zero(value: np.ndarray | float | None, low: float, high: float) -> np.ndarray | float:
    if value is None:
        return 0.0
    return np.clip(np.nan_to_num(np.asarray(value, np.float32), nan=0.0), low, high)


def _geometry(c: Context) -> Geometry:
    return c.geometry if c.geometry is not None else DEFAULT_GEOMETRY


CONTEXT_CHANNELS: dict[str, Callable[[Context], np.ndarray | float]] = {
    "cos_sun_zenith": lambda c: np.cos(np.radians(_geometry(c).sun_zenith)),
    "cos_view_zenith": lambda c: np.cos(np.radians(_geometry(c).view_zenith)),
    "cos_relative_azimuth": lambda c: np.cos(np.radians(_geometry(c).relative_azimuth)),
    "geometry_known": lambda c: 1.0 if _geometry(c).known else 0.0,
    "elevation_km": lambda c: _or_zero(c.elevation_m, -500.0, 5000.0) / 1000.0,
    "water_prior_cm": lambda c: _or_zero(c.water_prior_cm, 0.0, 7.0),
    "water_prior_known": lambda c: _known(c.water_prior_cm),
    "aot_prior": lambda c: _or_zero(c.aot_prior, 0.0, 1.5),
    "aot_prior_known": lambda c: _known(c.aot_prior),
}
"""Every context channel a card may list, by name: a function of the :class:`Context`."""


def network_input(
    toa: np.ndarray,
    bands: tuple[str, ...],
    context: Context | Geometry | None,
    card: ModelCard,
) -> np.ndarray:
    """(channels, h, w) float32: the card's bands from *toa* (in *bands* order), then the
    card's context channels (a bare :class:`Geometry` is a context that knows only it)."""
    if not isinstance(context, Context):
        context = Context(geometry=context)
    try:
        spectral = toa[[bands.index(b) for b in card.input_bands]]
    except ValueError as missing:
        raise ModelError(f"the network needs band {missing}; it was not read") from None
    x = np.clip(spectral.astype(np.float32, copy=False), card.clip_min, card.clip_max)
    x = np.where(np.isfinite(x), x, np.float32(card.nodata_fill))
    shape = toa.shape[1:]
    planes = []
    for name in card.context_channels:
        if name not in CONTEXT_CHANNELS:
            raise ModelError(f"model card channel {name!r} is unknown; fix the card")
        value = np.asarray(CONTEXT_CHANNELS[name](context), np.float32)
        planes.append(np.broadcast_to(value, shape))
    return np.concatenate([x, np.stack(planes)]) if planes else x


class NetworkEstimator:
    """AOT and water vapour from the tiled network (NaN where the input had no valid pixel)."""

    name = "network"

    def __init__(self, network: TiledNetwork, card: ModelCard) -> None:
        self.network = network
        self.card = card

    def __call__(
        self, toa: np.ndarray, bands: tuple[str, ...], context: Context
    ) -> tuple[np.ndarray, np.ndarray]:
        x = network_input(toa, bands, context, self.card)
        valid = np.isfinite(toa).all(axis=0)
        out = self.network(x, valid)
        outputs = self.card.network_outputs
        aot, water = out[outputs.index("aot550")], out[outputs.index("water_vapour")]
        aot[~valid] = np.nan
        water[~valid] = np.nan
        return aot, water
