"""One run: find L1C items, then for each: load -> estimate -> correct -> write -> describe
-> publish.

Each input is processed on its own; with several inputs a failed one is reported and the
others go on (a scheduled run should not lose a day's work to one corrupt granule). A
product that is already published for the same input and model version, and whose files
still match their checksums, is skipped: the output catalog is the run's only state.

For one item: its 13 bands are read on the coarse grid of the atmosphere (JPEG 2000
reduced-resolution levels: cheap), with its sun/view geometry; the corrector estimates the
atmosphere there, with the clouds, their shadows and snow left out: the scene classification
(SCL, cloud probability) is made first, from the same decode, on its 20 m (or 60 m) grid; then
every L2A band is read, corrected and written on its own product grid
(:mod:`component.engine`), with the quicklook, AOT, WVP, SCL and CLD; the Item describes it
all.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import re
import tarfile
import time
import uuid
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from component.core.background import in_background
from component.core.files import sha256_file
from component.core.settings import Settings
from component.distribute import process_many
from component.engine.assemble import Product, job_names, write_product
from component.engine.decode import decode_bands, scene_grid, strip_count
from component.engine.scene import classify_scene, estimate_atmosphere, has_valid_pixel
from component.errors import ComponentError, ModelError, OutputError, PartialFailureError
from component.io import (
    catalog,
    elevation,
    geometry,
    l1c,
    load,
    meteorology,
    output_faults,
    search,
)
from component.io.describe import describe, lineage, output_id
from component.io.write import ProductWriter
from component.model import scene_clouds
from component.model.card import ModelCard, load_card, models_dir
from component.model.correction import SceneCorrector
from component.model.engines import build_scene_corrector
from component.params import RunParams
from component.progress import OFF, Progress
from component.sample import item_path as sample_item_path

if TYPE_CHECKING:
    from component.model.super_resolution import SuperResolver

log = logging.getLogger(__name__)


@dataclass
class ItemResult:
    """What happened to one input."""

    input_id: str
    output_id: str
    status: str  # "processed", "skipped" or "failed"
    reason: str = ""
    exit_code: int = 0
    item: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Fallbacks taken (no geometry, no B10...): also in the product's processing:lineage."""
    elevation: str = ""
    """The elevation the physics used: its source and range (as in the lineage)."""
    meteorology: str = ""
    """The product's forecasts the physics used (as in the lineage); empty: none."""


@dataclass
class RunSummary:
    """The JSON summary a run prints and writes beside its catalog."""

    found: int = 0
    processed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    results: list[ItemResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "found": self.found,
            "processed": self.processed,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": self.seconds,
            "items": [asdict(result) for result in self.results],
        }


class Model:
    """The model's identity, known at once, and its corrector, built in the background.

    Output ids, the skip check and lineage need only the card; building the corrector
    (checking the table and weights, creating a runtime session) overlaps with reading the
    first item's headers instead of preceding it. A missing or tampered file surfaces as
    :class:`ModelError` (exit code 8) when the corrector is first needed.
    """

    def __init__(
        self,
        card: ModelCard,
        name: str,
        version: str,
        files: dict[str, str],
        building: Future[tuple[SceneCorrector, str]],
        resolver: SuperResolver | None = None,
    ) -> None:
        self.card, self.name, self.version, self.files = card, name, version, files
        self._building = building
        self.resolver = resolver
        """``--super-resolve``'s method; None: no band is sharpened."""

    @property
    def corrector(self) -> SceneCorrector:
        return self._building.result()[0]

    @property
    def runtime(self) -> str:
        return self._building.result()[1]


CIRRUS_VARIANT = "-cirrus"
"""Appended to the model version (so to the output id) of products corrected for cirrus."""
SUPER_RESOLVED_VARIANT = "-sr-{method}"
"""Appended (after the cirrus variant) to the model version, so to the output id, of products
with the bands sharpened to 10 m, naming the method: a product made without them, or by
another method, is never taken for one made with them."""


def super_resolved_variant(resolver: SuperResolver) -> str:
    """:data:`SUPER_RESOLVED_VARIANT` for *resolver* (its name made fit for a folder name)."""
    method = re.sub(r"[^A-Za-z0-9.]+", "-", resolver.name).strip("-").lower() or "method"
    return SUPER_RESOLVED_VARIANT.format(method=method)


def load_model(params: RunParams) -> Model:
    card = load_card()
    scene_clouds.preload()  # the cloud detector loads while the run searches and decodes
    # scipy.ndimage (angle grids, smoothing, shadows) is imported where it is used, not with
    # the modules, and here, in the background: 0.2-0.3 s off the start-up.
    in_background(importlib.import_module, "scipy.ndimage")
    building = in_background(
        build_scene_corrector,
        card,
        params.weights,
        params.device,
        params.engine,
        params.settings.engine_threads,
        params.cirrus_correction,
    )
    files = {"atmosphere table": card.lut_sha256 or ""}
    # A product corrected for cirrus, or with sharpened bands, differs from the default one:
    # its id says so.
    variant = CIRRUS_VARIANT if params.cirrus_correction else ""
    resolver = None
    if params.super_resolve:
        # the card's method, its files checked (exit 8); scipy only for a run that sharpens
        from component.model.super_resolution import load_super_resolver

        # One thread per graph call: the sharpening job runs a strip per core at once (two
        # strips on two cores: 11.4 s against 12.8 s with two ONNX threads each)
        resolver = load_super_resolver(card, threads=1)
        variant += super_resolved_variant(resolver)
    if params.weights is None:
        if card.weights_sha256:
            files["weights"] = card.weights_sha256
        return Model(card, card.name, card.version + variant, files, building, resolver)
    # A user's own weights (e.g. ESA's .pth) must never be mistaken for the shipped model's
    # products: their checksum goes into the version, hence into the output ids.
    digest = sha256_file(Path(params.weights))
    files["weights"] = digest
    version = f"custom.{digest[:12]}{variant}"
    return Model(card, card.name, version, files, building, resolver)


_worker_models: dict[tuple[object, ...], Model] = {}
"""Per Dask worker process: loading weights and building a session once, not once per item."""


def process_on_worker(
    source: search.InputItem, params: RunParams, threads: int | None, connections: int | None
) -> ItemResult:
    """The Dask task: one item, processed and published exactly as in a single-item run.

    The worker process is an edge too: its settings (the S3 keys included, which never travel
    inside a task) are read from its own environment, with the cores and connections this run
    gave it (*threads*, *connections*; ``None``: the worker's own settings)."""
    settings = Settings.from_environ()
    if threads:
        settings = dataclasses.replace(settings, engine_threads=threads)
    if connections:
        settings = dataclasses.replace(settings, max_connections=connections)
    params = dataclasses.replace(params, settings=settings)
    key = (params.weights, params.device, params.engine, params.cirrus_correction)
    key += (params.super_resolve,)
    key += (str(models_dir()),)
    if key not in _worker_models:
        _worker_models[key] = load_model(params)
    return process(source, _worker_models[key], params)


def find_inputs(params: RunParams) -> list[search.InputItem]:
    """Items named on the command line, else a search, else the embedded sample."""
    if params.items:
        return [
            item for source in params.items for item in search.read_items(source, params.settings)
        ]
    if params.search is not None:
        return search.search(params.search, params.settings)
    log.info("no input given: processing the embedded sample")
    return [search.read_item(str(sample_item_path()))]


def run(params: RunParams) -> RunSummary:
    """The whole job; raises the item's own error when the only input fails.

    A fault of the output's environment (no space left, a read-only mount, no permission:
    :mod:`component.io.output_faults`) stops the run at once, however many items it has:
    it would fail every one of them alike. It raises :class:`OutputError` (exit code 9, one
    line); the items not done are listed as failed, "not processed", nothing staged is left,
    and ``catalog.json`` keeps linking what was published before.
    """
    started = time.perf_counter()
    output_faults.check_output(params.output)  # a file, a read-only mount: before any work
    summary = RunSummary()
    inputs = find_inputs(params)
    summary.found = len(inputs)
    summary.seconds["search"] = round(time.perf_counter() - started, 3)
    # The lock comes before the model so that a run refused by it costs nothing.
    with catalog.locked(params.output, params.settings.lock_timeout_s):
        try:
            catalog.clear_staging(params.output)
            catalog.rebuild(params.output)  # links what a run killed before its update published

            def record(source: search.InputItem, outcome: ItemResult | BaseException) -> None:
                if isinstance(outcome, BaseException):
                    fault = output_faults.environment_fault(outcome, params.output)
                    reason = str(fault) if fault is not None else (
                        f"worker failed ({type(outcome).__name__}: {str(outcome)[:200]})"
                    )  # fmt: skip
                    code = fault.exit_code if fault is not None else 1
                    outcome = ItemResult(source.id, "", "failed", reason, code)
                summary.results.append(outcome)
                if outcome.status == "processed":
                    summary.processed.append(outcome.output_id)
                    catalog.rebuild(params.output)  # a run killed later keeps this product
                elif outcome.status == "skipped":
                    summary.skipped.append({"id": outcome.output_id, "reason": outcome.reason})
                else:
                    summary.failed.append({"id": source.id, "reason": outcome.reason})
                    if outcome.exit_code == OutputError.exit_code:
                        raise OutputError(outcome.reason)  # stops the run (and its workers)

            if params.dask_scheduler or len(inputs) > 1:
                process_many(inputs, params, process_on_worker, record)
            else:
                model = load_model(params)
                display = Progress(params.progress, interval=params.settings.progress_interval_s)
                for index, source in enumerate(inputs, 1):
                    record(source, process(source, model, params, display, (index, len(inputs))))
            catalog.rebuild(params.output)
            summary.seconds["total"] = round(time.perf_counter() - started, 3)
            catalog.write_json_atomic(params.output / "run-summary.json", summary.to_dict())
            if params.archive is not None:
                write_archive(params.output, params.archive)
        except Exception as error:
            fault = output_faults.environment_fault(error, params.output)
            if fault is None:
                raise
            _stop(params, inputs, summary, fault, started)
            raise fault from None
    if summary.failed:
        failures = [r for r in summary.results if r.status == "failed"]
        broken_model = next((r for r in failures if r.exit_code == ModelError.exit_code), None)
        if len(inputs) == 1 or broken_model is not None:
            # A broken model fails every item: the run's error is the model's (exit 8).
            error = _reraise(broken_model or failures[0])
        else:
            error = PartialFailureError(
                f"{len(failures)} of {len(inputs)} item(s) failed (see run-summary.json in "
                f"{params.output}): {failures[0].input_id}: {failures[0].reason}"
            )
        error.summary = summary.to_dict()
        raise error
    return summary


def _stop(
    params: RunParams,
    inputs: list[search.InputItem],
    summary: RunSummary,
    fault: OutputError,
    started: float,
) -> None:
    """A run stopped by *fault*: the items not done listed, staging cleared, the catalog and
    the summary written if the output now lets them be (best effort: *fault* is the error)."""
    done = {result.input_id for result in summary.results}
    for source in inputs:
        if source.id not in done:
            reason = "not processed: the run stopped at a fault of its output (exit code 9)"
            summary.results.append(ItemResult(source.id, "", "failed", reason, fault.exit_code))
            summary.failed.append({"id": source.id, "reason": reason})
    summary.seconds["total"] = round(time.perf_counter() - started, 3)
    fault.summary = summary.to_dict()
    if not params.dask_scheduler:  # every worker of this run is gone: what it staged is junk
        catalog.clear_staging(params.output)
    try:
        catalog.rebuild(params.output)
        catalog.write_json_atomic(params.output / "run-summary.json", fault.summary)
    except Exception as error:
        if output_faults.environment_fault(error, params.output) is None:
            raise
        log.info("run-summary.json not written (the summary is on stdout): %s", error)


def _reraise(result: ItemResult) -> ComponentError:
    error = ComponentError(result.reason)
    error.exit_code = result.exit_code
    return error


def process(
    source: search.InputItem,
    model: Model,
    params: RunParams,
    display: Progress = OFF,
    position: tuple[int, int] = (1, 1),
) -> ItemResult:
    """One input -> one published product (or a stated reason why not).

    *display* shows the item's progress as item *position* (index, count) of the run.
    """
    out_id = output_id(source.id, model.name, model.version)
    result = ItemResult(input_id=source.id, output_id=out_id, status="processed")
    problem = catalog.verify_product(params.output, out_id)
    if problem is None:
        result.status, result.reason = "skipped", "already published, checksums verified"
        result.item = str(catalog.item_path(params.output, out_id))
        log.info("%s: %s", out_id, result.reason)
        return result
    too_cloudy = _too_cloudy(source, params)
    if too_cloudy:
        result.status, result.reason = "skipped", too_cloudy
        log.warning("%s: skipped: %s", source.id, too_cloudy)
        return result
    if problem != "absent":
        log.warning("%s: republishing: the published product is invalid (%s)", out_id, problem)
    try:
        staged = catalog.new_staging_folder(params.output, out_id)
    except OSError as error:
        fault = output_faults.environment_fault(error, params.output)
        if fault is None:
            raise
        return _failed(source, result, fault)
    catalog.pause_point("staged")
    try:
        published = _produce(source, model, params, out_id, staged, result, display, position)
    except ComponentError as error:
        catalog.discard(staged)
        return _failed(source, result, error)
    except Exception as error:  # one item's bug must not lose the other items
        # A full disk, a read-only mount...: named, not a bug (judged before the discard
        # frees the space a GDAL "Write failed" is judged by).
        fault = output_faults.environment_fault(error, params.output)
        catalog.discard(staged)
        if fault is not None:
            log.debug("%s: %s", source.id, fault, exc_info=error)
            return _failed(source, result, fault)
        reason = f"internal error ({type(error).__name__}: {str(error)[:200]})"
        result.status, result.reason, result.exit_code = "failed", reason, 1
        log.exception("%s: %s", source.id, reason)
        return result
    except BaseException:
        catalog.discard(staged)
        raise
    if published is None:
        catalog.discard(staged)
        result.status = "skipped"
        log.warning("%s: skipped: %s", source.id, result.reason)
    else:
        result.item = str(published)
        log.info("%s: published %s", source.id, published)
    return result


def _failed(source: search.InputItem, result: ItemResult, error: ComponentError) -> ItemResult:
    result.status, result.reason, result.exit_code = "failed", str(error), error.exit_code
    if isinstance(error, OutputError):
        # The run stops on it and its error line says it: not said twice on stderr.
        log.info("%s: %s", source.id, error)
    else:
        log.error("%s: %s", source.id, error)
    return result


def _too_cloudy(source: search.InputItem, params: RunParams) -> str:
    """Why an item over ``--max-cloud-cover`` is skipped ('' if it is not).

    CDSE applies the threshold in the search already; an API without the Query extension
    returns every item, and those over it are reported here with their cloud cover.
    """
    limit = params.max_cloud_cover
    cloud = source.data.get("properties", {}).get("eo:cloud_cover")
    if limit is None or cloud is None or float(cloud) <= limit:
        return ""
    return f"eo:cloud_cover {float(cloud):g} % is over --max-cloud-cover {limit:g} %"


def _produce(
    source: search.InputItem,
    model: Model,
    params: RunParams,
    out_id: str,
    staged: Path,
    result: ItemResult,
    display: Progress = OFF,
    position: tuple[int, int] = (1, 1),
) -> Path | None:
    """Read -> decode -> classify -> estimate -> correct and write -> describe -> publish."""
    clock = _Clock(result.seconds)
    settings = params.settings
    product = l1c.from_item(source.data, source.href)
    coarse_m = model.card.atmosphere_grid_m
    plan = load.plan(product, params.resolution, params.bbox, coarse_m, settings)
    load.check_assets(product, plan.inputs, settings)
    angles = in_background(geometry.resolve, product, plan.coarse, settings)
    terrain = in_background(elevation.resolve, params.dem, plan.coarse, settings, params.elevation)
    weather = in_background(meteorology.resolve, product, plan.coarse, settings)
    clock.lap("read")  # headers checked, grids known; no pixel read yet
    # Steps: every strip decoded, classify, estimate, every job of pass 2, described, published.
    sharpened = model.resolver is not None
    steps = strip_count(plan) + 2 + len(job_names(plan, True, sharpened)) + 2
    with display.item(*position, source.id, steps) as show:
        decoded = decode_bands(
            product, plan, settings, staged, scene_grid(plan),
            on_strip=lambda band: show.advance(1, f"decode {band}"),
        )  # fmt: skip
        corrector = model.corrector
        scene_geometry, notes = angles.result()
        heights, elevation_notes = terrain.result()
        forecast, weather_notes = weather.result()
        notes += elevation_notes + weather_notes
        result.elevation = heights.describe()
        result.meteorology = forecast.describe() if forecast is not None else ""
        if not has_valid_pixel(decoded.coarse_toa, corrector.input_bands):
            result.reason = "no valid pixel in the requested area (all nodata or saturated)"
            show.close("skipped")
            return None
        clock.lap("decode")  # every band decoded once; the atmosphere's input is known
        assert decoded.scene_toa is not None
        toa, decoded.scene_toa = decoded.scene_toa, None  # 1.6 GB at 20 m: freed once classified
        scene = classify_scene(
            toa, scene_grid(plan), plan.coarse, scene_geometry, "B10" in plan.inputs,
            settings.engine_threads,
        )  # fmt: skip
        del toa
        notes += scene.notes
        clock.lap("classify")  # SCL and cloud probability; clouds kept out of the estimate
        show.advance(1, "estimate")
        state = estimate_atmosphere(
            corrector, decoded.coarse_toa, plan.coarse, scene_geometry, scene, heights, forecast
        )
        notes += state.notes
        result.notes = notes
        clock.lap("estimate")
        show.advance(1, "correct")
        writer = ProductWriter(staged)
        try:
            radiometry, scratch = product.radiometry, decoded.scratch
            write_product(
                Product(plan, corrector, state, radiometry, scratch, scene, model.resolver),
                writer,
                settings,
                on_job=lambda name: show.advance(1, f"wrote {name}"),
            )
            clock.lap("correct")  # every raster read, corrected and drafted; COGs under way
            assets = writer.finish()
        finally:
            writer.close()
        clock.lap("write")
        show.advance(1, "describe")
        item_out = describe(
            l1c=product.item,
            l1c_href=product.href,
            item_id=out_id,
            footprint_grid=plan.grid_r,
            assets=assets,
            model_name=model.name,
            model_version=model.version,
            lineage_text=lineage(
                l1c_id=product.id,
                model_name=model.name,
                model_version=model.version,
                model_files=model.files,
                runtime=model.runtime,
                resolution=params.resolution,
                coarse_m=coarse_m,
                geometry_source=scene_geometry.source if scene_geometry is not None else None,
                notes=notes,
                scene_m=round(scene.grid.resolution),
                cirrus_correction=params.cirrus_correction,
                super_resolution=model.resolver.name if model.resolver is not None else None,
                elevation=heights.describe(),
                meteorology=forecast.describe() if forecast is not None else None,
            ),
            clipped=params.bbox is not None,
            view=geometry.view_properties(scene_geometry) if scene_geometry else None,
            scene=scene.properties(),
        )
        catalog.add_parent_links(item_out)
        catalog.write_json_atomic(
            staged / f"{out_id}.json",
            item_out.to_dict(include_self_link=False, transform_hrefs=False),
        )
        clock.lap("describe")
        published = catalog.publish(params.output, staged, out_id)
        clock.lap("publish")
        show.advance(1, "published")
        show.close("published")
        return published


class _Clock:
    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.into[stage] = round(now - self.last, 3)
        self.last = now
        catalog.pause_point(stage)


def write_archive(output: Path, archive: Path) -> None:
    """A .tar.gz of the published catalog (no staging, no lock), written then renamed."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    temporary = archive.with_name(f".{archive.name}.{uuid.uuid4().hex[:8]}.tmp")
    skip = {catalog.STAGING, catalog.LOCK}
    with tarfile.open(temporary, "w:gz") as tar:
        for path in sorted(output.iterdir()):
            if path.name in skip or path.resolve() in (archive.resolve(), temporary.resolve()):
                continue
            tar.add(path, arcname=f"{output.name}/{path.name}")
    temporary.replace(archive)
