"""The run-time inversion, in torch, so a loss on surface reflectance trains the atmosphere.

For one sample the geometry is fixed, so every term of the 6S table is a curve over the AOT
nodes (or the water-vapour nodes) (:meth:`component.model.atmosphere.Atmosphere.curves`).
Interpolating those curves linearly is exactly what the run-time multilinear interpolation
does at that geometry, so this module computes the same surface reflectance as
:meth:`component.model.correction.SceneCorrector.correct`, with gradients flowing back to the
AOT and water-vapour maps the network predicted.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

from component.model import atmosphere

CURVE_KEYS = ("path", "t_down", "t_up", "spherical_albedo", "adjacency_gain")
WATER_KEYS = ("log_t_water", "path_water")


def batch_curves(curves: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stacked curves of a batch (:meth:`Atmosphere.curves` of each sample's geometry and
    elevation): (B, bands, nodes) tensors, plus the node tensors."""
    out = {k: torch.from_numpy(np.stack([c[k] for c in curves])) for k in CURVE_KEYS + WATER_KEYS}
    out["t_fixed"] = torch.from_numpy(np.stack([c["t_fixed"] for c in curves]))
    out["aot"] = torch.from_numpy(curves[0]["aot"])
    out["water"] = torch.from_numpy(curves[0]["water"])
    return out


def interp_nodes(values: torch.Tensor, nodes: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of per-sample curves (B, C, n) at per-pixel *values* (B, H, W).

    Values outside the nodes are clamped (the network's outputs are bounded to the table
    already). Returns (B, C, H, W); differentiable with respect to *values*.
    """
    b, c, n = curves.shape
    v = values.clamp(float(nodes[0]), float(nodes[-1]))
    index = (torch.bucketize(v.detach(), nodes, right=True) - 1).clamp(0, n - 2)
    low, high = nodes[index], nodes[index + 1]
    weight = ((v - low) / (high - low)).unsqueeze(1)
    flat = index.reshape(b, 1, -1).expand(b, c, -1)
    shape = (b, c, *values.shape[1:])
    at_low = torch.gather(curves, 2, flat).reshape(shape)
    at_high = torch.gather(curves, 2, flat + 1).reshape(shape)
    return at_low * (1 - weight) + at_high * weight


def _symmetric_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric padding (``d c b a | a b c d``), scipy.ndimage's ``reflect``;
    repeated when the radius exceeds the size."""
    while radius > 0:
        step = min(radius, x.shape[dim])
        low = x.narrow(dim, 0, step).flip(dim)
        high = x.narrow(dim, x.shape[dim] - step, step).flip(dim)
        x = torch.cat([low, x, high], dim)
        radius -= step
    return x


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), exactly as scipy.ndimage.gaussian_filter does it
    at run time (truncated at 4 sigma, ``reflect`` edges)."""
    if sigma <= 0:
        return x
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = functional.conv2d(_symmetric_pad(x, radius, 3), horizontal, groups=c)
    return functional.conv2d(_symmetric_pad(x, radius, 2), vertical, groups=c)


def invert(
    toa: torch.Tensor,
    cirrus: torch.Tensor,
    aot: torch.Tensor,
    water: torch.Tensor,
    curves: dict[str, torch.Tensor],
    adjacency_sigma_px: float = 0.0,
) -> torch.Tensor:
    """Surface reflectance (B, bands, H, W) from TOA (B, bands, H, W) and the atmosphere maps.

    *cirrus* (B, H, W) is taken out of every band first (its reflectance and its dimming, as
    :func:`component.model.atmosphere.cirrus_transmittance`); *aot*, *water* are (B, H, W).
    """
    a, w = curves["aot"], curves["water"]
    path = interp_nodes(aot, a, curves["path"]) * interp_nodes(water, w, curves["path_water"])
    transmittance = (
        interp_nodes(aot, a, curves["t_down"])
        * interp_nodes(aot, a, curves["t_up"])
        * curves["t_fixed"][..., None, None]
        * torch.exp(interp_nodes(water, w, curves["log_t_water"]))
    )
    spherical = interp_nodes(aot, a, curves["spherical_albedo"])
    layer = cirrus.unsqueeze(1)
    y = ((toa - layer) / (1 - atmosphere.CIRRUS_DIMMING * layer) ** 2 - path) / transmittance
    surface = y / (1 + spherical * y)
    if adjacency_sigma_px <= 0:
        return surface
    environment = gaussian_blur(surface, adjacency_sigma_px)
    gain = interp_nodes(aot, a, curves["adjacency_gain"])
    return environment + (surface - environment) * gain
