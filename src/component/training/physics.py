"""Physics-based simulation of top-of-atmosphere reflectance from real surface reflectance.

Real paired L1C/L2A data is scarce, but the forward problem (surface -> TOA) is well understood.
Simulating many atmospheres over real surfaces teaches the network the inversion before it is
fine-tuned on real pairs. The model is the standard Lambertian-surface coupling used by 6S and
Sen2Cor's look-up tables, with compact analytic approximations instead of radiative-transfer runs:

    TOA = Rpath + T_down * T_up * rho / (1 - S * rho)

* Rayleigh optical depth: Hansen & Travis (1974) fit, scaled by surface pressure.
* Aerosol optical depth: Angstrom law ``tau_a = tau550 * (lambda / 0.55) ** -alpha``.
* Path reflectance: single scattering of a homogeneous layer with Rayleigh and Henyey-Greenstein
  aerosol phase functions (saturating in optical depth), enhanced by ``1 + tau_scattering`` for
  the higher scattering orders.
* Two-way transmittances: direct plus forward-scattered diffuse light (Tanre et al. 1979 form),
  times ozone and water-vapour absorption (small for the visible bands).
* Spherical albedo: a Rayleigh + aerosol fit, enough for the multiple-reflection term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Sentinel-2 central wavelengths (micrometre), mean of S2A/S2B.
WAVELENGTH_UM: dict[str, float] = {
    "B01": 0.443, "B02": 0.492, "B03": 0.559, "B04": 0.665, "B05": 0.704, "B06": 0.740,
    "B07": 0.782, "B08": 0.833, "B8A": 0.865, "B09": 0.945, "B10": 1.375, "B11": 1.612,
    "B12": 2.194,
}  # fmt: skip
# Ozone absorption cross-section per atm-cm (Chappuis band peaks near 600 nm).
OZONE_K: dict[str, float] = {
    "B01": 0.003, "B02": 0.021, "B03": 0.104, "B04": 0.051, "B05": 0.021, "B06": 0.011,
    "B07": 0.006, "B08": 0.003, "B8A": 0.002, "B09": 0.0, "B10": 0.0, "B11": 0.0, "B12": 0.0,
}  # fmt: skip
# Water-vapour absorption per g/cm² (band-averaged; B09 is the water-vapour band).
WATER_K: dict[str, float] = {
    "B01": 0.0, "B02": 0.0005, "B03": 0.001, "B04": 0.002, "B05": 0.004, "B06": 0.003,
    "B07": 0.004, "B08": 0.008, "B8A": 0.006, "B09": 0.25, "B10": 0.5, "B11": 0.002,
    "B12": 0.01,
}  # fmt: skip


@dataclass(frozen=True)
class Atmosphere:
    """One atmospheric state and acquisition geometry (angles in degrees)."""

    aot550: float = 0.1
    angstrom: float = 1.3
    water_vapour: float = 2.0  # g/cm²
    ozone: float = 0.3  # atm-cm
    pressure: float = 1013.25  # hPa
    ssa: float = 0.93  # aerosol single-scattering albedo
    asymmetry: float = 0.65  # Henyey-Greenstein g
    sun_zenith: float = 35.0
    view_zenith: float = 5.0
    relative_azimuth: float = 90.0


def rayleigh_optical_depth(wavelength_um: float, pressure: float = 1013.25) -> float:
    """Hansen & Travis (1974) Rayleigh optical depth, scaled by surface pressure."""
    lam = wavelength_um
    tau = 0.008569 * lam**-4 * (1 + 0.0113 * lam**-2 + 0.00013 * lam**-4)
    return tau * pressure / 1013.25


def aerosol_optical_depth(wavelength_um: float, aot550: float, angstrom: float) -> float:
    """Angstrom power law around 550 nm."""
    return aot550 * (wavelength_um / 0.55) ** -angstrom


def _scattering_cosine(atm: Atmosphere) -> float:
    ts, tv = np.radians(atm.sun_zenith), np.radians(atm.view_zenith)
    phi = np.radians(atm.relative_azimuth)
    return float(-np.cos(ts) * np.cos(tv) - np.sin(ts) * np.sin(tv) * np.cos(phi))


def band_terms(band: str, atm: Atmosphere) -> tuple[float, float, float]:
    """``(Rpath, T_down*T_up, S)`` for one band."""
    lam = WAVELENGTH_UM[band]
    mu_s, mu_v = np.cos(np.radians(atm.sun_zenith)), np.cos(np.radians(atm.view_zenith))
    tau_r = rayleigh_optical_depth(lam, atm.pressure)
    tau_a = aerosol_optical_depth(lam, atm.aot550, atm.angstrom)
    cos_t = _scattering_cosine(atm)
    g = atm.asymmetry
    p_ray = 0.75 * (1 + cos_t**2)
    p_aer = (1 - g**2) / (1 + g**2 - 2 * g * cos_t) ** 1.5
    scat = tau_r + atm.ssa * tau_a
    tau = tau_r + tau_a
    phase = (tau_r * p_ray + atm.ssa * tau_a * p_aer) / scat
    airmass = 1 / mu_s + 1 / mu_v
    single = (scat / tau) * phase / (4 * (mu_s + mu_v)) * (1 - np.exp(-tau * airmass))
    # Higher scattering orders grow roughly with the scattering optical depth.
    r_path = single * (1 + scat)
    extinction = 0.52 * tau_r + (1 - 0.5 * (1 + g) * atm.ssa) * tau_a
    gas = np.exp(-(OZONE_K[band] * atm.ozone + WATER_K[band] * atm.water_vapour) * airmass)
    t_two_way = float(np.exp(-extinction / mu_s) * np.exp(-extinction / mu_v) * gas)
    spherical = 0.92 * tau_r * np.exp(-tau_r) + 0.33 * atm.ssa * tau_a * (1 - g) + 0.02 * tau_a
    return float(r_path * gas), t_two_way, float(spherical)


def simulate_toa(
    boa: np.ndarray, bands: list[str] | tuple[str, ...], atm: Atmosphere
) -> np.ndarray:
    """TOA reflectance of surfaces ``boa`` (bands, H, W) under ``atm``; NaN stays NaN."""
    out = np.empty_like(boa, dtype=np.float32)
    for i, band in enumerate(bands):
        r_path, trans, s = band_terms(band, atm)
        rho = np.clip(boa[i], 0.0, None)
        out[i] = r_path + trans * rho / (1 - s * rho)
    return out


def random_atmosphere(rng: np.random.Generator) -> Atmosphere:
    """A plausible random atmosphere: clear to very hazy, continental to maritime, any sun."""
    return Atmosphere(
        aot550=float(np.exp(rng.uniform(np.log(0.02), np.log(1.5)))),
        angstrom=float(rng.uniform(0.3, 2.2)),
        water_vapour=float(rng.uniform(0.3, 5.0)),
        ozone=float(rng.uniform(0.24, 0.42)),
        pressure=float(rng.uniform(700.0, 1030.0)),
        ssa=float(rng.uniform(0.82, 0.98)),
        asymmetry=float(rng.uniform(0.55, 0.75)),
        sun_zenith=float(rng.uniform(15.0, 72.0)),
        view_zenith=float(rng.uniform(0.0, 11.0)),
        relative_azimuth=float(rng.uniform(0.0, 180.0)),
    )


def simulate_pair(
    surface: np.ndarray,
    bands: list[str] | tuple[str, ...],
    rng: np.random.Generator,
    noise: float = 0.002,
) -> tuple[np.ndarray, np.ndarray]:
    """(TOA, BOA) training pair under a random atmosphere plus sensor noise."""
    toa = simulate_toa(surface, bands, random_atmosphere(rng))
    toa = toa + rng.normal(0.0, noise, toa.shape).astype(np.float32)
    return toa.astype(np.float32), surface.astype(np.float32)
