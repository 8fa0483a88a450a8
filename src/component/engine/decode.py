"""Pass 1: every band decoded once, strip by strip, in parallel threads, costliest first.

Each strip of a band's product grid (:data:`~component.io.load.STRIP_ROWS` rows) becomes TOA
reflectance, is averaged into the coarse grid the atmosphere is estimated on and into the
scene-classification grid (:mod:`component.core.blocks`: valid pixels only), and its DN are
spilled to a raw scratch file in the staging folder: the atmosphere's input costs no second
decode, and memory stays a few strips whatever the resolution (the scratch files live in the
page cache, not in the process). Decoding (GDAL) releases the GIL, so on a few cores the
decode of one band overlaps the arithmetic of another.

B10 is only an input: it is read on the coarse grid directly (from a reduced-resolution
level), and at its native 60 m for the scene grid.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.blocks import BlockMean, nearest
from component.core.grid import Grid
from component.core.settings import Settings
from component.engine.schedule import Job, run_jobs, workers
from component.io.l1c import L1CProduct
from component.io.load import STRIP_ROWS, BandReader, ReadPlan, gdal, read_band, to_toa

SCENE_GRID_BAND = "B05"
"""A 20 m band: its product grid, ``max(R, 20)``, is the SCL's (20 m, or 60 m at R = 60)."""
CLEAR_SKY_B10 = 0.005
"""B10 TOA reflectance assumed for items without B10: a clear, moist sky (no cirrus), below
the thin-cirrus threshold (0.012); the cloud detector then decides on the other bands."""


def scene_grid(plan: ReadPlan) -> Grid:
    """The grid SCL and CLD are written on: Sen2Cor's 20 m, or 60 m for a 60 m product."""
    return plan.grids[SCENE_GRID_BAND]


def scene_stack(bands: dict[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(13, h, w) TOA of :data:`L1C_BANDS` on the scene grid from the bands given; a missing
    B10 is :data:`CLEAR_SKY_B10`, any other missing band NaN."""
    stack = np.empty((len(L1C_BANDS), *shape), np.float32)
    for index, band in enumerate(L1C_BANDS):
        stack[index] = bands.get(band, CLEAR_SKY_B10 if band == "B10" else np.nan)
    return stack


@dataclass
class Decoded:
    """Pass 1's result: the coarse TOA of every input band and each band's DN on scratch."""

    coarse_toa: dict[str, np.ndarray]
    scratch: dict[str, Path]
    scene_toa: np.ndarray | None = None
    """(13, h, w) TOA of :data:`L1C_BANDS` on the scene grid (NaN = invalid), when asked for;
    released once the scene is classified (1.6 GB on a full 20 m tile)."""


def scratch_path(folder: Path, band: str) -> Path:
    return folder / f".{band}.dn.u16"


def read_toa(
    product: L1CProduct, band: str, grid: Grid, y0: int, y1: int, settings: Settings
) -> np.ndarray:
    """Rows ``y0:y1`` of *band* on *grid* as TOA reflectance (a whole window: the Python
    API's blocks, read as pass 1 reads its strips)."""
    with gdal(settings), BandReader(product, band, grid) as reader:
        return to_toa(reader.read(y0, y1), product.radiometry)


def _decode_job(
    product: L1CProduct,
    band: str,
    grid: Grid,
    coarse: Grid,
    settings: Settings,
    folder: Path,
    scene: tuple[Grid, np.ndarray] | None = None,
    on_strip: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, Path]:
    """One band decoded strip by strip: coarse mean accumulated, DN spilled to scratch, and,
    with *scene* (grid, output slice), the band put on the scene-classification grid."""
    mean = BlockMean(grid, coarse)
    path = scratch_path(folder, band)
    on_scene: BlockMean | None = None
    coarser: list[np.ndarray] = []
    if scene is not None and grid.resolution <= scene[0].resolution:
        on_scene = BlockMean(grid, *scene)
    with gdal(settings), BandReader(product, band, grid) as reader, path.open("wb") as out:
        for y0 in range(0, grid.height, STRIP_ROWS):
            dn = reader.read(y0, min(grid.height, y0 + STRIP_ROWS))
            toa = to_toa(dn, product.radiometry)
            mean.add(y0, toa)
            if on_scene is not None:
                on_scene.add(y0, toa)
            elif scene is not None:
                coarser.append(toa)  # a 60 m band under a 20 m scene grid: small
            out.write(np.ascontiguousarray(dn, np.uint16).data)  # no copy
            if on_strip is not None:
                on_strip(band)
    if on_scene is not None:
        on_scene.finish()
    elif scene is not None:
        nearest(np.concatenate(coarser), grid, *scene)
    return mean.finish(), path


def _extra_job(
    product: L1CProduct,
    band: str,
    coarse: Grid,
    settings: Settings,
    scene: tuple[Grid, Grid, np.ndarray] | None,
) -> np.ndarray:
    """An input band that is not a product band (B10), as coarse TOA. With *scene* (its native
    grid, the scene grid, the output slice) it is read at its native 60 m and put on the scene
    grid too; the coarse mean then comes from that read (one decode, not two)."""
    if scene is None:
        return to_toa(read_band(product, band, coarse, settings), product.radiometry)
    native, target, out = scene
    toa = to_toa(read_band(product, band, native, settings), product.radiometry)
    if native.resolution <= target.resolution:
        on_scene = BlockMean(native, target, out)
        on_scene.add(0, toa)
        on_scene.finish()
    else:
        nearest(toa, native, target, out)
    mean = BlockMean(native, coarse)
    mean.add(0, toa)
    return mean.finish()


def strip_count(plan: ReadPlan) -> int:
    """Strips :func:`decode_bands` decodes: the progress of pass 1."""
    return sum(-(-grid.height // STRIP_ROWS) for grid in plan.grids.values())


def decode_pixels(plan: ReadPlan, band: str) -> int:
    """Pixels the decode of *band* costs: those of the JPEG 2000 level it is read from, the
    finest power-of-two reduction of its native resolution not coarser than its grid (at 60 m,
    10 m and 20 m bands both decode a 40 m level: 2.25 times their 60 m grid)."""
    grid = plan.grids[band]
    native = NATIVE_RESOLUTION[band]
    level_m = native * 2 ** int(np.floor(np.log2(grid.resolution / native + 1e-9)))
    return round(grid.width * grid.height * (grid.resolution / level_m) ** 2)


def decode_order(plan: ReadPlan) -> list[str]:
    """Pass 1's jobs, the costliest decode first: the small ones then fill the cores at the end
    instead of one large band running alone."""
    return sorted(plan.grids, key=lambda band: (-decode_pixels(plan, band), band))


def decode_bands(
    product: L1CProduct,
    plan: ReadPlan,
    settings: Settings,
    folder: Path,
    scene: Grid | None = None,
    on_strip: Callable[[str], None] | None = None,
) -> Decoded:
    """Every product band decoded once on its product grid (coarse means + scratch DN), and
    every other input band (B10) on the coarse grid; with *scene*, every input band also on
    that grid (:attr:`Decoded.scene_toa`, missing bands filled as :func:`scene_stack` does).
    *on_strip(band)* is called after each strip (progress)."""
    coarse_toa: dict[str, np.ndarray] = {}
    scratch: dict[str, Path] = {}
    stack = None
    if scene is not None:
        stack = np.zeros((len(L1C_BANDS), scene.height, scene.width), np.float32)

    def slot(band: str) -> tuple[Grid, np.ndarray] | None:
        return None if stack is None or scene is None else (scene, stack[L1C_BANDS.index(band)])

    jobs: deque[Job[object]] = deque()
    for band in decode_order(plan):
        args = (product, band, plan.grids[band], plan.coarse, settings, folder, slot(band))
        jobs.append((band, lambda args=args: _decode_job(*args, on_strip)))
    for band in plan.inputs:
        if band in plan.grids:
            continue
        target = slot(band)
        # B10 shares the 60 m bands' grid (same tile origin, same snapping).
        native = None if target is None else (plan.grids["B01"], *target)
        extra = (product, band, plan.coarse, settings, native)
        jobs.append((band, lambda extra=extra: _extra_job(*extra)))

    def done(band: str, result: object) -> None:
        if isinstance(result, tuple):
            coarse_toa[band], scratch[band] = result
        else:
            coarse_toa[band] = result  # type: ignore[assignment]

    run_jobs(jobs, workers(settings), done, "decode")
    if stack is not None:
        for band in L1C_BANDS:
            if band not in plan.inputs:
                stack[L1C_BANDS.index(band)] = CLEAR_SKY_B10 if band == "B10" else np.nan
    return Decoded(coarse_toa, scratch, stack)
