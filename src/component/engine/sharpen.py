"""Every band at 10 m (``--super-resolve``): the 20 m and 60 m bands sharpened onto the 10 m grid.

One job of pass 2, started once the drafts it reads are complete
(:func:`component.engine.assemble.write_product` holds them until then): strip by strip,
:func:`sharpen_strip` sharpens the six 20 m bands (B05, B06, B07, B8A, B11, B12) by 2, guided
by the corrected 10 m bands (B02, B03, B04, B08), then B01 and B09 by 6, guided by the 10 m
bands followed by the six it has just sharpened (:data:`~component.model.super_resolution.
BANDS_20M` order), as the product holds them (quantized to its DN). The Python API's
:func:`component.super_resolve` runs the same function on the same strips.

Everything works on one lattice: the 10 m pixels of the 60 m grid (:func:`lattice`), so that
every strip starts on a 60 m pixel edge (a multiple of 6 rows) and every coarse pixel is a
whole ``factor x factor`` block of it. A strip of :data:`ROWS` rows is read with a halo of
:data:`HALO` rows each side (the resolver sees the neighbourhood of its edge pixels),
sharpened by the :class:`~component.model.super_resolution.SuperResolver`, made
:func:`~component.model.super_resolution.consistent` with the native band (each 10 m block
averages back to its coarse pixel), cropped to its own rows of the 10 m product grid and
written as ``<band>_10m`` in the bands' DN convention. Memory is a strip's, never the tile's.
Where the lattice reaches past a draft's grid (a ``--bbox`` window whose edge is not on a 60 m
pixel edge: at most 5 px at 10 m) the draft's edge pixels are repeated.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine

from component.core.grid import Grid
from component.io.load import ReadPlan
from component.io.write import Draft, DraftRows, ProductWriter, dn_to_reflectance, reflectance_to_dn

if TYPE_CHECKING:
    from component.model.super_resolution import SuperResolver

JOB = "sharpen"
"""The job's name (progress, :func:`component.engine.assemble.job_names`)."""

HALO = 60
"""Rows (and, at the lattice's edge, nothing: the image ends there) read at 10 m above and
below each strip for the resolver: a multiple of 6, whole 60 m pixels."""
ROWS = 600
"""Rows at 10 m per strip, a multiple of 6: strips start on 60 m pixel edges."""
FINE_M = 10


@functools.cache
def band_sets() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The guide's bands, the bands sharpened by 2, those sharpened by 6;
    model/super_resolution.py (scipy.ndimage: 0.2 s) is imported by a run that sharpens only."""
    from component.model.super_resolution import BANDS_20M, BANDS_60M, GUIDE_BANDS

    return GUIDE_BANDS, BANDS_20M, BANDS_60M


def sharpened_key(band: str) -> str:
    return f"{band}_{FINE_M}m"


def native_key(band: str, plan: ReadPlan) -> str:
    """The key of a band's draft on its product grid (``B05_20m``)."""
    return f"{band}_{round(plan.grids[band].resolution)}m"


def draft_groups(plan: ReadPlan) -> tuple[tuple[str, ...], ...]:
    """The keys of the drafts the job reads, by group: the guide's, the 20 m bands', the 60 m
    bands'."""
    return tuple(tuple(native_key(band, plan) for band in group) for group in band_sets())


def needs(plan: ReadPlan) -> tuple[str, ...]:
    """The keys of the drafts the job reads (:func:`draft_groups`, one after the other)."""
    return tuple(key for group in draft_groups(plan) for key in group)


def outputs() -> tuple[str, ...]:
    """The bands the job writes at 10 m, in the order :func:`sharpen_strip` returns them."""
    _, by_2, by_6 = band_sets()
    return (*by_2, *by_6)


def check_plan(plan: ReadPlan) -> None:
    """Sharpening needs the product at 10 m (``--resolution 10``)."""
    if round(plan.grid_r.resolution) != FINE_M:
        raise ValueError(f"bands are sharpened onto a 10 m grid, not {plan.grid_r.resolution} m")


def lattice(plan: ReadPlan, factor: int = 1) -> Grid:
    """The 60 m grid (B01's, which covers every band's window) in pixels of ``factor * 10``
    m: the 10 m lattice every strip is cut from (factor 1), or a coarse band's (2, 6)."""
    grid = plan.grids["B01"]
    k = round(grid.resolution) // (FINE_M * factor)
    t = grid.transform
    transform = Affine(FINE_M * factor, 0.0, t.c, 0.0, -FINE_M * factor, t.f)
    return Grid(grid.epsg, transform, grid.width * k, grid.height * k)


def _offset(grid: Grid, frame: Grid) -> tuple[int, int]:
    """Rows and columns from *frame*'s origin to *grid*'s (same pixel size, same lattice)."""
    res = frame.resolution
    return round((frame.transform.f - grid.transform.f) / res), round(
        (grid.transform.c - frame.transform.c) / res
    )


def read_padded(rows: DraftRows, frame: Grid, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of *frame*, every column, as reflectance (n, stop - start, width):
    the drafts' pixels where *frame* lies on their grid, their nearest edge pixel elsewhere."""
    dy, dx = _offset(rows.grid, frame)
    wanted = np.clip(np.arange(start, stop) - dy, 0, rows.grid.height - 1)
    columns = np.clip(np.arange(frame.width) - dx, 0, rows.grid.width - 1)
    low, high = int(wanted[0]), int(wanted[-1]) + 1
    read = rows.read(low, high)
    out = np.empty((len(read), stop - start, frame.width), np.float32)
    # Inside the drafts (every strip of a whole tile) the rows and columns are slices;
    # only at a window's edge are pixels repeated.
    inside = high - low == stop - start and dx == 0 and frame.width <= rows.grid.width
    for band, plane in zip(read, out, strict=True):
        dn = band[:, : frame.width] if inside else band[wanted - low][:, columns]
        dn_to_reflectance(dn, out=plane)
    return out


def strips(plan: ReadPlan) -> Iterator[tuple[int, int, int, int]]:
    """``(window_start, window_stop, out_start, out_stop)`` in rows of :func:`lattice`: each
    strip's window (the strip and its halo, within the lattice) and its rows of the 10 m
    product grid; every bound a multiple of 6 but the product's own edges."""
    frame = lattice(plan)
    top, _ = _offset(plan.grid_r, frame)
    bottom = top + plan.grid_r.height
    for start in range(top - top % 6, bottom, ROWS):
        stop = min(start + ROWS, frame.height)
        window = (max(0, start - HALO), min(frame.height, stop + HALO))
        yield (*window, max(start, top), min(stop, bottom))


def sharpen_window(
    resolver: SuperResolver, guide: np.ndarray, coarse: np.ndarray, factor: int
) -> np.ndarray:
    """*coarse* (n, h, w) sharpened by *resolver* with *guide* (k, h * factor, w * factor),
    then made :func:`~component.model.super_resolution.consistent` with it."""
    from component.model.super_resolution import consistent

    return consistent(resolver(guide, coarse, factor), coarse, factor)


def sharpen_strip(
    resolver: SuperResolver, guide: np.ndarray, twenty: np.ndarray, sixty: np.ndarray
) -> np.ndarray:
    """The kernel the product's job and :func:`component.super_resolve` share: (8, H, W)
    reflectance, the bands of :func:`outputs`, from the 10 m *guide* (4, H, W), the 20 m bands
    (6, H / 2, W / 2) and the 60 m bands (2, H / 6, W / 6) of one strip. The 20 m bands come
    back quantized to the product's DN (as written, and as the 60 m bands' guide sees them)."""
    sharp20 = dn_to_reflectance(reflectance_to_dn(sharpen_window(resolver, guide, twenty, 2)))
    sharp60 = sharpen_window(resolver, np.concatenate([guide, sharp20]), sixty, 6)
    return np.concatenate([sharp20, sharp60])


def sharpen_job(
    writer: ProductWriter,
    plan: ReadPlan,
    resolver: SuperResolver,
    drafts: dict[str, Draft],
    threads: int = 1,
) -> list[Draft]:
    """The eight bands of :func:`outputs` on the 10 m product grid (``<band>_10m``), strip by
    strip, from the complete *drafts* (by key: :func:`needs`), on *threads* threads: each
    takes every *threads*-th strip with readers of its own (the resolver's arithmetic and ONNX
    Runtime release the GIL; a resolver whose graphs run on one thread each fits this best);
    the outputs are written one strip at a time."""
    check_plan(plan)
    fine = plan.grid_r
    frames = [lattice(plan, factor) for factor in (1, 2, 6)]
    top, left = _offset(fine, frames[0])
    written = [
        writer.open(sharpened_key(band), fine, "reflectance", (band,), "upsampled", resolver.name)
        for band in outputs()
    ]
    groups = draft_groups(plan)
    writing = threading.Lock()  # a GDAL dataset is written by one thread at a time

    def work(part: list[tuple[int, int, int, int]]) -> None:
        with ExitStack() as stack:
            readers = [
                stack.enter_context(DraftRows([drafts[key] for key in group])) for group in groups
            ]
            for start, stop, out_start, out_stop in part:
                guide, twenty, sixty = (
                    read_padded(reader, frame, start // factor, stop // factor)
                    for reader, frame, factor in zip(readers, frames, (1, 2, 6), strict=True)
                )
                sharp = sharpen_strip(resolver, guide, twenty, sixty)
                del guide, twenty, sixty
                rows = slice(out_start - start, out_stop - start)
                dn = [reflectance_to_dn(band) for band in sharp[:, rows, left : left + fine.width]]
                del sharp
                with writing:
                    for draft, band in zip(written, dn, strict=True):
                        draft.write(out_start - top, band)

    every = list(strips(plan))
    parts = [every[i :: max(1, threads)] for i in range(max(1, threads))]
    with ThreadPoolExecutor(len(parts), "sharpen") as pool:
        for done in [pool.submit(work, part) for part in parts if part]:
            done.result()
    return written
