"""L1C -> L2A for a whole product: the atmosphere on a coarse grid, then every band at its own.

The atmosphere (aerosol, water vapour, thin cirrus) varies over kilometres while the surface
varies per pixel. So correction has two steps, and this module is the seam between them and
the I/O around them:

1. :meth:`SceneCorrector.estimate` takes the TOA reflectance of all 13 L1C bands on one coarse
   grid (the card's ``atmosphere.grid_m``, e.g. 60 m: JPEG 2000 decodes it from reduced
   resolution levels, cheaply) and returns an :class:`AtmosphereState`: AOT at 550 nm, water
   vapour and cirrus reflectance fields on that grid, the geometry there, and the 6S terms of
   every output band derived from them. How the fields are estimated is the
   :class:`Estimator`'s business (a network, or a fixed standard atmosphere).
2. :meth:`SceneCorrector.correct` inverts one band's TOA on any grid (the band's product grid, or
   a strip of it): the coarse terms are interpolated bilinearly to the band's pixel centres and
   the inversion is a few arithmetic operations per pixel, which is what keeps 10 m cheap.

Grids are north-up and share one CRS (the tile's); a grid is described by its affine transform,
so a strip of rows is a grid too.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np
from affine import Affine

from component.core.bands import L1C_BANDS
from component.core.blocks import block_mean
from component.core.grid import Grid
from component.errors import InvalidItemError
from component.model.atmosphere import (
    DEFAULT_GEOMETRY,
    DEFAULT_OZONE,
    Atmosphere,
    Geometry,
    Terms,
    cirrus_transmittance,
)
from component.model.estimator import Context


@dataclass
class AtmosphereState:
    """What was estimated for one scene, on the coarse grid ``grid``."""

    grid: Grid
    aot: np.ndarray
    """AOT at 550 nm, (h, w)."""
    water: np.ndarray
    """Water-vapour column, cm (= g/cm²), (h, w)."""
    cirrus: np.ndarray
    """Reflectance added by thin cirrus (spectrally flat), (h, w); 0 where none."""
    geometry: Geometry
    terms: Terms
    """6S terms of the corrector's output bands, (bands, h, w)."""
    environment: np.ndarray | None = None
    """Surface reflectance of each output band smoothed over the adjacency scale, (bands, h, w);
    None when the adjacency correction is off."""
    adjacency_gain: np.ndarray | None = None
    """``t_up / t_dir`` of each output band, (bands, h, w)."""
    notes: list[str] = field(default_factory=list)
    """Fallbacks taken (no geometry, a missing band...), for the run summary."""
    elevation: np.ndarray | None = None
    """Metres above sea level the terms were computed for, (h, w); None: sea level."""


class Estimator(Protocol):
    """Estimates aerosol and water vapour on the coarse grid from TOA (bands, h, w)."""

    name: str

    def __call__(
        self, toa: np.ndarray, bands: tuple[str, ...], context: Context
    ) -> tuple[np.ndarray, np.ndarray]: ...


class StandardAtmosphere:
    """A fixed atmosphere: the physics-only baseline (no estimation from the scene).

    AOT 0.1 (continental), water vapour 1.5 cm and ozone 0.33 atm-cm are mid-latitude
    climatological values; with the scene's geometry this is what a correction without any
    retrieval gives.
    """

    name = "standard-atmosphere"

    def __init__(self, aot: float = 0.1, water: float = 1.5) -> None:
        self.aot, self.water = aot, water

    def __call__(
        self, toa: np.ndarray, bands: tuple[str, ...], context: Context
    ) -> tuple[np.ndarray, np.ndarray]:
        shape = toa.shape[1:]
        return np.full(shape, self.aot, np.float32), np.full(shape, self.water, np.float32)


CIRRUS_NOISE = 0.005
"""B10 excess over its clear-sky value below which no cirrus is assumed (sensor noise and the
error of the clear-sky estimate)."""


def cirrus_reflectance(
    b10: np.ndarray | None,
    b8a: np.ndarray | None = None,
    b11: np.ndarray | None = None,
    clear_terms: Terms | None = None,
) -> np.ndarray | float:
    """Thin-cirrus reflectance (the layer's, taken out of every band with its dimming: see
    :func:`~component.model.atmosphere.cirrus_transmittance`).

    Cirrus ice crystals scatter nearly independently of wavelength between 0.4 and 2.2 µm, and
    at 1375 nm the water vapour below them hides the surface, so B10 sees the cirrus alone...
    unless the air is dry (high mountains, deserts, polar winter), when the surface shows
    through. So the cirrus is B10's excess over what a clear sky gives with this atmosphere:
    the path term plus the surface at 1375 nm (0.3 B8A + 0.7 B11) through the water vapour
    (*clear_terms*: B10's 6S terms; without them B10 is taken whole, as Sen2Cor does).
    """
    if b10 is None:
        return 0.0
    b10 = np.nan_to_num(b10, nan=0.0)
    clear = np.float32(0.0)
    if clear_terms is not None and b8a is not None and b11 is not None:
        surface = np.nan_to_num(0.3 * b8a + 0.7 * b11, nan=0.0)
        clear = clear_terms.path + clear_terms.transmittance * surface
    excess = b10 - clear
    return np.where(excess > CIRRUS_NOISE, excess, 0.0).astype(np.float32)


GUARD_BANDS = ("B02", "B04")
GUARD_FLOOR = -0.01
"""Surface reflectance below which a clear cell's inversion is implausible (sensor noise and
the table's error allow a little below zero)."""
GUARD_FRACTION = 0.02
"""Share of clear cells allowed below :data:`GUARD_FLOOR` before the estimate is shrunk."""
GUARD_SAMPLE = 4096


def capped_cirrus(cirrus: np.ndarray, toa: np.ndarray, terms: Terms) -> np.ndarray:
    """*cirrus* (h, w) no larger than any band (bands, h, w) shows above its own path term: a
    layer cannot add more than the darkest band sees, and what B10 wrongly takes for cirrus
    (haze in dry air raises B10 too) then cannot push a band's surface below zero."""
    room = np.fmin.reduce(toa - terms.path, axis=0)
    room = np.where(np.isfinite(room), np.maximum(room, np.float32(0.0)), np.float32(0.0))
    return np.minimum(cirrus, room).astype(np.float32)


class SceneCorrector:
    """The atmosphere table plus an estimator: TOA of a product -> BOA of every band."""

    def __init__(
        self,
        atmosphere: Atmosphere,
        estimator: Estimator,
        input_bands: tuple[str, ...] = L1C_BANDS,
        adjacency_sigma_m: float = 0.0,
        smoothing_m: float = 0.0,
        cirrus_atmosphere: Atmosphere | None = None,
        grid_m: float = 120.0,
        cirrus_correction: bool = False,
        guard: bool = True,
        forecast_water: bool = True,
    ) -> None:
        """*atmosphere* holds the output bands' table, *cirrus_atmosphere* B10's (for the
        clear-sky B10 signal; without it B10 is taken as cirrus whole). *cirrus_correction*:
        take thin cirrus (from B10) out of every band; off by default, as in Sen2Cor's
        configuration (``Cirrus_Correction`` FALSE): cirrus is then flagged (SCL class 10) and
        kept out of the aerosol estimate, not subtracted."""
        self.cirrus_correction = cirrus_correction
        self.guard = guard
        """Shrink an aerosol estimate that would leave clear pixels below zero (see
        :meth:`_guarded`)."""
        self.forecast_water = forecast_water
        """Where the product has its ECMWF water-vapour forecast, the water vapour takes its
        level from it and only its detail below the forecast's scale from the estimate (see
        :func:`anchored_water`; models/README.md, "Meteorology": on simulation the estimate
        of humid scenes is too dry)."""
        self.atmosphere = atmosphere
        self.cirrus_atmosphere = cirrus_atmosphere
        self.estimator = estimator
        self.input_bands = input_bands
        self.output_bands = atmosphere.bands
        self.adjacency_sigma_m = adjacency_sigma_m
        self.smoothing_m = smoothing_m
        self.grid_m = grid_m
        """The coarse grid's pixel size the estimator was trained for (the card's)."""

    def estimate(
        self,
        toa: np.ndarray,
        grid: Grid,
        geometry: Geometry | None = None,
        exclude: np.ndarray | None = None,
        elevation: np.ndarray | None = None,
        ozone: np.ndarray | None = None,
        water_prior: np.ndarray | None = None,
        aot_prior: np.ndarray | None = None,
    ) -> AtmosphereState:
        """The atmosphere over the coarse grid from TOA of :attr:`input_bands` (NaN = invalid).

        *geometry* holds scalars (scene means) or arrays on *grid*; ``None`` means unknown,
        and the defaults the estimator was trained for stand in (noted in the state).
        *exclude* (h, w) marks pixels that must not inform the atmosphere (clouds, their
        shadows): the estimate there is filled from the surroundings. A band that is entirely
        NaN counts as missing and is substituted (see :func:`substitute_missing`).
        *elevation* (h, w): the terrain's metres above sea level (None: sea level
        everywhere): the air above the target (Rayleigh scattering, gases) follows it.
        *ozone* (h, w): the ozone column, atm-cm (None: the climatological 0.33).
        *water_prior* (cm) and *aot_prior* (h, w): the product's own forecasts of the water
        vapour (ECMWF) and the aerosol (CAMS), NaN or None where unknown: the estimator sees
        them (with the elevation and the geometry) where its card lists them as channels, and
        with :attr:`forecast_water` the water-vapour forecast sets the estimate's level where
        it is known (:func:`anchored_water`; the lineage says so).
        """
        toa, notes = substitute_missing(toa, self.input_bands, self.cirrus_correction)
        if exclude is not None and exclude.any() and not exclude.all():
            toa = np.where(exclude, np.float32(np.nan), toa)
        if geometry is None:
            geometry = DEFAULT_GEOMETRY
            notes.append(
                "no sun/view geometry: default angles assumed (sun zenith 40, view zenith 5)"
            )
        context = Context(geometry, elevation, water_prior, aot_prior)
        aot, water = self.estimator(toa, self.input_bands, context)
        # Smoothing (if the card asks for it) also fills pixels the estimator left NaN (no
        # data, excluded clouds) from their surroundings; a scene without any estimate at all
        # gets the standard atmosphere.
        sigma = max(self.smoothing_m, 2.0 * grid.resolution) / grid.resolution
        aot = _filled(aot, sigma, self.smoothing_m > 0, FALLBACK.aot)
        water = _filled(water, sigma, self.smoothing_m > 0, FALLBACK.water)
        if self.forecast_water and water_prior is not None:
            water = anchored_water(water, water_prior, grid.resolution, self.atmosphere)
        if not np.isfinite(toa).any():
            notes.append("no valid pixel: the standard atmosphere stands in")
        shape = toa.shape[1:]
        on_grid = _on_grid(geometry, shape)
        if self.guard:
            aot, guarded = self._guarded(toa, aot, water, on_grid, elevation, ozone, aot_prior)
            notes += guarded
        step = terms_step(self.smoothing_m, grid.resolution)
        if not self.cirrus_correction:
            terms = thinned_terms(self.atmosphere, aot, water, on_grid, step, elevation, ozone)
            cirrus = np.zeros(shape, np.float32)
        else:
            # B10's clear-sky terms (for the cirrus) and the output bands' terms are
            # independent: computed at once, in two threads (numpy releases the GIL).
            with ThreadPoolExecutor(1, "cirrus") as background:
                cirrus_job = background.submit(
                    self._cirrus, toa, aot, water, on_grid, step, elevation, ozone
                )
                terms = thinned_terms(self.atmosphere, aot, water, on_grid, step, elevation, ozone)
                cirrus = cirrus_job.result()
            index = [self.input_bands.index(b) for b in self.output_bands]
            cirrus = capped_cirrus(cirrus, toa[index], terms)
        state = AtmosphereState(grid, aot, water, cirrus, geometry, terms, notes=notes)
        state.elevation = elevation
        if self.adjacency_sigma_m > 0:
            index = [self.input_bands.index(b) for b in self.output_bands]
            surface = self.atmosphere.inverse(toa[index], terms, cirrus)
            sigma = self.adjacency_sigma_m / grid.resolution
            state.environment = np.stack([smooth(band, sigma) for band in surface])
            state.adjacency_gain = self.atmosphere.adjacency_gain(aot, on_grid.view_zenith)
        return state

    def _guarded(
        self,
        toa: np.ndarray,
        aot: np.ndarray,
        water: np.ndarray,
        geometry: Geometry,
        elevation: np.ndarray | None,
        ozone: np.ndarray | None,
        aot_prior: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """*aot*, unless more than :data:`GUARD_FRACTION` of the clear cells (excluded cells
        are NaN in *toa*) invert below :data:`GUARD_FLOOR` in blue or red: a surface darker
        than nothing says the estimate took more aerosol than the scene's own dark pixels
        allow. Then its excess over the prior (*aot_prior*, the CAMS forecast, where known,
        else the standard atmosphere's AOT) is scaled down until no more than that share of
        the cells is below zero. The check runs on at most
        :data:`GUARD_SAMPLE` cells; a note says what was done."""
        bands = [b for b in GUARD_BANDS if b in self.output_bands and b in self.input_bands]
        rows = [self.input_bands.index(b) for b in bands]
        cells = np.flatnonzero(np.isfinite(toa[rows]).all(axis=0).ravel())
        if len(cells) < 10 or not bands:
            return aot, []
        cells = cells[:: max(1, len(cells) // GUARD_SAMPLE)]
        out = [self.output_bands.index(b) for b in bands]
        seen = toa[rows].reshape(len(rows), -1)[:, cells]

        def at(field: np.ndarray | float | None) -> np.ndarray | None:
            if field is None:
                return None
            return np.broadcast_to(np.asarray(field), aot.shape).ravel()[cells]

        angles = Geometry(
            at(geometry.sun_zenith), at(geometry.view_zenith), at(geometry.relative_azimuth)
        )
        column = DEFAULT_OZONE if ozone is None else at(ozone)

        def fraction(candidate: np.ndarray, floor: float = GUARD_FLOOR) -> float:
            terms = self.atmosphere.terms(
                at(candidate), at(water), angles, column, elevation_m=at(elevation)
            )
            single = Terms(terms.path[out], terms.transmittance[out], terms.spherical_albedo[out])
            surface = Atmosphere.inverse(seen, single)
            return float(np.mean((surface < floor).any(axis=0)))

        before = fraction(aot)
        if before <= GUARD_FRACTION:
            return aot, []
        # Shrunk until (nearly) every clear cell is at or above zero, not merely the floor.
        floor = np.float32(FALLBACK.aot)
        if aot_prior is not None:
            floor = np.where(np.isfinite(aot_prior), aot_prior, floor).astype(np.float32)
        prior = np.minimum(aot, floor)
        excess = aot - prior
        low, high = 0.0, 1.0
        for _ in range(7):
            middle = (low + high) / 2.0
            if fraction(prior + np.float32(middle) * excess, 0.0) <= GUARD_FRACTION:
                low = middle
            else:
                high = middle
        shrunk = (prior + np.float32(low) * excess).astype(np.float32)
        return shrunk, [
            f"the aerosol estimate left {before:.0%} of clear cells darker than zero in "
            f"{'/'.join(bands)}: its excess over "
            f"{'the CAMS forecast' if aot_prior is not None else f'AOT {FALLBACK.aot:g}'}"
            f" scaled by {low:.2f}"
        ]

    def _cirrus(
        self,
        toa: np.ndarray,
        aot: np.ndarray,
        water: np.ndarray,
        geometry: Geometry,
        step: int = 1,
        elevation: np.ndarray | None = None,
        ozone: np.ndarray | None = None,
    ) -> np.ndarray:
        def band(name: str) -> np.ndarray | None:
            return toa[self.input_bands.index(name)] if name in self.input_bands else None

        clear = None
        if self.cirrus_atmosphere is not None:
            terms = thinned_terms(
                self.cirrus_atmosphere, aot, water, geometry, step, elevation, ozone
            )
            clear = Terms(terms.path[0], terms.transmittance[0], terms.spherical_albedo[0])
        cirrus = cirrus_reflectance(band("B10"), band("B8A"), band("B11"), clear)
        return np.broadcast_to(cirrus, toa.shape[1:]).astype(np.float32)

    def inversion(self, band: str, grid: Grid, state: AtmosphereState) -> BandInversion:
        """*band*'s inversion on *grid*, applied run by run (see :class:`BandInversion`)."""
        return BandInversion(self.output_bands.index(band), grid, state)

    def correct(self, band: str, toa: np.ndarray, grid: Grid, state: AtmosphereState) -> np.ndarray:
        """BOA reflectance of *band* on *grid* from its TOA (h, w); NaN stays NaN."""
        inversion = self.inversion(band, grid, state)
        toa = np.asarray(toa, np.float32)
        surface = np.empty(toa.shape, np.float32)
        for run in inversion.runs:
            inversion(run, toa[run.rows], surface[run.rows])
        return surface

    def correct_array(
        self,
        toa: np.ndarray,
        resolution_m: float,
        geometry: Geometry | None = None,
        exclude: np.ndarray | None = None,
        elevation_m: float | None = None,
    ) -> tuple[np.ndarray, AtmosphereState]:
        """All output bands of a (13, H, W) TOA array whose bands share one grid, at the
        elevation *elevation_m* above sea level (None: at sea level).

        For chips and in-memory arrays (``evaluate``, the Python API): the coarse grid is made
        by averaging blocks of the input (NaN-aware; partial blocks at the edges count), the
        atmosphere is estimated there and every band is inverted on the input grid.
        """
        factor = max(1, round(max(self.grid_m, resolution_m) / resolution_m))
        coarse = block_mean(toa, factor)
        height, width = toa.shape[1:]
        fine = Grid(None, Affine(resolution_m, 0, 0, 0, -resolution_m, 0), width, height)
        step = resolution_m * factor
        grid = Grid(None, Affine(step, 0, 0, 0, -step, 0), coarse.shape[2], coarse.shape[1])
        coarse_exclude = None
        if exclude is not None:
            coarse_exclude = block_mean(exclude[None].astype(np.float32), factor)[0] > 0.5
        field = None
        if elevation_m is not None:
            field = np.full(coarse.shape[1:], elevation_m, np.float32)
        state = self.estimate(coarse, grid, geometry, coarse_exclude, field)
        boa = np.stack(
            [
                self.correct(b, toa[self.input_bands.index(b)], fine, state)
                for b in self.output_bands
            ]
        )
        return boa, state

    def field(self, name: str, grid: Grid, state: AtmosphereState) -> np.ndarray:
        """``"aot"`` or ``"water"`` on *grid* (bilinear from the coarse grid)."""
        return coarse_to_fine(state.grid, grid)(getattr(state, name))


SUBSTITUTES = {
    "B8A": ("B08", 1.0),
    "B08": ("B8A", 1.0),
    "B01": ("B02", 1.0),
    "B09": ("B8A", 0.35),
}
"""A missing input band -> (band standing in for it, factor). B8A and B08 see the same near-
infrared plateau; coastal B01 is closest to blue B02; B09 is B8A dimmed by a mid-latitude water
column (about 1.5 cm), so the water vapour estimate falls back to a standard value."""


def substitute_missing(
    toa: np.ndarray, bands: tuple[str, ...], cirrus_correction: bool = False
) -> tuple[np.ndarray, list[str]]:
    """Fill input bands that are entirely NaN (not in the product), saying what was done.

    B10 missing is zeros (said when a cirrus correction was asked for). Other bands take a
    neighbour (see :data:`SUBSTITUTES`); bands without one are an input error
    (:class:`~component.errors.InvalidItemError`, exit 4) naming them all, since guessing
    them would be silent.
    """
    missing = [b for i, b in enumerate(bands) if not np.isfinite(toa[i]).any()]
    if not missing or len(missing) == len(bands):
        return toa, []
    lacking = [
        band
        for band in missing
        if band != "B10" and (SUBSTITUTES.get(band, (None,))[0] in (None, *missing))
    ]
    if lacking:
        raise InvalidItemError(
            f"the input lacks band(s) {', '.join(lacking)}, which the model needs (it takes "
            f"{', '.join(bands)}; B08/B8A, B01 and B09 may stand in for one another): give "
            "them, or a complete L1C product"
        )
    toa = toa.copy()
    notes = []
    for band in missing:
        i = bands.index(band)
        if band == "B10":
            toa[i] = 0.0
            if cirrus_correction:
                notes.append("no B10 (cirrus) band: thin cirrus not corrected")
            continue
        source, factor = SUBSTITUTES[band]
        toa[i] = toa[bands.index(source)] * np.float32(factor)
        notes.append(f"no {band} band: {source} stands in for it in the atmosphere estimate")
    return toa, notes


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing that ignores NaN (normalised convolution) and fills every pixel.

    Invalid pixels (clouds masked upstream, nodata) take the weighted mean of their valid
    surroundings; a field with no valid pixel at all stays NaN.
    """
    from scipy.ndimage import gaussian_filter  # on use: see component.pipeline

    valid = np.isfinite(values)
    if valid.all():
        return gaussian_filter(values.astype(np.float32), sigma, mode="reflect")
    if not valid.any():
        return np.full(values.shape, np.nan, np.float32)
    weights = gaussian_filter(valid.astype(np.float32), sigma, mode="reflect")
    total = gaussian_filter(np.where(valid, values, 0).astype(np.float32), sigma, mode="reflect")
    out = np.divide(
        total, weights, out=np.full(values.shape, np.nan, np.float32), where=weights > 1e-6
    )
    if np.isnan(out).any():  # far from any valid pixel: the scene's mean
        out[np.isnan(out)] = float(np.nanmean(values))
    return out


FORECAST_SCALE_M = 14_000.0
"""The spacing of the ECMWF forecast a product carries (AUX_ECMWFT: 0.125 deg of latitude):
below it, the water vapour's detail is the scene's own estimate."""


EXACT_SMOOTHING_BUDGET = 2e7
"""Pixels times sigma up to which :func:`large_scale` runs the exact Gaussian (about 0.1 s)."""


def large_scale(values: np.ndarray, sigma: float) -> np.ndarray:
    """*values* (h, w, no NaN) smoothed by a Gaussian of *sigma* pixels, reflected at the
    edges. A wide one over a large field is run on block means (blocks of about sigma / 4,
    the edge mirrored to whole blocks) and interpolated back bilinearly, so its cost does not
    grow with sigma (a tile's 915² cells at sigma 117: 0.02 s, not 0.4 s), within 1 % (a
    tile) to 3 % (500² cells) of the field's range of the exact one, 0.1-0.5 % on average; a
    small field gets the exact one."""
    from scipy.ndimage import gaussian_filter, zoom  # on use: see component.pipeline

    values = np.asarray(values, np.float32)
    factor = int(sigma // 4)
    if factor < 2 or values.size * sigma <= EXACT_SMOOTHING_BUDGET:
        return gaussian_filter(values, sigma, mode="reflect")
    height, width = values.shape
    whole = np.pad(values, ((0, -height % factor), (0, -width % factor)), mode="symmetric")
    small = gaussian_filter(block_mean(whole, factor), sigma / factor, mode="reflect")
    back = zoom(small, factor, order=1, grid_mode=True, mode="nearest")
    return back[:height, :width]


def anchored_water(
    estimate: np.ndarray, forecast: np.ndarray, resolution_m: float, atmosphere: Atmosphere
) -> np.ndarray:
    """The water vapour (h, w, cm) with the *forecast*'s level and the *estimate*'s detail:
    ``estimate * forecast / large_scale(estimate)`` at the forecast's scale
    (:data:`FORECAST_SCALE_M`), where the forecast is known; the estimate elsewhere; within
    the table's range. Over a scene smaller than that scale the estimate is scaled to the
    forecast's level; with a uniform estimate the result is the forecast itself. The ratio
    keeps what the scene shows and the forecast cannot (its grid is kilometres: the column
    thins over a ridge and thickens in a valley) and takes the level, where the estimate is
    weakest, from the forecast."""
    known = np.isfinite(forecast)
    if not known.any():
        return estimate
    level = large_scale(estimate, FORECAST_SCALE_M / resolution_m)
    anchored = estimate * forecast / np.maximum(level, np.float32(0.05))
    water = np.where(known, anchored, estimate)
    return np.clip(water, *atmosphere.water_range).astype(np.float32)


FALLBACK = StandardAtmosphere()


def _filled(values: np.ndarray, sigma: float, smoothed: bool, fallback: float) -> np.ndarray:
    """*values* with NaN filled from the surroundings (all of it smoothed if *smoothed*)."""
    values = np.asarray(values, np.float32)
    if not np.isfinite(values).any():
        return np.full(values.shape, fallback, np.float32)
    if smoothed:
        return smooth(values, sigma)
    if np.isnan(values).any():
        return np.where(np.isnan(values), smooth(values, sigma), values).astype(np.float32)
    return values


def terms_step(smoothing_m: float, resolution_m: float) -> int:
    """Every how many coarse pixels the table's terms must be computed (1, 2 or 4).

    Where the AOT field is smoothed over *smoothing_m*, the terms of aerosol and angles vary
    over as much: computed every ``step`` pixels, with ``step * resolution <= smoothing / 4``,
    and interpolated bilinearly in between (as the inversion interpolates them again to each
    band's grid), they cost a quarter. On a tile's 915² grid at 120 m with 1 km smoothing:
    2.3 s -> 0.9 s for the terms, and surface reflectance within 0.0007 of per-pixel terms
    (99.9 % within 0.0002, i.e. 2 DN), below the table's own error against 6S.
    """
    step = 1
    while step < 4 and 2 * step * resolution_m <= smoothing_m / 4.0:
        step *= 2
    return step


def _nodes(n: int, step: int) -> np.ndarray:
    """Every *step*-th index of *n*, and the last one."""
    nodes = np.arange(0, n, step)
    return nodes if nodes[-1] == n - 1 else np.append(nodes, n - 1)


def _expand(values: np.ndarray, nodes: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear interpolation along *axis* from values at index *nodes* to all *n* indices."""
    if len(nodes) == 1:
        return np.repeat(values, n, axis=axis)
    x = np.arange(n)
    i = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, len(nodes) - 2)
    t = ((x - nodes[i]) / (nodes[i + 1] - nodes[i])).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = n
    low, high = np.take(values, i, axis=axis), np.take(values, i + 1, axis=axis)
    return low + (high - low) * t.reshape(shape)


def thinned_terms(
    atmosphere: Atmosphere,
    aot: np.ndarray,
    water: np.ndarray,
    geometry: Geometry,
    step: int,
    elevation: np.ndarray | None = None,
    ozone: np.ndarray | None = None,
) -> Terms:
    """The table's terms over a 2-D field: those of aerosol, angles, elevation (metres; None:
    sea level) and ozone (atm-cm; None: the climatology) computed every *step* pixels and
    interpolated (see :func:`terms_step`), water vapour's per pixel."""
    column = DEFAULT_OZONE if ozone is None else ozone
    if step == 1 or aot.ndim != 2:
        return atmosphere.terms(aot, water, geometry, column, elevation_m=elevation)
    h, w = aot.shape
    rows, cols = _nodes(h, step), _nodes(w, step)

    def sub(a: np.ndarray | float) -> np.ndarray:
        return np.broadcast_to(np.asarray(a), (h, w))[np.ix_(rows, cols)]

    thin = Geometry(
        sub(geometry.sun_zenith),
        sub(geometry.view_zenith),
        sub(geometry.relative_azimuth),
        known=geometry.known,
    )
    heights = None if elevation is None else sub(elevation)
    dry = atmosphere.dry_terms(sub(aot), thin, sub(column), elevation_m=heights)

    def full(a: np.ndarray) -> np.ndarray:
        return _expand(_expand(a, rows, h, axis=-2), cols, w, axis=-1).astype(np.float32)

    expanded = Terms(full(dry.path), full(dry.transmittance), full(dry.spherical_albedo))
    return atmosphere.with_water(expanded, water, geometry)


def _on_grid(geometry: Geometry, shape: tuple[int, ...]) -> Geometry:
    return Geometry(
        *(
            np.broadcast_to(np.asarray(v, np.float64), shape)
            for v in (geometry.sun_zenith, geometry.view_zenith, geometry.relative_azimuth)
        ),
        known=geometry.known,
    )


def _axis_weights(
    start: float, step: float, n_out: int, n_in: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear indices/weights along one axis: output centre ``start + (i + .5) * step``
    in input pixel units, clamped at the edges (the field is constant beyond the last centre)."""
    position = start + (np.arange(n_out) + 0.5) * step - 0.5
    position = np.clip(position, 0.0, n_in - 1.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (position - low).astype(np.float32)


RUN_PIXELS = 16 * 10980
"""Pixels inverted at once, 16 rows of a 10 m band: a 10 m band's rows between two 120 m rows
are 12, so such a run is one lerp step, and 16 x 10980 float32 (700 KB per temporary) keeps a
step's few temporaries in a core's L2 cache (per 10 m strip: 0.29 s in runs of 2 rows, 0.20 s
of 8, 0.18 s of 16 to 64)."""


class Run(NamedTuple):
    """Consecutive fine rows resampled at once (see :meth:`Resampler.runs`)."""

    rows: slice
    wide_rows: int | np.ndarray
    """The wide row each fine row follows (:meth:`Wide.rows`): one for all, or one each."""
    weights: np.ndarray
    """(k, 1) float32: how far each fine row lies towards the next wide row."""


class BandInversion:
    """One band's inversion on one fine grid (a band's strip), a few rows at a time.

    ``y = (toa - c - T A) / (T B)``, ``rho = y / (1 + S y)`` (``T`` the cirrus layer's two-way
    transmittance, 1 without cirrus): the offset (c + T A), 1 / (T B) and S are formed on the
    coarse rows the grid needs and widened once (:class:`Wide`); then each
    run of rows (:attr:`runs`, at most :data:`RUN_PIXELS`) sees three lerps, one subtraction, two
    multiplications and one division, on arrays that stay in a core's cache. The caller may
    convert its input and quantize the output run by run too, so that no full-size temporary
    is ever made (per 10 m strip, against correcting 64-row slices of the whole width with
    the terms resampled there: 0.45 s -> 0.18 s for :meth:`SceneCorrector.correct` alone).
    """

    def __init__(self, index: int, grid: Grid, state: AtmosphereState) -> None:
        resample = coarse_to_fine(state.grid, grid)
        terms = state.terms
        cirrus = resample.take(state.cirrus)
        dimming = cirrus_transmittance(cirrus)
        path = resample.take(terms.path[index])
        self.offset = resample.wide(path * dimming + cirrus)
        self.gain = resample.wide(1.0 / (resample.take(terms.transmittance[index]) * dimming))
        self.albedo = resample.wide(resample.take(terms.spherical_albedo[index]))
        self.adjacency: tuple[Wide, Wide] | None = None
        if state.environment is not None and state.adjacency_gain is not None:
            self.adjacency = (
                resample.wide(resample.take(state.environment[index])),
                resample.wide(resample.take(state.adjacency_gain[index])),
            )
        self.runs = resample.runs(RUN_PIXELS)
        longest = max((run.rows.stop - run.rows.start for run in self.runs), default=0)
        self._scratch = np.empty((longest, grid.width), np.float32)

    def __call__(self, run: Run, toa: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Surface reflectance of one run's rows from their TOA (k, w) into *out* (which may be
        *toa* itself); NaN stays NaN, negative surfaces become 0."""
        i, weights = run.wide_rows, run.weights
        term = self._scratch[: len(weights)]
        y = np.subtract(toa, self.offset.rows(i, weights, term), out=out)
        y *= self.gain.rows(i, weights, term)
        denominator = self.albedo.rows(i, weights, term)
        denominator *= y
        denominator += 1.0
        np.divide(y, denominator, out=y)
        if self.adjacency is not None:
            environment, gain = self.adjacency
            local = environment.rows(i, weights, np.empty_like(term))
            y -= local
            y *= gain.rows(i, weights, term)
            y += local
        # A surface reflects nothing less than nothing: near-black pixels (deep water, shadow)
        # that an aerosol estimate slightly too high pushes below zero are set to zero, which
        # also keeps ratios such as NDVI defined. NaN stays NaN (np.maximum propagates it).
        return np.maximum(y, np.float32(0.0), out=y)


class Resampler:
    """Resamples (h, w) arrays on a coarse grid to a fine one, bilinear at pixel centres.

    Separable, columns first: the few coarse rows the fine rows fall between are interpolated
    to the fine width (:meth:`wide`: a 1024-row strip of a 10 m band needs 87 of the 120 m
    grid's rows, not 1024), then each run of fine rows between the same two coarse rows is one
    broadcast lerp of two wide rows (:meth:`runs`), a few rows at a time so that the caller's
    arithmetic on them stays in cache. Callers combine fields on the coarse rows, where they
    are small (:meth:`take`), before widening them. Against interpolating every fine row at the
    coarse columns and gathering the full width (the previous design), a 10 m strip's inversion
    is about 5x faster; the result differs by float rounding only.
    """

    def __init__(self, coarse: Grid, fine: Grid) -> None:
        ratio_x = fine.transform.a / coarse.transform.a
        ratio_y = fine.transform.e / coarse.transform.e
        col0 = (fine.transform.c - coarse.transform.c) / coarse.transform.a
        row0 = (fine.transform.f - coarse.transform.f) / coarse.transform.e
        r_lo, _, r_w = _axis_weights(row0, ratio_y, fine.height, coarse.height)
        self.c_lo, self.c_hi, self.c_w = _axis_weights(col0, ratio_x, fine.width, coarse.width)
        self.shape = (fine.height, fine.width)
        self.first = int(r_lo[0]) if fine.height else 0
        self.last = min(int(r_lo[-1]) + 1, coarse.height - 1) if fine.height else 0
        """Coarse rows ``first..last`` are all the fine rows need."""
        self._r_lo = r_lo - self.first
        self._r_w = r_w[:, None]

    def take(self, values: np.ndarray | float) -> np.ndarray:
        """The coarse rows of *values* (coarse h, coarse w) this fine grid needs; scalars as
        they are."""
        values = np.asarray(values, np.float32)
        return values if values.ndim == 0 else values[self.first : self.last + 1]

    def wide(self, rows: np.ndarray) -> Wide:
        """Rows from :meth:`take` interpolated to the fine width."""
        rows = np.asarray(rows, np.float32)
        if rows.ndim == 0:  # a constant field
            return Wide(np.full((self.last - self.first + 1, self.shape[1]), rows, np.float32))
        low = rows[:, self.c_lo]
        high = rows[:, self.c_hi]
        high -= low
        high *= self.c_w
        high += low
        return Wide(high)

    def runs(self, max_pixels: int = RUN_PIXELS) -> list[Run]:
        """The fine rows in runs of at most *max_pixels* pixels (at least a row each).

        Where a coarse row's interval holds many fine rows (10 m under 120 m: 12) a run stays
        within one interval, a broadcast lerp; where it holds few (60 m: 2) consecutive
        intervals are packed into one run, so that a 1830-px-wide band is not done two rows,
        i.e. a few microseconds of work, per numpy call.
        """
        n, width = self.shape
        max_rows = max(1, max_pixels // max(width, 1))
        edges = [0, *(np.flatnonzero(np.diff(self._r_lo)) + 1).tolist(), n]
        pieces = [
            (s, min(stop, s + max_rows))
            for start, stop in itertools.pairwise(edges)
            for s in range(start, stop, max_rows)
        ]
        out: list[Run] = []
        first = 0
        for index, (_, stop) in enumerate(pieces):
            following = pieces[index + 1][1] if index + 1 < len(pieces) else None
            if following is not None and following - first <= max_rows:
                continue  # the next piece still fits in this run
            lo = self._r_lo[first:stop]
            wide_rows: int | np.ndarray = int(lo[0]) if lo[0] == lo[-1] else lo
            out.append(Run(slice(first, stop), wide_rows, self._r_w[first:stop]))
            first = stop
        return out

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """(coarse h, coarse w) -> (fine h, fine w)."""
        values = np.asarray(values, np.float32)
        if values.ndim == 0:
            return values
        wide = self.wide(self.take(values))
        out = np.empty(self.shape, np.float32)
        for run in self.runs():
            wide.rows(run.wide_rows, run.weights, out[run.rows])
        return out


class Wide:
    """A field on a few coarse rows at the fine width, and the step from each row to the next:
    a fine row between rows ``i`` and ``i + 1`` with weight ``t`` is ``row_i + t * step_i``."""

    def __init__(self, rows: np.ndarray) -> None:
        self.values = rows
        self.steps = np.zeros_like(rows)
        np.subtract(rows[1:], rows[:-1], out=self.steps[:-1])

    def rows(self, i: int | np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fine rows with *weights* (k, 1) after wide row *i* (one for all, or one per row),
        into *out*."""
        if isinstance(i, int):
            np.multiply(self.steps[i], weights, out=out)
            out += self.values[i]
        else:
            # Row gathers by fancy indexing (np.take with out= is 20x slower here).
            np.multiply(self.steps[i], weights, out=out)
            out += self.values[i]
        return out


def coarse_to_fine(coarse: Grid, fine: Grid) -> Resampler:
    """A function resampling (h, w) arrays on *coarse* to *fine* (see :class:`Resampler`)."""
    return Resampler(coarse, fine)
