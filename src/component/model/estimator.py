"""The atmosphere network: TOA reflectance of all bands on the coarse grid -> AOT and water vapour.

:func:`network_input` is the one place that turns TOA reflectance and geometry into the network's
channels (training calls it too, so the two never drift apart): the card's spectral bands,
clipped and with invalid pixels filled, then the geometry channels the card lists. When the
geometry is unknown the default angles stand in and the ``geometry_known`` channel is 0: the
network was trained on such cases to give the AOT that, with the default angles, corrects the
scene best (an *effective* AOT).
"""

from __future__ import annotations

import numpy as np

from component.errors import ModelError
from component.model.atmosphere import DEFAULT_GEOMETRY, Geometry
from component.model.card import ModelCard
from component.model.inference import TiledNetwork

GEOMETRY_CHANNELS = {
    "cos_sun_zenith": lambda g: np.cos(np.radians(g.sun_zenith)),
    "cos_view_zenith": lambda g: np.cos(np.radians(g.view_zenith)),
    "cos_relative_azimuth": lambda g: np.cos(np.radians(g.relative_azimuth)),
    "geometry_known": lambda g: 1.0 if g.known else 0.0,
}


def network_input(
    toa: np.ndarray,
    bands: tuple[str, ...],
    geometry: Geometry | None,
    card: ModelCard,
) -> np.ndarray:
    """(channels, h, w) float32: the card's bands from *toa* (in *bands* order), then geometry."""
    try:
        spectral = toa[[bands.index(b) for b in card.input_bands]]
    except ValueError as missing:
        raise ModelError(f"the network needs band {missing}; it was not read") from None
    x = np.clip(spectral.astype(np.float32, copy=False), card.clip_min, card.clip_max)
    x = np.where(np.isfinite(x), x, np.float32(card.nodata_fill))
    geometry = geometry if geometry is not None else DEFAULT_GEOMETRY
    shape = toa.shape[1:]
    planes = []
    for name in card.geometry_channels:
        if name not in GEOMETRY_CHANNELS:
            raise ModelError(f"model card channel {name!r} is unknown; fix the card")
        value = np.asarray(GEOMETRY_CHANNELS[name](geometry), np.float32)
        planes.append(np.broadcast_to(value, shape))
    return np.concatenate([x, np.stack(planes)]) if planes else x


class NetworkEstimator:
    """AOT and water vapour from the tiled network (NaN where the input had no valid pixel)."""

    name = "network"

    def __init__(self, network: TiledNetwork, card: ModelCard) -> None:
        self.network = network
        self.card = card

    def __call__(
        self, toa: np.ndarray, bands: tuple[str, ...], geometry: Geometry
    ) -> tuple[np.ndarray, np.ndarray]:
        x = network_input(toa, bands, geometry, self.card)
        valid = np.isfinite(toa).all(axis=0)
        out = self.network(x, valid)
        outputs = self.card.network_outputs
        aot, water = out[outputs.index("aot550")], out[outputs.index("water_vapour")]
        aot[~valid] = np.nan
        water[~valid] = np.nan
        return aot, water
