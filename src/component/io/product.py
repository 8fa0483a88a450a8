"""Decode, correct and write every raster of one L2A product, strip by strip, in parallel threads.

Two passes over the bands, each a *job* per band in a pool of threads (decoding, GDAL, and
compression, GDAL's COG driver, release the GIL, so on a few cores the decoding of one band
overlaps the correction of another and the compression of a third):

1. :func:`decode_bands`: every band is decoded once, on its product grid, in strips of
   :data:`~component.io.load.STRIP_ROWS` rows, the costliest bands first
   (:func:`decode_order`). Each strip is averaged into the coarse grid the
   atmosphere is estimated on (NaN-aware: nodata and saturated pixels do not count) and its
   DN are spilled to a raw scratch file in the staging folder. So the atmosphere's input costs
   no second decode, and memory stays a few strips whatever the resolution (the scratch files
   live in the page cache, not in the process).
2. :func:`write_product`, once the atmosphere is estimated: each band's DN are read back strip
   by strip and go, a few rows at a time (:func:`correct_strip`), through TOA reflectance,
   the corrector's inversion and L2A DN while those rows are in the CPU's cache, then are
   drafted; a finished draft becomes a COG in the writer's threads while other bands are
   still corrected.

Besides the bands: B02's job also writes AOT and WVP on the ``--resolution`` grid (the L1C's
no-data there is B02's), and once B04, B03 and B02 are written a TCI job makes the RGB
quicklook from their drafts' DN through a lookup table (it starts before the remaining bands;
their three COGs are made after it). B10 is only an input:
it is read on the coarse grid directly (from a reduced-resolution level).

The scene classification sits between the passes: pass 1 also puts every band's strips on the
SCL grid (:func:`scene_grid`: 20 m, or 60 m at ``--resolution 60``), :func:`classify_scene`
classifies them on TOA as Sen2Cor does, and its clouds, shadows, cirrus and snow become the
atmosphere estimate's exclusion mask (:func:`coarse_exclude`); pass 2 writes SCL and CLD.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.windows import Window

from component.io import stac_bridge
from component.io.load import (
    STRIP_ROWS,
    BandReader,
    Grid,
    ReadPlan,
    max_connections,
    read_band,
    to_toa,
)
from component.io.write import (
    CLOUD_NODATA,
    RGB,
    Draft,
    ProductWriter,
    atmosphere_to_dn,
    quicklook_from_dn,
    reflectance_to_dn,
)
from component.model.correction import (
    L1C_BANDS,
    NATIVE_RESOLUTION,
    AtmosphereState,
    SceneCorrector,
    coarse_to_fine,
)
from component.model.scene_classification import (
    TOA_RULES_NOTE,
    SceneClass,
    SceneClassification,
    class_percentages,
    classify,
    cover_properties,
)

if TYPE_CHECKING:
    from component.io.geometry import SceneGeometry


def block_sums(
    toa: np.ndarray, first_row: int, first_col: int, k: int
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Sums and counts of the valid (finite) values of *toa* over ``k x k`` blocks.

    *first_row* / *first_col*: where *toa*'s first pixel lies, in pixels from the blocks'
    origin (negative before it). Returns the block row of each output row, the block column
    of the first output column, the float32 sums and the uint16 counts. Columns are summed
    first (k strided adds), which shrinks the array k-fold before the rows are; strips of
    1024 rows need not start or end on a block edge. Per 1024 x 10980 strip: 0.07 s onto
    the 120 m grid and 0.08 s onto the 20 m grid, against 0.17 s and 0.35 s for float64
    ``reduceat`` sums over padded copies (the decode threads spent more time here than in
    GDAL).
    """
    n, w = toa.shape
    left = first_col % k
    valid = np.isfinite(toa)
    values = np.where(valid, toa, np.float32(0)).astype(np.float32, copy=False)
    columns = -(-(left + w) // k) * k
    if left or columns != w:
        padded = np.zeros((n, columns), np.float32)
        padded[:, left : left + w] = values
        present = np.zeros((n, columns), bool)
        present[:, left : left + w] = valid
        values, valid = padded, present
    column_sums = _every(values, k, axis=1)
    column_counts = _every(valid.astype(np.uint16), k, axis=1)
    # Blocks of rows: a partial one where the strip starts inside a block, whole ones, a
    # partial one where it ends inside a block.
    head = min((-first_row) % k, n)
    whole = (n - head) // k * k
    sums, counts = [], []
    if head:
        sums.append(column_sums[:head].sum(axis=0, keepdims=True))
        counts.append(column_counts[:head].sum(axis=0, keepdims=True, dtype=np.uint16))
    if whole:
        sums.append(_every(column_sums[head : head + whole], k, axis=0))
        counts.append(_every(column_counts[head : head + whole], k, axis=0))
    if head + whole < n:
        sums.append(column_sums[head + whole :].sum(axis=0, keepdims=True))
        counts.append(column_counts[head + whole :].sum(axis=0, keepdims=True, dtype=np.uint16))
    block_sum, block_count = np.concatenate(sums), np.concatenate(counts)
    block_rows = first_row // k + np.arange(len(block_sum))
    return block_rows, (first_col - left) // k, block_sum, block_count


def _every(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Sums of *k* consecutive entries along *axis* (its length a multiple of *k*): k strided
    adds, each over 1/k of the array, instead of a reduction over a short inner axis."""
    if k == 1:
        return a
    index = [slice(None), slice(None)]
    index[axis] = slice(0, None, k)
    total = a[tuple(index)].copy()
    for j in range(1, k):
        index[axis] = slice(j, None, k)
        total += a[tuple(index)]
    return total


def _inside(
    block_rows: np.ndarray,
    c0: int,
    sums: np.ndarray,
    hits: np.ndarray,
    width: int,
    height: int,
) -> tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray, np.ndarray]:
    """Where :func:`block_sums`' blocks fall in a (height, width) grid, as slices: the target
    region and the part of the sums inside it (block rows are consecutive, so no fancy
    indexing: a scatter by index arrays cost 10 ns per value, more than the sums)."""
    first = int(block_rows[0])
    r0, r1 = max(first, 0), min(first + len(block_rows), height)
    c_start, c_stop = max(c0, 0), min(c0 + sums.shape[1], width)
    r1, c_stop = max(r1, r0), max(c_stop, c_start)
    target = (slice(r0, r1), slice(c_start, c_stop))
    inner = (slice(r0 - first, r1 - first), slice(c_start - c0, c_stop - c0))
    return target, inner, sums, hits


class CoarseMean:
    """The mean of a band's valid TOA over each coarse pixel, accumulated strip by strip.

    The coarse grid's pixel is a whole number of the band's pixels, both anchored on the tile
    origin, so a coarse pixel is a block of ``k x k`` band pixels: block sums, no resampling.
    """

    def __init__(self, grid: Grid, coarse: Grid) -> None:
        ratio = coarse.resolution / grid.resolution
        self.k = round(ratio)
        if abs(ratio - self.k) > 1e-6:
            raise ValueError(f"coarse grid {coarse.resolution} m is not a multiple of {grid}")
        res = grid.resolution
        self.col0 = round((grid.transform.c - coarse.transform.c) / res)
        self.row0 = round((coarse.transform.f - grid.transform.f) / res)
        self.shape = (coarse.height, coarse.width)
        self.total = np.zeros(self.shape, np.float64)
        self.count = np.zeros(self.shape, np.int64)

    def add(self, y0: int, toa: np.ndarray) -> None:
        """Rows ``y0:y0 + len(toa)`` of the band's grid (NaN = invalid)."""
        height, width = self.shape
        rows, inner, sums, hits = _inside(
            *block_sums(toa, y0 + self.row0, self.col0, self.k), width, height
        )
        self.total[rows] += sums[inner]
        self.count[rows] += hits[inner]

    def mean(self) -> np.ndarray:
        """(h, w) float32 mean TOA; NaN where no valid pixel fell."""
        out = np.full(self.shape, np.nan, np.float32)
        seen = self.count > 0
        out[seen] = self.total[seen] / self.count[seen]
        return out


class SceneMean:
    """A band's valid TOA averaged onto the scene-classification grid, strip by strip.

    Like :class:`CoarseMean`, but lean enough to hold all 13 bands of a 20 m tile at once
    (the classifier needs them together): the sums go straight into the caller's float32
    slice of the scene stack and the counts are uint8 (at most 2 x 2 product pixels fall in
    a scene pixel: 10 m bands on the 20 m grid), so a band costs 150 MB on a full 20 m tile
    instead of the 480 MB of float64 sums and int64 counts. A band already on the scene grid
    is copied, not averaged.
    """

    def __init__(self, grid: Grid, scene: Grid, out: np.ndarray) -> None:
        ratio = scene.resolution / grid.resolution
        self.k = round(ratio)
        if abs(ratio - self.k) > 1e-6 or self.k < 1:
            raise ValueError(f"scene grid {scene.resolution} m is not a multiple of {grid}")
        if self.k**2 > np.iinfo(np.uint8).max:
            raise ValueError(f"scene grid {scene.resolution} m too coarse for {grid}")
        res = grid.resolution
        self.col0 = round((grid.transform.c - scene.transform.c) / res)
        self.row0 = round((scene.transform.f - grid.transform.f) / res)
        self.out = out
        self.count = np.zeros(out.shape, np.uint8)

    def add(self, y0: int, toa: np.ndarray) -> None:
        """Rows ``y0:y0 + len(toa)`` of the band's grid (NaN = invalid)."""
        height, width = self.out.shape
        rows, inner, sums, hits = _inside(
            *block_sums(toa, y0 + self.row0, self.col0, self.k), width, height
        )
        self.out[rows] += sums[inner]
        self.count[rows] += hits[inner].astype(np.uint8)

    def finish(self) -> None:
        """Sums become means in place; NaN where no valid pixel fell."""
        seen = self.count > 0
        np.divide(self.out, self.count, out=self.out, where=seen)
        self.out[~seen] = np.nan
        del self.count


def nearest(values: np.ndarray, source: Grid, target: Grid, out: np.ndarray) -> None:
    """*values* on *source* sampled at the centres of *target*'s pixels into *out* (for a
    band coarser than the scene grid: B01, B09 and B10 at 60 m under a 20 m SCL); NaN
    outside *source*."""

    sres, tres = source.resolution, target.resolution
    x = target.transform.c + (np.arange(target.width) + 0.5) * tres
    y = target.transform.f - (np.arange(target.height) + 0.5) * tres
    cols = np.floor((x - source.transform.c) / sres).astype(np.int64)
    rows = np.floor((source.transform.f - y) / sres).astype(np.int64)
    inside_r = (rows >= 0) & (rows < source.height)
    inside_c = (cols >= 0) & (cols < source.width)
    taken = values[np.clip(rows, 0, source.height - 1)][:, np.clip(cols, 0, source.width - 1)]
    out[...] = taken
    out[~inside_r] = np.nan
    out[:, ~inside_c] = np.nan


SCENE_GRID_BAND = "B05"
"""A 20 m band: its product grid, ``max(R, 20)``, is the SCL's (20 m, or 60 m at R = 60)."""
CLEAR_SKY_B10 = 0.005
"""B10 TOA reflectance assumed for items without B10: a clear, moist sky (no cirrus), below
the thin-cirrus threshold (0.012); the cloud detector then decides on the other bands."""


def scene_grid(plan: ReadPlan) -> Grid:
    """The grid SCL and CLD are written on: Sen2Cor's 20 m, or 60 m for a 60 m product."""
    return plan.grids[SCENE_GRID_BAND]


@dataclass
class Decoded:
    """Pass 1's result: the coarse TOA of every input band and each band's DN on scratch."""

    coarse_toa: dict[str, np.ndarray]
    scratch: dict[str, Path]
    scene_toa: np.ndarray | None = None
    """(13, h, w) TOA of :data:`L1C_BANDS` on the scene grid (NaN = invalid), when asked for;
    released once the scene is classified (1.6 GB on a full 20 m tile)."""


def _scratch(folder: Path, band: str) -> Path:
    return folder / f".{band}.dn.u16"


def _decode_job(
    item: dict[str, Any],
    band: str,
    grid: Grid,
    coarse: Grid,
    radiometry: stac_bridge.BandRadiometry,
    env: dict[str, str | int],
    folder: Path,
    scene: tuple[Grid, np.ndarray] | None = None,
    on_strip: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, Path]:
    """One band decoded strip by strip: coarse mean accumulated, DN spilled to scratch, and,
    with *scene* (grid, output slice), the band put on the scene-classification grid."""
    mean = CoarseMean(grid, coarse)
    path = _scratch(folder, band)
    on_scene: SceneMean | None = None
    coarser: list[np.ndarray] = []
    if scene is not None and grid.resolution <= scene[0].resolution:
        on_scene = SceneMean(grid, *scene)
    with rasterio.Env(**env), BandReader(item, band, grid) as reader, path.open("wb") as out:
        for y0 in range(0, grid.height, STRIP_ROWS):
            dn = reader.read(y0, min(grid.height, y0 + STRIP_ROWS))
            toa = to_toa(dn, radiometry)
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
    return mean.mean(), path


def _extra_job(
    item: dict[str, Any],
    band: str,
    coarse: Grid,
    env: dict[str, str | int],
    radiometry: stac_bridge.BandRadiometry,
    scene: tuple[Grid, Grid, np.ndarray] | None,
) -> np.ndarray:
    """An input band that is not a product band (B10), as coarse TOA. With *scene* (its native
    grid, the scene grid, the output slice) it is read at its native 60 m and put on the scene
    grid too; the coarse mean then comes from that read (one decode, not two)."""
    if scene is None:
        return to_toa(read_band(item, band, coarse, env), radiometry)
    native, target, out = scene
    toa = to_toa(read_band(item, band, native, env), radiometry)
    if native.resolution <= target.resolution:
        on_scene = SceneMean(native, target, out)
        on_scene.add(0, toa)
        on_scene.finish()
    else:
        nearest(toa, native, target, out)
    mean = CoarseMean(native, coarse)
    mean.add(0, toa)
    return mean.mean()


def strip_count(plan: ReadPlan) -> int:
    """Strips :func:`decode_bands` decodes: the progress of pass 1."""
    return sum(-(-grid.height // STRIP_ROWS) for grid in plan.grids.values())


def decode_bands(
    item: dict[str, Any],
    plan: ReadPlan,
    radiometry: stac_bridge.BandRadiometry,
    env: dict[str, str | int],
    folder: Path,
    scene: Grid | None = None,
    on_strip: Callable[[str], None] | None = None,
) -> Decoded:
    """Pass 1: decode each product band once; the coarse TOA of every input band comes along.

    Input bands that are not product bands (B10) are read on the coarse grid directly. With
    *scene* (:func:`scene_grid`) every input band is also put on that grid for the scene
    classification, from the same decode: finer bands averaged, coarser ones (60 m under a
    20 m grid) sampled; B10 is then read at its native 60 m. An item without B10 gets
    :data:`CLEAR_SKY_B10` there. *on_strip* is called with the band after each strip
    (:func:`strip_count` of them in all), from the decoding threads.
    """
    coarse_toa: dict[str, np.ndarray] = {}
    scratch: dict[str, Path] = {}
    stack = None
    if scene is not None:
        stack = np.zeros((len(L1C_BANDS), scene.height, scene.width), np.float32)

    def slot(band: str) -> tuple[Grid, np.ndarray] | None:
        return None if stack is None or scene is None else (scene, stack[L1C_BANDS.index(band)])

    with ThreadPoolExecutor(workers(), "decode") as pool:
        jobs = {
            band: pool.submit(
                _decode_job,
                item,
                band,
                plan.grids[band],
                plan.coarse,
                radiometry,
                env,
                folder,
                slot(band),
                on_strip,
            )
            for band in decode_order(plan)
        }
        extra = {}
        for band in plan.inputs:
            if band in plan.grids:
                continue
            target = slot(band)
            # B10 shares the 60 m bands' grid (same tile origin, same snapping).
            native = None if target is None else (plan.grids["B01"], *target)
            extra[band] = pool.submit(_extra_job, item, band, plan.coarse, env, radiometry, native)
        try:
            for band, future in jobs.items():
                coarse_toa[band], scratch[band] = future.result()
            for band, future in extra.items():
                coarse_toa[band] = future.result()
        except BaseException:
            for future in (*jobs.values(), *extra.values()):
                future.cancel()
            raise
    if stack is not None:
        for band in L1C_BANDS:
            if band not in plan.inputs:
                stack[L1C_BANDS.index(band)] = CLEAR_SKY_B10 if band == "B10" else np.nan
    return Decoded(coarse_toa, scratch, stack)


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


@dataclass
class Scene:
    """The scene classification of one product and what follows from it."""

    grid: Grid
    """Where SCL and CLD are written (:func:`scene_grid`)."""
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
    mean = CoarseMean(grid, coarse)
    mean.add(0, masked)
    fraction = mean.mean()
    return np.nan_to_num(fraction, nan=0.0) > EXCLUDE_FRACTION


def classify_scene(decoded: Decoded, plan: ReadPlan, geometry: SceneGeometry | None) -> Scene:
    """Sen2Cor's scene classification on the scene grid, from TOA as Sen2Cor does it (before
    the atmosphere: its clouds must be kept out of the estimate); releases the TOA stack."""
    if decoded.scene_toa is None:
        raise ValueError("decode_bands was not asked for the scene grid")
    grid = scene_grid(plan)
    toa, decoded.scene_toa = decoded.scene_toa, None
    result = classify(
        toa,
        None,
        L1C_BANDS,
        grid.resolution,
        geometry.for_model() if geometry is not None else None,
        sun_azimuth=geometry.sun_azimuth if geometry is not None else None,
    )
    del toa
    # Classifying before the correction is the design here (Sen2Cor's order), not a fallback.
    result.notes = [note for note in result.notes if note != TOA_RULES_NOTE]
    if "B10" not in plan.inputs:
        result.notes.append(
            "no B10: thin cirrus not classified, the cloud detector sees a clear-sky B10"
        )
    return Scene(grid, result, coarse_exclude(result.scl, grid, plan.coarse))


@dataclass(frozen=True)
class Product:
    """Everything the jobs of pass 2 share."""

    plan: ReadPlan
    corrector: SceneCorrector
    state: AtmosphereState
    radiometry: stac_bridge.BandRadiometry
    scratch: dict[str, Path]
    """Each product band's DN on its product grid, raw uint16, row after row."""
    scene: Scene | None = None
    """The scene classification, written as ``SCL_<g>m`` and ``CLD_<g>m`` when present."""


def _gsd(grid: Grid) -> int:
    return round(grid.resolution)


def sampling(written_m: float, source_m: float) -> str:
    """``original`` when written at the source's resolution, else up- or downsampled."""
    if abs(written_m - source_m) < 1e-6:
        return "original"
    return "downsampled" if written_m > source_m else "upsampled"


def correct_rows(
    corrector: SceneCorrector, band: str, toa: np.ndarray, grid: Grid, y0: int, state: Any
) -> np.ndarray:
    """BOA of rows ``y0:y0 + len(toa)`` of *grid* (the corrector works in cache-sized runs of
    rows itself, so a whole strip goes in one call)."""
    return corrector.correct(band, toa, grid.raster().rows(y0, y0 + len(toa)), state)


def correct_strip(product: Product, band: str, dn: np.ndarray, grid: Grid, y0: int) -> np.ndarray:
    """L1C DN of rows ``y0:y0 + len(dn)`` of *band*'s grid -> L2A DN, run by run.

    Each run of rows (:class:`~component.model.correction.BandInversion`) goes from DN to TOA,
    surface and DN while it is in cache: the same functions as :func:`to_toa`,
    :meth:`SceneCorrector.correct` and :func:`reflectance_to_dn` on the whole strip, so the
    same values, without the three full-size float temporaries (per 10 m strip 0.57 s ->
    0.2 s with the inversion's own speed-up).
    """
    inversion = product.corrector.inversion(
        band, grid.raster().rows(y0, y0 + len(dn)), product.state
    )
    out = np.empty(dn.shape, np.uint16)
    for run in inversion.runs:
        toa = to_toa(dn[run.rows], product.radiometry)
        out[run.rows] = reflectance_to_dn(inversion(run, toa, toa))
    return out


def field_strip(
    product: Product, name: str, no_data: np.ndarray, grid: Grid, y0: int
) -> np.ndarray:
    """``"aot"`` or ``"water"`` as written (:func:`atmosphere_to_dn`) on rows ``y0:y0 +
    len(no_data)`` of *grid*, run by run like :func:`correct_strip`."""
    resample = coarse_to_fine(product.state.grid, grid.raster().rows(y0, y0 + len(no_data)))
    wide = resample.wide(resample.take(getattr(product.state, name)))
    out = np.empty(no_data.shape, np.uint16)
    for run in resample.runs():
        values = np.empty((len(run.weights), grid.width), np.float32)
        wide.rows(run.wide_rows, run.weights, values)
        out[run.rows] = atmosphere_to_dn(values, no_data[run.rows])
    return out


def _band_job(product: Product, writer: ProductWriter, band: str) -> Draft:
    """One band, strip by strip; B02 also writes AOT and WVP. Returns the band's draft."""
    plan = product.plan
    grid = plan.grids[band]
    key = f"{band}_{_gsd(grid)}m"
    draft = writer.open(
        key, grid, "reflectance", (band,), sampling(grid.resolution, NATIVE_RESOLUTION[band])
    )
    extras: list[tuple[str, Draft]] = []
    if band == "B02":  # B02 is always on the --resolution grid: AOT and WVP go with it
        source_m = plan.coarse.resolution
        for name, kind in (("aot", "aot"), ("water", "wvp")):
            key = f"{kind.upper()}_{_gsd(grid)}m"
            sampled = sampling(grid.resolution, source_m)
            extras.append((name, writer.open(key, grid, kind, (kind.upper(),), sampled)))
    scratch = product.scratch[band]
    with scratch.open("rb") as source:
        for y0 in range(0, grid.height, STRIP_ROWS):
            y1 = min(grid.height, y0 + STRIP_ROWS)
            dn = np.fromfile(source, np.uint16, (y1 - y0) * grid.width)
            dn = dn.reshape(y1 - y0, grid.width)
            draft.write(y0, correct_strip(product, band, dn, grid, y0))
            if extras:
                no_data = dn == stac_bridge.NODATA_DN
                for name, extra in extras:
                    extra.write(y0, field_strip(product, name, no_data, grid, y0))
    scratch.unlink()
    for _, extra in extras:
        writer.finish_later(extra)
    draft.close()
    return draft


def _scene_job(writer: ProductWriter, scene: Scene) -> Draft | None:
    """SCL (Sen2Cor class values) and CLD (cloud probability, %) on the scene grid."""
    gsd = _gsd(scene.grid)
    result = scene.classification
    for kind, values in (("scl", result.scl), ("cld", cloud_dn(result))):
        draft = writer.open(f"{kind.upper()}_{gsd}m", scene.grid, kind, (kind.upper(),))
        for y0 in range(0, scene.grid.height, STRIP_ROWS):
            draft.write(y0, values[y0 : y0 + STRIP_ROWS])
        writer.finish_later(draft)
    return None


def cloud_dn(result: SceneClassification) -> np.ndarray:
    """The cloud probability as written: 0-100 %, :data:`CLOUD_NODATA` where SCL has no data
    (0 % is a valid probability, so nodata cannot be 0 as in the other files)."""
    return np.where(result.scl == SceneClass.NO_DATA, CLOUD_NODATA, result.cloud_probability)


def _tci_job(writer: ProductWriter, grid: Grid, drafts: dict[str, Draft]) -> Draft:
    """The RGB quicklook from the written B04, B03, B02 (their DN, through a lookup table)."""
    tci = writer.open(f"TCI_{_gsd(grid)}m", grid, "visual", RGB, sampling(grid.resolution, 10))
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(rasterio.open(drafts[band].path)) for band in RGB]
        for y0 in range(0, grid.height, STRIP_ROWS):
            window = Window(0, y0, grid.width, min(STRIP_ROWS, grid.height - y0))
            tci.write(y0, quicklook_from_dn([source.read(1, window=window) for source in sources]))
    return tci


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
    instead of one large band running alone (at 60 m the RGB-first order left a core idle for
    the last 1.1 s of the decode)."""
    return sorted(plan.grids, key=lambda band: (-decode_pixels(plan, band), band))


def job_order(plan: ReadPlan) -> list[str]:
    """Bands by decreasing cost (pixels to decode and correct), RGB first for the TCI."""
    pixels = {band: grid.width * grid.height for band, grid in plan.grids.items()}
    rank = {band: i for i, band in enumerate(("B02", "B03", "B04"))}
    return sorted(plan.grids, key=lambda b: (b not in rank, -pixels[b], rank.get(b, 0), b))


def workers() -> int:
    """Band jobs at once: one more than the cores (one job waits on I/O), within the S3 budget
    (each decoding job holds one connection)."""
    return max(1, min(max_connections(), (os.cpu_count() or 1) + 1))


def write_product(
    product: Product, writer: ProductWriter, on_band: Callable[[str], None] | None = None
) -> None:
    """Pass 2: every band job (and the TCI job); each finished draft goes to *writer*.

    Jobs are started one at a time as threads free up (:func:`job_order`), so the TCI job
    starts as soon as B04, B03 and B02 are drafted rather than after every band; those three
    drafts go to the writer once the TCI job has read them (a draft being read must not get
    its overviews meanwhile, and GDAL's COG driver building them itself costs 3.5 times as
    much). Returns when every raster is drafted; the COG conversions may still be running in
    the writer's pool (:meth:`ProductWriter.finish` waits for them). The first failing job
    stops the others and its error is raised.
    """
    queue: deque[tuple[str, Callable[[], Draft | None]]] = deque(
        (band, functools.partial(_band_job, product, writer, band))
        for band in job_order(product.plan)
    )
    if product.scene is not None:
        queue.append(("SCL", functools.partial(_scene_job, writer, product.scene)))
    rgb_drafts: dict[str, Draft] = {}
    threads = workers()
    with ThreadPoolExecutor(threads, "band") as pool:
        running: dict[Future[Draft | None], str] = {}

        def start() -> None:
            while queue and len(running) < threads:
                name, job = queue.popleft()
                running[pool.submit(job)] = name

        try:
            start()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    draft = future.result()
                    if on_band is not None:
                        on_band(name)
                    if name in RGB and draft is not None:
                        rgb_drafts[name] = draft  # finished once the TCI job has read it
                        if len(rgb_drafts) == len(RGB):
                            grid = product.plan.grids["B02"]
                            tci = functools.partial(_tci_job, writer, grid, dict(rgb_drafts))
                            queue.appendleft(("TCI", tci))
                        continue
                    if draft is not None:  # the scene job finishes its own drafts
                        writer.finish_later(draft)
                    if name == "TCI":
                        for band in RGB:
                            writer.finish_later(rgb_drafts[band])
                start()
        except BaseException:
            queue.clear()
            for future in running:
                future.cancel()
            raise
