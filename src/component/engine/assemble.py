"""Pass 2: every raster of the product drafted, strip by strip, by jobs in parallel threads.

A *job* per band reads its DN back from pass 1's scratch file and corrects it a window at a
time (:func:`~component.engine.correct.correct_window`); B02's job also writes AOT and WVP on
the ``--resolution`` grid (the L1C's no-data there is B02's); the scene job writes SCL and
CLD; once B04, B03 and B02 are drafted, a TCI job makes the RGB quicklook from their drafts'
DN through a lookup table; with a super-resolver (``--super-resolve``), once the 10 m, 20 m
and 60 m bands are drafted a job sharpens the 20 m and 60 m bands to 10 m, strip by strip
(:mod:`component.engine.sharpen`). Each job returns the drafts it made;
:func:`write_product` alone hands them to the writer, which makes COGs of them in its own
threads while other jobs are still correcting (a draft another job reads once every job that
reads it is done).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from component.core.bands import NATIVE_RESOLUTION, RGB
from component.core.grid import Grid
from component.core.settings import Settings
from component.engine import sharpen
from component.engine.correct import correct_window, field_window
from component.engine.scene import Scene
from component.engine.schedule import Job, run_jobs, workers
from component.io.l1c import NODATA_DN, BandRadiometry
from component.io.load import STRIP_ROWS, ReadPlan
from component.io.write import CLOUD_NODATA, Draft, DraftRows, ProductWriter, quicklook_from_dn
from component.model.correction import AtmosphereState, SceneCorrector
from component.model.scene_classification import SceneClass, SceneClassification

if TYPE_CHECKING:
    from component.model.super_resolution import SuperResolver

TCI = "TCI"
SCENE = "SCL"


@dataclass(frozen=True)
class Product:
    """Everything the jobs of pass 2 share."""

    plan: ReadPlan
    corrector: SceneCorrector
    state: AtmosphereState
    radiometry: BandRadiometry
    scratch: dict[str, Path]
    """Each product band's DN on its product grid, raw uint16, row after row."""
    scene: Scene | None = None
    """The scene classification, written as ``SCL_<g>m`` and ``CLD_<g>m`` when present."""
    resolver: SuperResolver | None = None
    """With one (``--super-resolve``, a 10 m product), the 20 m and 60 m bands are also
    written sharpened onto the 10 m grid, ``<band>_10m``."""


def _gsd(grid: Grid) -> int:
    return round(grid.resolution)


def sampling(written_m: float, source_m: float) -> str:
    """``original`` when written at the source's resolution, else up- or downsampled."""
    if abs(written_m - source_m) < 1e-6:
        return "original"
    return "downsampled" if written_m > source_m else "upsampled"


def _band_job(product: Product, writer: ProductWriter, band: str) -> list[Draft]:
    """One band, strip by strip; B02 also writes AOT and WVP."""
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
            corrected = correct_window(
                product.corrector, product.state, band, grid, y0, dn, product.radiometry
            )
            draft.write(y0, corrected)
            if extras:
                no_data = dn == NODATA_DN
                for name, extra in extras:
                    extra.write(y0, field_window(product.state, name, grid, y0, no_data, True))
    scratch.unlink()
    return [draft, *(extra for _, extra in extras)]


def cloud_dn(result: SceneClassification) -> np.ndarray:
    """The cloud probability as written: 0-100 %, :data:`CLOUD_NODATA` where SCL has no data
    (0 % is a valid probability, so nodata cannot be 0 as in the other files)."""
    return np.where(result.scl == SceneClass.NO_DATA, CLOUD_NODATA, result.cloud_probability)


def _scene_job(writer: ProductWriter, scene: Scene) -> list[Draft]:
    """SCL (Sen2Cor class values) and CLD (cloud probability, %) on the scene grid."""
    gsd = _gsd(scene.grid)
    result = scene.classification
    drafts = []
    for kind, values in (("scl", result.scl), ("cld", cloud_dn(result))):
        draft = writer.open(f"{kind.upper()}_{gsd}m", scene.grid, kind, (kind.upper(),))
        for y0 in range(0, scene.grid.height, STRIP_ROWS):
            draft.write(y0, values[y0 : y0 + STRIP_ROWS])
        drafts.append(draft)
    return drafts


def _key(plan: ReadPlan, band: str) -> str:
    return f"{band}_{_gsd(plan.grids[band])}m"


def _tci_job(writer: ProductWriter, plan: ReadPlan, drafts: dict[str, Draft]) -> list[Draft]:
    """The RGB quicklook from the drafted B04, B03, B02 (their DN, through a lookup table)."""
    grid = plan.grids["B02"]
    tci = writer.open(f"TCI_{_gsd(grid)}m", grid, "visual", RGB, sampling(grid.resolution, 10))
    with DraftRows([drafts[_key(plan, band)] for band in RGB]) as rgb:
        for y0 in range(0, grid.height, STRIP_ROWS):
            tci.write(y0, quicklook_from_dn(rgb.read(y0, min(grid.height, y0 + STRIP_ROWS))))
    return [tci]


@dataclass(frozen=True)
class Follower:
    """A job that reads other jobs' drafts: it starts once they are all complete, and they
    reach the writer once every follower that reads them is done."""

    name: str
    needs: tuple[str, ...]
    """Keys of the drafts it reads."""
    job: Callable[[dict[str, Draft]], list[Draft]]
    """Given those drafts by key, makes its own and returns them."""


def followers(product: Product, writer: ProductWriter, threads: int = 1) -> list[Follower]:
    """The TCI job and, with a super-resolver, the sharpening job (on *threads* threads), in
    :func:`job_names` order."""
    plan = product.plan
    rgb = tuple(_key(plan, band) for band in RGB)
    out = [Follower(TCI, rgb, functools.partial(_tci_job, writer, plan))]
    if product.resolver is not None:
        job = functools.partial(
            sharpen.sharpen_job, writer, plan, product.resolver, threads=threads
        )
        out.append(Follower(sharpen.JOB, sharpen.needs(plan), job))
    return out


def job_order(plan: ReadPlan) -> list[str]:
    """Bands by decreasing cost (pixels to decode and correct), RGB first for the TCI."""
    pixels = {band: grid.width * grid.height for band, grid in plan.grids.items()}
    rank = {band: i for i, band in enumerate(("B02", "B03", "B04"))}
    return sorted(plan.grids, key=lambda b: (b not in rank, -pixels[b], rank.get(b, 0), b))


def job_names(plan: ReadPlan, with_scene: bool, sharpened: bool = False) -> list[str]:
    """Every job of :func:`write_product`, in start order but the TCI's and the sharpening
    one's (*sharpened*: with a super-resolver), which start once the drafts they read are
    complete: the progress of pass 2 counts them."""
    sharpening = [sharpen.JOB] if sharpened else []
    return [*job_order(plan), *([SCENE] if with_scene else []), TCI, *sharpening]


def write_product(
    product: Product,
    writer: ProductWriter,
    settings: Settings,
    on_job: Callable[[str], None] | None = None,
) -> None:
    """Pass 2: every job of :func:`job_names`; the drafts each returns go to *writer*.

    Jobs start one at a time as threads free up, so a job that reads other jobs' drafts (a
    :class:`Follower`: the TCI job, the sharpening one) starts as soon as they are complete
    (the TCI job once B04, B03 and B02 are drafted) rather than after every band; the drafts
    it reads go to the writer once every follower reading them is done (a draft being read
    must not get its overviews meanwhile, and GDAL's COG driver building them itself costs
    3.5 times as much). Returns when every raster is drafted; the COGs may still be in the
    making (:meth:`ProductWriter.finish` waits for them). *on_job(name)* is called after each
    job (progress).
    """
    queue: deque[Job[list[Draft]]] = deque(
        (band, functools.partial(_band_job, product, writer, band))
        for band in job_order(product.plan)
    )
    if product.scene is not None:
        queue.append((SCENE, functools.partial(_scene_job, writer, product.scene)))
    waiting = {follower.name: follower for follower in followers(product, writer, settings.threads)}
    unfinished = {follower.name: follower for follower in waiting.values()}
    complete: dict[str, Draft] = {}  # every draft made so far, by key
    held: dict[str, Draft] = {}  # those a follower still has to read

    def done(name: str, drafts: list[Draft]) -> None:
        unfinished.pop(name, None)
        for draft in drafts:
            draft.close()  # complete: a follower may read it
            complete[draft.asset.key] = draft
        for follower in list(waiting.values()):
            if all(key in complete for key in follower.needs):
                del waiting[follower.name]
                inputs = {key: complete[key] for key in follower.needs}
                queue.appendleft((follower.name, functools.partial(follower.job, inputs)))
        needed = {key for follower in unfinished.values() for key in follower.needs}
        held.update((draft.asset.key, draft) for draft in drafts)
        for key in [key for key in held if key not in needed]:
            writer.finish_later(held.pop(key))
        if on_job is not None:
            on_job(name)

    run_jobs(queue, workers(settings), done)
