"""Coarse first: the survey, every input band read at 60 m before any finer decode.

The atmosphere needs the whole scene, but only coarsely. So each input band is first read on
its 60 m survey grid (:attr:`~component.io.load.ReadPlan.survey`): a 10 m or 20 m band from
its JPEG 2000 reduced-resolution level (40 m, averaged onto 60 m), about a seventh of its full
decode. From the survey come the coarse TOA the atmosphere is estimated on (block means of the
valid pixels) and the 60 m stack of all 13 bands the scene is classified on to keep clouds,
their shadows and snow out of the estimate. The same survey serves every ``--resolution``: a
scene gets one atmosphere whatever resolution it is written at.

A band whose product grid is its survey grid (B01 and B09 always; every band at
``--resolution 60``) keeps its DN from the survey: the pass that corrects and writes
(:mod:`component.engine.assemble`) takes them from memory, so no band is ever decoded twice at
one resolution. Decoding (GDAL) releases the GIL: on a few cores the decode of one band
overlaps the arithmetic of another.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.blocks import BlockMean, nearest
from component.core.grid import Grid
from component.core.settings import Settings
from component.engine.schedule import Job, run_jobs, workers
from component.io.l1c import L1CProduct
from component.io.load import BandReader, ReadPlan, gdal, read_band, to_toa

SCENE_GRID_BAND = "B05"
"""A 20 m band: its product grid, ``max(R, 20)``, is the SCL's (20 m, or 60 m at R = 60); its
survey grid is the one the survey's scene is classified on."""
CLEAR_SKY_B10 = 0.005
"""B10 TOA reflectance assumed for items without B10: a clear, moist sky (no cirrus), below
the thin-cirrus threshold (0.012); the cloud detector then decides on the other bands."""


def scene_grid(plan: ReadPlan) -> Grid:
    """The grid SCL and CLD are written on: Sen2Cor's 20 m, or 60 m for a 60 m product."""
    return plan.grids[SCENE_GRID_BAND]


def survey_grid(plan: ReadPlan) -> Grid:
    """The 60 m grid the survey's scene is classified on (the scene grid at R = 60)."""
    return plan.survey[SCENE_GRID_BAND]


def scene_stack(bands: dict[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(13, h, w) TOA of :data:`L1C_BANDS` on the scene grid from the bands given; a missing
    B10 is :data:`CLEAR_SKY_B10`, any other missing band NaN."""
    stack = np.empty((len(L1C_BANDS), *shape), np.float32)
    for index, band in enumerate(L1C_BANDS):
        stack[index] = bands.get(band, CLEAR_SKY_B10 if band == "B10" else np.nan)
    return stack


@dataclass
class Survey:
    """Every input band at 60 m: what the atmosphere is estimated from."""

    coarse_toa: dict[str, np.ndarray]
    """Each input band's TOA on the atmosphere's coarse grid."""
    toa: np.ndarray
    """(13, h, w) TOA of :data:`L1C_BANDS` on :func:`survey_grid` (missing bands filled as
    :func:`scene_stack` does; NaN = invalid)."""
    dn: dict[str, np.ndarray]
    """The DN of each product band whose product grid is its survey grid, whole."""


def read_toa(
    product: L1CProduct, band: str, grid: Grid, y0: int, y1: int, settings: Settings
) -> np.ndarray:
    """Rows ``y0:y1`` of *band* on *grid* as TOA reflectance (a whole window: the Python
    API's blocks, read as the pipeline reads its strips)."""
    with gdal(settings), BandReader(product, band, grid) as reader:
        return to_toa(reader.read(y0, y1), product.radiometry)


def decode_pixels(grid: Grid, band: str) -> int:
    """Pixels reading *band* on *grid* decodes: those of the JPEG 2000 level it is read from,
    the finest power-of-two reduction of its native resolution not coarser than the grid (at
    60 m, 10 m and 20 m bands both decode a 40 m level: 2.25 times their 60 m grid)."""
    native = NATIVE_RESOLUTION[band]
    level_m = native * 2 ** int(np.floor(np.log2(grid.resolution / native + 1e-9)))
    return round(grid.width * grid.height * (grid.resolution / level_m) ** 2)


def _survey_job(
    product: L1CProduct, band: str, plan: ReadPlan, settings: Settings, slot: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """One band on its survey grid: put on the survey's scene grid (*slot*), its coarse mean,
    and its DN when its product grid is its survey grid (else None)."""
    grid = plan.survey[band]
    dn = read_band(product, band, grid, settings)
    toa = to_toa(dn, product.radiometry)
    on_scene = BlockMean(grid, survey_grid(plan), slot)
    on_scene.add(0, toa)
    on_scene.finish()
    mean = BlockMean(grid, plan.coarse)
    mean.add(0, toa)
    return mean.finish(), dn if plan.grids.get(band) == grid else None


def survey(
    product: L1CProduct,
    plan: ReadPlan,
    settings: Settings,
    on_band: Callable[[str], None] | None = None,
) -> Survey:
    """Every input band read on its survey grid, in parallel threads, the costliest first.
    *on_band(band)* is called after each (progress)."""
    target = survey_grid(plan)
    stack = np.zeros((len(L1C_BANDS), *target.shape), np.float32)  # sums, then means
    coarse_toa: dict[str, np.ndarray] = {}
    dn: dict[str, np.ndarray] = {}
    order = sorted(plan.inputs, key=lambda b: (-decode_pixels(plan.survey[b], b), b))
    jobs: deque[Job[tuple[np.ndarray, np.ndarray | None]]] = deque()
    for band in order:
        slot = stack[L1C_BANDS.index(band)]
        job = (product, band, plan, settings, slot)
        jobs.append((band, lambda job=job: _survey_job(*job)))

    def done(band: str, result: tuple[np.ndarray, np.ndarray | None]) -> None:
        coarse_toa[band], values = result
        if values is not None:
            dn[band] = values
        if on_band is not None:
            on_band(band)

    run_jobs(jobs, workers(settings), done, "survey")
    for index, band in enumerate(L1C_BANDS):
        if band not in plan.inputs:
            stack[index] = CLEAR_SKY_B10 if band == "B10" else np.nan
    return Survey(coarse_toa, stack, dn)


def fine_scene_stack(survey: Survey, plan: ReadPlan, decoded: tuple[str, ...]) -> np.ndarray:
    """The (13, h, w) stack to classify on :func:`scene_grid` when it is finer than the
    survey's: the bands of *decoded* are left for the pass to average onto it (zeros until
    then), every other one (B01, B09, B10, a missing band) is the survey's, nearest onto it."""
    source, target = survey_grid(plan), scene_grid(plan)
    stack = np.zeros((len(L1C_BANDS), *target.shape), np.float32)
    for index, band in enumerate(L1C_BANDS):
        if band not in decoded:
            nearest(survey.toa[index], source, target, stack[index])
    return stack
