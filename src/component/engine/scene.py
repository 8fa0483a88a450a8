"""The scene: its classification, and the atmosphere estimated with the clouds kept out.

Both need the whole scene, on coarse grids only: the classification on the scene grid (20 m,
or 60 m at ``--resolution 60``), from TOA as Sen2Cor does it (before the atmosphere, whose
estimate its clouds must not inform); the atmosphere on the card's coarse grid. The CLI
pipeline (from pass 1's means) and the Python API (from dask reductions of its input) call
these same two functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from component.core.bands import L1C_BANDS
from component.core.blocks import BlockMean
from component.core.grid import Grid
from component.io.elevation import Elevation
from component.io.meteorology import Meteorology, effective_elevation
from component.model.atmosphere import Geometry
from component.model.correction import AtmosphereState, SceneCorrector
from component.model.scene_classification import (
    TOA_RULES_NOTE,
    SceneClass,
    SceneClassification,
    class_percentages,
    classify,
    cover_properties,
)

EXCLUDE_FRACTION = 0.05
"""A coarse pixel of the atmosphere grid is kept out of the estimate when more than this share
of its pixels with data are masked (clouds, cirrus, cloud shadows, snow, defective). A cloud
dominates the mean TOA it falls in: 5 % of a 0.5-reflectance cloud adds 0.025 to a dark
surface's blue, as much as the whole aerosol signal of a clear day."""
EXCLUDED_CLASSES = (
    SceneClass.SATURATED_OR_DEFECTIVE,
    SceneClass.CLOUD_SHADOWS,
    SceneClass.CLOUD_MEDIUM_PROBABILITY,
    SceneClass.CLOUD_HIGH_PROBABILITY,
    SceneClass.THIN_CIRRUS,
    SceneClass.SNOW,
)
"""What must not inform the atmosphere: clouds and their shadows (not surfaces the estimator
knows), thin cirrus (corrected from B10 after the estimate, not to be taken for haze), snow
(far brighter than any surface it was trained on) and partly invalid pixels. Water stays:
clear water is one of the dark targets the estimator learnt the aerosol from."""
NO_B10_NOTE = "no B10: thin cirrus not classified, the cloud detector sees a clear-sky B10"


@dataclass
class Scene:
    """The scene classification of one product and what follows from it."""

    grid: Grid
    """Where SCL and CLD are written."""
    classification: SceneClassification
    exclude: np.ndarray
    """(h, w) bool on the atmosphere's coarse grid: pixels the estimate must not look at."""

    @property
    def notes(self) -> list[str]:
        return self.classification.notes

    def properties(self) -> dict[str, Any]:
        """Item properties computed on this product: ``statistics`` (each class's share, in
        percent, as CDSE's L2A items state it), ``eo:cloud_cover``, ``eo:snow_cover``."""
        scl = self.classification.scl
        return {"statistics": class_percentages(scl), **cover_properties(scl)}


def coarse_exclude(scl: np.ndarray, grid: Grid, coarse: Grid) -> np.ndarray:
    """Coarse pixels with more than :data:`EXCLUDE_FRACTION` of :data:`EXCLUDED_CLASSES`
    among their pixels with data (SCL on *grid* -> bool on *coarse*)."""
    masked = np.isin(scl, [int(c) for c in EXCLUDED_CLASSES]).astype(np.float32)
    masked[scl == SceneClass.NO_DATA] = np.nan
    mean = BlockMean(grid, coarse)
    mean.add(0, masked)
    return np.nan_to_num(mean.finish(), nan=0.0) > EXCLUDE_FRACTION


def classify_scene(
    toa: np.ndarray,
    grid: Grid,
    coarse: Grid,
    geometry: Geometry | None,
    has_b10: bool,
    threads: int = 0,
) -> Scene:
    """Sen2Cor's scene classification of *toa* ((13, h, w) :data:`L1C_BANDS` on *grid*, as
    :func:`~component.engine.decode.scene_stack` fills it), from TOA as Sen2Cor does it, and
    the coarse pixels it keeps out of the atmosphere estimate."""
    result = classify(
        toa,
        None,
        L1C_BANDS,
        grid.resolution,
        geometry,
        sun_azimuth=geometry.sun_azimuth if geometry is not None else None,
        threads=threads,
    )
    # Classifying before the correction is the design here (Sen2Cor's order), not a fallback.
    result.notes = [note for note in result.notes if note != TOA_RULES_NOTE]
    if not has_b10:
        result.notes.append(NO_B10_NOTE)
    return Scene(grid, result, coarse_exclude(result.scl, grid, coarse))


def has_valid_pixel(coarse_toa: Mapping[str, np.ndarray], bands: tuple[str, ...]) -> bool:
    """Whether any of *bands* has a valid coarse pixel (else there is nothing to correct)."""
    return any(np.isfinite(coarse_toa[b]).any() for b in bands if b in coarse_toa)


def estimate_atmosphere(
    corrector: SceneCorrector,
    coarse_toa: Mapping[str, np.ndarray],
    coarse: Grid,
    geometry: Geometry | None,
    scene: Scene,
    elevation: Elevation | None = None,
    meteorology: Meteorology | None = None,
) -> AtmosphereState:
    """The atmosphere on *coarse* from each input band's coarse TOA (a band absent from
    *coarse_toa* counts as missing), with *scene*'s clouds, shadows and snow left out, for
    the air above the terrain (*elevation* on *coarse*; None: sea level) under the product's
    own sea-level pressure and ozone (*meteorology*; None: standard and climatological); its
    water-vapour and aerosol forecasts, where it has them, are the estimator's priors."""
    shape = (coarse.height, coarse.width)
    missing = np.full(shape, np.nan, np.float32)
    toa = np.stack([coarse_toa.get(band, missing) for band in corrector.input_bands])
    metres = 0.0 if elevation is None else elevation.metres
    msl = ozone = water = aerosol = None
    if meteorology is not None:
        msl, ozone = meteorology.msl_hpa, meteorology.ozone_atm_cm
        water, aerosol = meteorology.water_cm, meteorology.aod550
    heights = None
    if msl is not None or np.any(metres):
        heights = np.broadcast_to(effective_elevation(metres, msl), shape).astype(np.float32)
    return corrector.estimate(
        toa,
        coarse,
        geometry,
        exclude=scene.exclude,
        elevation=heights,
        ozone=ozone,
        water_prior=water,
        aot_prior=aerosol,
    )
