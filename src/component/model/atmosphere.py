"""The atmosphere, from the 6S look-up table: TOA <-> surface reflectance per pixel.

For a Lambertian surface of reflectance ``rho`` the TOA reflectance of a band is

    rho_toa = A + B * rho / (1 - S * rho)

where the path reflectance ``A``, the two-way transmittance ``B`` and the spherical albedo
``S`` depend on the aerosol optical thickness at 550 nm (AOT), the water-vapour column (W,
g/cm² = cm), the ozone column and the sun/view geometry, but not on the surface. The table
(``models/atmosphere_lut.npz``, built by :mod:`component.training.sixs_lut` with 6S) holds
these terms on a grid; this module interpolates them for any state and inverts the equation:

    y = (rho_toa - A) / B,   rho = y / (1 + S * y)

The atmosphere varies over kilometres and the surface per pixel, so the state is estimated on a
coarse grid and the terms are interpolated there (cheap), then resampled to each band's grid
where the inversion is three arithmetic operations per pixel. Training simulates TOA with
:meth:`Atmosphere.forward` on the same table, so training and inversion share one physics.

Thin cirrus (Sentinel-2 B10, 1375 nm, where the lower atmosphere is opaque from water vapour)
adds a nearly spectrally flat reflectance above the aerosol layer; it is removed first,
``rho_toa - cirrus``, as Sen2Cor does with B10.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from component.core.files import sha256_file
from component.errors import ModelError
from component.model.interpolation import LinearTable

DEFAULT_OZONE = 0.33
"""atm-cm; no ozone column is in the L1C metadata the component reads (climatological mean)."""


@dataclass(frozen=True)
class Geometry:
    """Sun and view angles in degrees; scalars or arrays of one shape (per coarse pixel).

    The one geometry type of a scene: the corrector reads the zeniths and their relative
    azimuth (6S's convention); the shadow casting reads the sun azimuth; the lineage says
    where the angles came from (:attr:`source`).
    """

    sun_zenith: np.ndarray | float
    view_zenith: np.ndarray | float
    relative_azimuth: np.ndarray | float
    known: bool = True
    """False when the input said nothing about its geometry and defaults stand in."""
    sun_azimuth: np.ndarray | float | None = None
    view_azimuth: np.ndarray | float | None = None
    source: str = ""
    """Where the angles come from: granule metadata, item properties, or nowhere (defaults)."""

    @classmethod
    def from_angles(
        cls,
        sun_zenith: np.ndarray | float,
        sun_azimuth: np.ndarray | float,
        view_zenith: np.ndarray | float,
        view_azimuth: np.ndarray | float,
        source: str,
    ) -> Geometry:
        """The geometry of sun and view angles (azimuths clockwise from north)."""
        if np.ndim(sun_azimuth) == 0 and np.ndim(view_azimuth) == 0:
            azimuth: np.ndarray | float = relative_azimuth(float(sun_azimuth), float(view_azimuth))
        else:
            difference = np.abs(np.asarray(sun_azimuth) - np.asarray(view_azimuth)) % 360.0
            azimuth = np.where(difference > 180.0, 360.0 - difference, difference)
        return cls(
            sun_zenith,
            view_zenith,
            azimuth,
            known=True,
            sun_azimuth=sun_azimuth,
            view_azimuth=view_azimuth,
            source=source,
        )


DEFAULT_GEOMETRY = Geometry(40.0, 5.0, 90.0, known=False)
"""For inputs without angles (bare GeoTIFF chips): a mid-latitude, near-nadir case. The network
was trained to estimate an *effective* AOT under this geometry when none is known (see the
model card), so the inversion stays consistent even though the angles are assumptions."""


@dataclass(frozen=True)
class Terms:
    """``A``, ``B``, ``S`` per band: arrays of shape (bands, *state shape)."""

    path: np.ndarray
    transmittance: np.ndarray
    spherical_albedo: np.ndarray

    def resampled(self, resample) -> Terms:  # type: ignore[no-untyped-def]
        """The same terms through *resample* (e.g. coarse grid -> a band's grid)."""
        return Terms(
            resample(self.path), resample(self.transmittance), resample(self.spherical_albedo)
        )


def airmass(sun_zenith: np.ndarray | float, view_zenith: np.ndarray | float) -> np.ndarray:
    return 1.0 / np.cos(np.radians(sun_zenith)) + 1.0 / np.cos(np.radians(view_zenith))


class Atmosphere:
    """The look-up table with interpolators, for a subset of its bands in a given order."""

    def __init__(self, tables: dict[str, np.ndarray], bands: tuple[str, ...] | None = None):
        lut_bands = [str(b) for b in tables["bands"]]
        self.bands = tuple(bands) if bands is not None else tuple(lut_bands)
        missing = [b for b in self.bands if b not in lut_bands]
        if missing:
            raise ModelError(f"the atmosphere table has no band {missing}; rebuild it")
        index = [lut_bands.index(b) for b in self.bands]
        self.aot_range = (float(tables["aot"][0]), float(tables["aot"][-1]))
        self.water_range = (float(tables["water"][0]), float(tables["water"][-1]))
        sun = tables["sun_zenith"].astype(np.float64)
        view = tables["view_zenith"].astype(np.float64)
        azimuth = tables["relative_azimuth"].astype(np.float64)
        aot = tables["aot"].astype(np.float64)
        gas_m = tables["gas_airmass"].astype(np.float64)
        self.max_zenith = float(sun[-1])

        def last(a: np.ndarray) -> np.ndarray:  # bands to the last axis for the interpolators
            return np.moveaxis(a[index].astype(np.float64), 0, -1)

        grid = LinearTable
        self._path = grid((aot, sun, view, azimuth), last(tables["path"]))
        self._t_scat = grid((aot, sun), last(tables["t_scat"]))
        self._spherical = grid((aot,), last(tables["spherical_albedo"]))
        other_m = 1.0 / np.cos(np.radians(sun)) + 1.0
        self._log_t_other = grid((other_m,), np.log(last(tables["t_other_gas"])))
        water = tables["water"].astype(np.float64)
        self._log_t_water = grid((water, gas_m), np.log(np.maximum(last(tables["t_water"]), 1e-9)))
        self._path_water = grid((water, gas_m), last(tables["path_water"]))
        ozone = tables["ozone"].astype(np.float64)
        # Ozone absorbs above the scattering layer: the path is dimmed by the full two-way ozone
        # transmittance, like the surface term. log T is linear in the column (Beer), so the
        # table extrapolates from its nodes to any column and to zero.
        log_t_ozone = np.log(last(tables["t_ozone"]))  # (ozone, airmass, band)
        self._ozone_k = grid((gas_m,), -(log_t_ozone[-1] - log_t_ozone[0]) / (ozone[-1] - ozone[0]))
        self._gas_m_range = (float(gas_m[0]), float(gas_m[-1]))
        self._other_m_range = (float(other_m[0]), float(other_m[-1]))
        self.aot_nodes, self.water_nodes = aot, water
        # t_up / t_dir on the (AOT, zenith) nodes: one table that run time and training
        # interpolate the same way (a ratio of interpolants would differ between nodes).
        tau = last(tables["tau_total"])  # (aot, band)
        t_scat = last(tables["t_scat"])  # (aot, zenith, band)
        direct = np.exp(-tau[:, None, :] / np.cos(np.radians(sun))[None, :, None])
        self._gain = grid((aot, sun), t_scat / direct)
        self.altitude_range_m: tuple[float, float] | None = None
        if "altitude_km" in tables:
            # Rayleigh tables per target altitude: a target above sea level changes the path,
            # the transmittances and the spherical albedo by what the air below it would have
            # added (6S's US-62 profile above each altitude).
            altitude = tables["altitude_km"].astype(np.float64) * 1000.0
            self.altitude_range_m = (float(altitude[0]), float(altitude[-1]))
            self._r_path = grid((altitude, sun, view, azimuth), last(tables["rayleigh_path"]))
            self._r_log_t = grid((altitude, sun), np.log(last(tables["rayleigh_t_scat"])))
            self._r_spherical = grid((altitude,), last(tables["rayleigh_spherical_albedo"]))
            self._r_log_t_other = grid(
                (altitude, other_m), np.log(last(tables["rayleigh_t_other_gas"]))
            )

    @classmethod
    def load(
        cls, path: Path, sha256: str | None = None, bands: tuple[str, ...] | None = None
    ) -> Atmosphere:
        """Read the table, refusing a missing or tampered file (exit code 8)."""
        if not path.is_file():
            raise ModelError(
                f"atmosphere table not found: {path}; restore models/ from the release"
            )
        if sha256 is not None and sha256_file(path) != sha256.lower():
            raise ModelError(
                f"atmosphere table {path.name} does not match the model card's sha256; restore "
                "the shipped file or update the card"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                tables = {key: data[key] for key in data.files}
        except Exception as error:
            raise ModelError(f"atmosphere table {path.name} is unreadable ({error})") from None
        return cls(tables, bands)

    def terms(
        self,
        aot: np.ndarray | float,
        water: np.ndarray | float,
        geometry: Geometry,
        ozone: np.ndarray | float = DEFAULT_OZONE,
        elevation_m: np.ndarray | float | None = None,
    ) -> Terms:
        """``A``, ``B``, ``S`` of every band for each state; inputs broadcast together.
        *elevation_m*: the target's altitude above sea level (None: sea level)."""
        dry = self.dry_terms(aot, geometry, ozone, elevation_m)
        return self.with_water(dry, water, geometry)

    def dry_terms(
        self,
        aot: np.ndarray | float,
        geometry: Geometry,
        ozone: np.ndarray | float = DEFAULT_OZONE,
        elevation_m: np.ndarray | float | None = None,
    ) -> Terms:
        """The terms without water-vapour absorption: scattering, other gases and ozone, for
        a target *elevation_m* above sea level (None: at sea level).

        They vary with the aerosol and the angles only, smoothly; :meth:`with_water` applies
        the water vapour, whose absorption is steep (exponential in the column) and so is
        computed per state even where these are interpolated (see ``thinned_terms``). Above
        sea level the Rayleigh tables' differences (path, spherical albedo) and ratios
        (scattering and mixed-gas transmittances) between that altitude and sea level are
        applied to the sea-level terms; a table without them is for sea level only.
        """
        if elevation_m is not None and self.altitude_range_m is None:
            raise ModelError("the atmosphere table has no altitude axis: rebuild it")
        aot, sz, vz, az, ozone, elevation = np.broadcast_arrays(
            np.asarray(aot, np.float64),
            np.asarray(geometry.sun_zenith, np.float64),
            np.asarray(geometry.view_zenith, np.float64),
            np.asarray(geometry.relative_azimuth, np.float64),
            np.asarray(ozone, np.float64),
            np.asarray(0.0 if elevation_m is None else elevation_m, np.float64),
        )
        shape = aot.shape
        aot = np.clip(aot.ravel(), *self.aot_range)
        sz = np.clip(sz.ravel(), 0.0, self.max_zenith)
        vz = np.clip(vz.ravel(), 0.0, 12.0)
        az = np.abs(((az.ravel() + 180.0) % 360.0) - 180.0)  # relative azimuth in [0, 180]
        m = airmass(sz, vz)
        gas_m = np.clip(m, *self._gas_m_range)
        path = self._path(np.stack([aot, sz, vz, az], -1))
        t_down = self._t_scat(np.stack([aot, sz], -1))
        t_up = self._t_scat(np.stack([aot, vz], -1))
        spherical = self._spherical(aot[:, None])
        t_other = np.exp(self._log_t_other(np.clip(m, *self._other_m_range)[:, None]))
        t_ozone = np.exp(
            -self._ozone_k(gas_m[:, None]) * ozone.ravel()[:, None] * (m / gas_m)[:, None]
        )
        transmittance = t_down * t_up * t_other
        if self.altitude_range_m is not None and elevation.any():
            p = np.clip(elevation.ravel(), *self.altitude_range_m)
            sea = np.zeros_like(p)
            other_m = np.clip(m, *self._other_m_range)

            def change(table: LinearTable, *axes: np.ndarray) -> np.ndarray:
                return table(np.stack([p, *axes], -1)) - table(np.stack([sea, *axes], -1))

            path = path + change(self._r_path, sz, vz, az)
            spherical = spherical + change(self._r_spherical)
            transmittance = transmittance * np.exp(
                change(self._r_log_t, sz)
                + change(self._r_log_t, vz)
                + change(self._r_log_t_other, other_m)
            )
        return Terms(
            self._back(path * t_ozone, shape),
            self._back(transmittance * t_ozone, shape),
            self._back(spherical, shape),
        )

    def with_water(self, dry: Terms, water: np.ndarray | float, geometry: Geometry) -> Terms:
        """*dry* terms (from :meth:`dry_terms`) with the water-vapour column *water* applied."""
        water, sz, vz = np.broadcast_arrays(
            np.asarray(water, np.float64),
            np.asarray(geometry.sun_zenith, np.float64),
            np.asarray(geometry.view_zenith, np.float64),
        )
        shape = np.broadcast_shapes(water.shape, dry.path.shape[1:])
        water, sz, vz = (np.broadcast_to(a, shape).ravel() for a in (water, sz, vz))
        water = np.clip(water, *self.water_range)
        m = airmass(np.clip(sz, 0.0, self.max_zenith), np.clip(vz, 0.0, 12.0))
        wm = np.stack([water, np.clip(m, *self._gas_m_range)], -1)
        path_water = self._back(self._path_water(wm), shape)
        t_water = self._back(np.exp(self._log_t_water(wm)), shape)
        return Terms(
            dry.path * path_water,
            dry.transmittance * t_water,
            np.broadcast_to(dry.spherical_albedo, (len(self.bands), *shape)).astype(np.float32),
        )

    def _back(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """(states, bands) -> (bands, *shape) float32."""
        return np.moveaxis(a, -1, 0).reshape((len(self.bands), *shape)).astype(np.float32)

    def adjacency_gain(
        self, aot: np.ndarray | float, view_zenith: np.ndarray | float
    ) -> np.ndarray:
        """``t_up / t_dir`` per band: how much a pixel's contrast to its surroundings is damped.

        Light scattered into the view direction from a pixel's surroundings (the adjacency
        effect) makes the sensor see ``env + (rho - env) * t_dir / t_up``, where ``t_dir`` is
        the direct (unscattered) upward transmittance and ``t_up`` the total one. The
        correction multiplies the contrast back by this gain (>= 1).
        """
        aot, vz = np.broadcast_arrays(
            np.asarray(aot, np.float64), np.asarray(view_zenith, np.float64)
        )
        shape = aot.shape
        a = np.clip(aot.ravel(), *self.aot_range)
        v = np.clip(vz.ravel(), 0.0, 12.0)
        gain = np.moveaxis(self._gain(np.stack([a, v], -1)), -1, 0)
        return gain.reshape((len(self.bands), *shape)).astype(np.float32)

    def curves(
        self, geometry: Geometry, ozone: float = DEFAULT_OZONE, elevation_m: float = 0.0
    ) -> dict[str, np.ndarray]:
        """For one scalar geometry and target *elevation_m*: every term at the table's AOT and
        water nodes.

        Between nodes the table is linear in AOT and in water vapour, so these curves,
        interpolated linearly, give exactly :meth:`terms` (training uses them to invert in
        torch, differentiably). Keys: ``aot``, ``water`` (nodes), ``path``, ``t_down``,
        ``t_up``, ``spherical_albedo``, ``adjacency_gain`` (band, aot node), ``log_t_water``
        (interpolated in log, as :meth:`terms` does: absorption is exponential in the column),
        ``path_water`` (band, water node), ``t_fixed`` (band: other gases and ozone).
        """
        sz, vz, az = (
            float(v) for v in (geometry.sun_zenith, geometry.view_zenith, geometry.relative_azimuth)
        )
        sz, vz = min(max(sz, 0.0), self.max_zenith), min(max(vz, 0.0), 12.0)
        az = abs(((az + 180.0) % 360.0) - 180.0)
        a = self.aot_nodes
        ones = np.ones_like(a)
        m = float(airmass(sz, vz))
        gas_m = min(max(m, self._gas_m_range[0]), self._gas_m_range[1])
        path = self._path(np.stack([a, sz * ones, vz * ones, az * ones], -1)).T
        t_down = self._t_scat(np.stack([a, sz * ones], -1)).T
        t_up = self._t_scat(np.stack([a, vz * ones], -1)).T
        spherical = self._spherical(a[:, None]).T
        gain = self._gain(np.stack([a, vz * ones], -1)).T
        w = self.water_nodes
        wm = np.stack([w, gas_m * np.ones_like(w)], -1)
        t_other = np.exp(
            self._log_t_other([[min(max(m, self._other_m_range[0]), self._other_m_range[1])]])
        )[0]
        t_ozone = np.exp(-self._ozone_k([[gas_m]])[0] * ozone * m / gas_m)
        if elevation_m:  # as dry_terms: the altitude's changes to the sea-level terms
            if self.altitude_range_m is None:
                raise ModelError("the atmosphere table has no altitude axis: rebuild it")
            p = min(max(float(elevation_m), self.altitude_range_m[0]), self.altitude_range_m[1])
            other_m = min(max(m, self._other_m_range[0]), self._other_m_range[1])

            def change(table: LinearTable, *axes: float) -> np.ndarray:
                return table([[p, *axes]])[0] - table([[0.0, *axes]])[0]

            path = path + change(self._r_path, sz, vz, az)[:, None]
            spherical = spherical + change(self._r_spherical)[:, None]
            t_other = t_other * np.exp(
                change(self._r_log_t, sz)
                + change(self._r_log_t, vz)
                + change(self._r_log_t_other, other_m)
            )
        return {
            "aot": a.astype(np.float32),
            "water": w.astype(np.float32),
            "path": (path * t_ozone[:, None]).astype(np.float32),
            "t_down": t_down.astype(np.float32),
            "t_up": t_up.astype(np.float32),
            "spherical_albedo": spherical.astype(np.float32),
            "adjacency_gain": gain.astype(np.float32),
            "log_t_water": self._log_t_water(wm).T.astype(np.float32),
            "path_water": self._path_water(wm).T.astype(np.float32),
            "t_fixed": (t_other * t_ozone).astype(np.float32),
        }

    @staticmethod
    def forward(
        rho: np.ndarray,
        terms: Terms,
        cirrus: np.ndarray | float = 0.0,
        dimming: float | None = None,
    ) -> np.ndarray:
        """TOA reflectance of surface *rho* (bands, ...) under *terms* (broadcastable), below
        a thin cirrus layer of reflectance *cirrus* (:func:`cirrus_transmittance`, *dimming*
        its ``k``)."""
        rho = np.clip(rho, 0.0, None)
        toa = terms.path + terms.transmittance * rho / (1.0 - terms.spherical_albedo * rho)
        return (cirrus + cirrus_transmittance(cirrus, dimming) * toa).astype(np.float32)

    @staticmethod
    def inverse(
        toa: np.ndarray,
        terms: Terms,
        cirrus: np.ndarray | float = 0.0,
        dimming: float | None = None,
    ) -> np.ndarray:
        """Surface reflectance from TOA *toa* (bands, ...); NaN stays NaN."""
        below = (toa - cirrus) / cirrus_transmittance(cirrus, dimming)
        y = (below - terms.path) / terms.transmittance
        return (y / (1.0 + terms.spherical_albedo * y)).astype(np.float32)


CIRRUS_DIMMING = 0.0
"""``k`` of :func:`cirrus_transmittance`, chosen on the selection scene with thick cirrus
(TerraMind 282D, B10 excess 0.097; ``scripts/score_pairs.py --set selection
--cirrus-correction --cirrus-dimming K``): against its Sen2Cor L2A, k = 0 gives the model
SAM 0.086 / PSNR 36.3 dB, k = 0.1 0.088 / 36.6, k = 0.3 0.096 / 35.5, k = 1 0.130 / 27.3.
Ice crystals scatter mostly forward (asymmetry about 0.8): the light a thin layer sends back
to space is lost to the surface only in small part, so its two-way dimming is far below its
reflectance, and the reference is matched best without it."""


def cirrus_transmittance(cirrus: np.ndarray | float, k: float | None = None) -> np.ndarray | float:
    """Two-way transmittance of a thin cirrus layer of reflectance *cirrus*: ``(1 - k c)^2``.

    The layer adds its reflectance ``c`` to every band (ice scatters nearly independently of
    wavelength from 0.4 to 2.2 um) and dims what lies below it: ``toa = c + T toa_below``. An
    isotropic layer would dim by its whole reflectance each way (``k = 1``); ice's forward
    scattering makes the loss far smaller (:data:`CIRRUS_DIMMING`).
    """
    k = CIRRUS_DIMMING if k is None else k
    if np.ndim(cirrus):
        return (1.0 - np.float32(k) * np.asarray(cirrus, np.float32)) ** 2
    return (1.0 - k * float(cirrus)) ** 2


def load_metadata(path: Path) -> dict[str, object]:
    """The JSON description stored inside the table (code, aerosol model, axes)."""
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))


def sun_zenith_from_elevation(elevation: float) -> float:
    return 90.0 - float(elevation)


def relative_azimuth(sun_azimuth: float, view_azimuth: float) -> float:
    """|sun - view| folded to [0, 180] (6S's convention: 0 = sensor on the sun's side)."""
    difference = abs(float(sun_azimuth) - float(view_azimuth)) % 360.0
    return 360.0 - difference if difference > 180.0 else difference


def clamp_zenith(value: float) -> float:
    return min(max(float(value), 0.0), 89.0) if math.isfinite(value) else float("nan")
