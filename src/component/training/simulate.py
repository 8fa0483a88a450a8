"""Simulated L1C scenes: real surfaces under random atmospheres, through the 6S table.

A training sample is a patch of a real surface (:mod:`component.training.surfaces`) seen through
an atmosphere drawn at random: aerosol and water-vapour fields that vary smoothly over the
patch (the atmosphere changes over kilometres), ozone, sun and view angles, sometimes thin
cirrus, and the adjacency effect (the surroundings' light scattered into each pixel). TOA
reflectance is computed with :meth:`component.model.atmosphere.Atmosphere.forward`, the same
table the component inverts at run time, plus sensor noise and 1e-4 quantization.

Nothing here is specific to one network: the sample records the true state (for losses on the
atmosphere itself), the target's altitude (the table's altitude axis) and what the network is
told: the geometry (for a third of the samples none: the default angles, as for chips without
metadata), and sometimes forecasts of the water vapour and the aerosol with realistic errors
(ECMWF's about 20 %, CAMS's about 50 %), as the product's own meteorology gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.model.atmosphere import DEFAULT_GEOMETRY, Atmosphere, Geometry
from component.training.surfaces import Surface


@dataclass(frozen=True)
class Ranges:
    """Where random atmospheres are drawn (the table's limits bound them)."""

    aot_low: tuple[float, float] = (0.02, 0.4)
    """Log-uniform range of the patch-mean AOT in most samples (clear to hazy)..."""
    aot_high: tuple[float, float] = (0.25, 1.1)
    """...and the uniform range of the rest (hazy to very hazy)."""
    high_fraction: float = 0.35
    water: tuple[float, float] = (0.2, 5.5)
    ozone: tuple[float, float] = (0.25, 0.45)
    sun_zenith: tuple[float, float] = (10.0, 76.0)
    view_zenith: tuple[float, float] = (0.0, 12.0)
    cirrus_fraction: float = 0.25
    cirrus_max: float = 0.08
    unknown_geometry_fraction: float = 0.35
    noise: float = 0.0015
    sea_level_fraction: float = 0.4
    """Samples at sea level; the rest lie uniformly between 0 and :attr:`elevation_max_m`."""
    elevation_max_m: float = 4000.0
    water_prior_fraction: float = 0.6
    """Samples told a water-vapour forecast (ECMWF's, as every SAFE carries)..."""
    water_prior_error: float = 0.2
    """...off the patch mean by a log-normal factor of this sigma (about 20 %)."""
    aot_prior_fraction: float = 0.5
    """Samples told an aerosol forecast (CAMS, in newer products)..."""
    aot_prior_error: float = 0.45
    """...off the patch mean by a log-normal factor of this sigma (about 50 %), plus 0.03."""


@dataclass
class Sample:
    """One simulated patch."""

    toa: np.ndarray  # (13, P, P) L1C TOA reflectance
    surface: np.ndarray  # (12, P, P) L2A surface reflectance (the target), NaN = no target
    aot: np.ndarray  # (P, P)
    water: np.ndarray  # (P, P)
    geometry: Geometry  # the true one
    told: Geometry  # what the network is given (the default when "unknown")
    elevation_m: float = 0.0  # the target's altitude (the whole patch)
    water_prior_cm: float | None = None  # the forecast the network is told, if any
    aot_prior: float | None = None


def smooth_field(rng: np.random.Generator, size: int, scale_px: float) -> np.ndarray:
    """A zero-mean, unit-std Gaussian random field correlated over about *scale_px* pixels."""
    pad = int(2 * scale_px)
    noise = rng.standard_normal((size + 2 * pad, size + 2 * pad)).astype(np.float32)
    field = gaussian_filter(noise, scale_px)[pad : pad + size, pad : pad + size]
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def random_patch(
    surfaces: list[Surface], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """A random ``size``² window of a random surface (reflect-padded if smaller), augmented
    with one of the eight flips/rotations; returns it and its presented resolution."""
    surface = surfaces[int(rng.integers(len(surfaces)))]
    array = surface.reflectance
    _, h, w = array.shape
    if h < size or w < size:
        pad = ((0, 0), (0, max(0, size - h)), (0, max(0, size - w)))
        array = np.pad(array, pad, mode="reflect")
        _, h, w = array.shape
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    patch = np.rot90(array[:, y : y + size, x : x + size], int(rng.integers(4)), axes=(1, 2))
    if rng.integers(2):
        patch = patch[:, :, ::-1]
    return np.ascontiguousarray(patch), surface.resolution_m


def simulate(
    surface: np.ndarray,
    atmosphere: Atmosphere,
    rng: np.random.Generator,
    resolution_m: float = 60.0,
    adjacency_sigma_m: float = 300.0,
    ranges: Ranges = Ranges(),
) -> Sample:
    """TOA of *surface* (13, P, P) under a random atmosphere; *atmosphere* has all 13 bands."""
    size = surface.shape[-1]
    if rng.random() < ranges.high_fraction:
        mean_aot = rng.uniform(*ranges.aot_high)
    else:
        mean_aot = float(np.exp(rng.uniform(*np.log(ranges.aot_low))))
    scale = rng.uniform(size / 4, size)
    aot = np.clip(mean_aot * np.exp(0.25 * smooth_field(rng, size, scale)), 0.0, 1.2)
    water = np.clip(
        rng.uniform(*ranges.water) * np.exp(0.1 * smooth_field(rng, size, scale)), 0.0, 6.5
    )
    ozone = rng.uniform(*ranges.ozone)
    elevation = 0.0
    if rng.random() >= ranges.sea_level_fraction:
        elevation = float(rng.uniform(0.0, ranges.elevation_max_m))
    geometry = Geometry(
        float(rng.uniform(*ranges.sun_zenith)),
        float(rng.uniform(*ranges.view_zenith)),
        float(rng.uniform(0.0, 180.0)),
    )
    terms = atmosphere.terms(aot, water, geometry, ozone, elevation_m=elevation)
    rho = np.nan_to_num(np.clip(surface, 0.0, 1.5), nan=0.0)
    if adjacency_sigma_m > 0:
        gain = atmosphere.adjacency_gain(aot, geometry.view_zenith)
        sigma = adjacency_sigma_m / resolution_m
        env = np.stack([gaussian_filter(band, sigma, mode="reflect") for band in rho])
        rho = env + (rho - env) / gain
    cirrus = 0.0
    if rng.random() < ranges.cirrus_fraction:
        amplitude = rng.uniform(0.005, ranges.cirrus_max)
        cirrus = amplitude * np.clip(0.6 + 0.5 * smooth_field(rng, size, scale), 0.0, None)
    toa = atmosphere.forward(rho, terms, cirrus)
    toa = toa + rng.normal(0.0, ranges.noise, toa.shape).astype(np.float32)
    toa = np.round(np.clip(toa, 1e-4, 1.6), 4).astype(np.float32)
    toa[:, ~np.isfinite(surface).all(axis=0)] = np.nan
    told = geometry if rng.random() >= ranges.unknown_geometry_fraction else DEFAULT_GEOMETRY
    target = surface[[L1C_BANDS.index(b) for b in L2A_BANDS]]
    water_prior = aot_prior = None
    if rng.random() < ranges.water_prior_fraction:
        water_prior = float(np.mean(water) * np.exp(rng.normal(0.0, ranges.water_prior_error)))
    if rng.random() < ranges.aot_prior_fraction:
        error = np.exp(rng.normal(0.0, ranges.aot_prior_error))
        aot_prior = float(np.mean(aot) * error + rng.uniform(-0.03, 0.03))
        aot_prior = max(aot_prior, 0.0)
    return Sample(
        toa,
        target,
        aot.astype(np.float32),
        water.astype(np.float32),
        geometry,
        told,
        elevation,
        water_prior,
        aot_prior,
    )
