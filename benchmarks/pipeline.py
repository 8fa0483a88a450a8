"""End-to-end benchmark against the I/O floor measured in the same run.

Cases: the embedded sample at 60 m; a synthetic full tile (13 JPEG 2000 bands on their native
grids, 10980² px at 10 m, in the real L1C layout) at 60 m and at 10 m (``tile60``, ``tile10``,
``tile10sr`` with ``--super-resolve``); the same tile as an EOPF Zarr v2 product laid out as ESA
publishes it (1830²/915²/305² chunks, blosc zstd with bitshuffle, consolidated metadata, its
angles and ECMWF fields under ``conditions``: :mod:`zarr_tile`), named by its ``.zarr`` folder,
at 10 m and 60 m (``zarr10``, ``zarr60``). For each case fresh child processes run one after
the other:

* ``floor``: what no L2A product can avoid: decode every band the product contains (the 12 L2A
  bands) on its product grid (``max(R, native)``; for JPEG 2000 from the reduced-resolution
  level where coarser, as the component reads it; Zarr has no such level: the full band,
  averaged) and write it as a DEFLATE level-1 COG with the component's COG options
  (``component.io.write.COG_OPTIONS``: predictor 2, 512 px tiles, average overviews,
  ``NUM_THREADS=ALL_CPUS``). No model, no scaling, no quicklook, AOT, WVP, SCL, CLD, checksums
  or metadata. Timed twice, and the floor (``floor_s``) is the faster: ``floor_sequential_s``,
  the bands one by one, each with GDAL's own threads (``GDAL_NUM_THREADS=ALL_CPUS`` for the
  decode, and for the warp and the overviews); ``floor_parallel_s``, the bands in parallel
  threads, as many as the component's band jobs (``component.engine.schedule.workers``).
  Each mode runs one of three ways (:data:`FLOOR_WAYS`, the fastest when all were timed;
  ``--all-floor-ways`` times all again): ``direct``, GDAL's COG driver copying from the band
  file (or its warped reduced-resolution level), which decodes it twice when it builds the
  overviews from the source; ``once``, the component's band reader, strips of the source's
  blocks into an uncompressed tiled GeoTIFF, then overviews and the COG copy (the component's
  write path without the checksum); ``zarr`` (Zarr only), zarr-python decoding the chunk rows
  with its own threads, averaged by numpy where the grid is coarser, then the same draft and
  copy. ``floor_<mode>_way`` names the way each mode ran.
* ``run``: the component as a user (or a DeltaTwin container) runs it, ``python -m component
  run --item ITEM --resolution R --output DIR`` (ITEM the item JSON, or the ``.zarr`` folder),
  timed from outside: wall clock from exec to exit, interpreter start and imports included. Its
  stages (read, decode, classify, estimate, correct, write, describe, publish) come
  from the run summary; ``startup_s`` is the time before the first of them.
* ``network``: the bare atmosphere network, one forward pass on the case's 120 m grid with the
  engine the run uses (ONNX Runtime on CPU), model already loaded: the reference for "the
  network is never the bottleneck".

The ratio is the component's whole-process wall time over the floor's (``floor_process_s``:
``floor_s`` plus what a bare interpreter importing rasterio takes), measured just before the
run it is compared with. CPU seconds (user + system, every thread) are counted too: the
floor's in its faster mode (``floor_cpu_s``, and ``floor_cores``, how many cores it kept busy
on average), the run's (``cpu_s``), their ratio (``cpu_ratio``), and ``min_ratio``, the run's
CPU seconds spread over every core of the machine, over ``floor_process_s``: no schedule of
the same work can give a lower ratio. Each child's peak resident memory is its own
(``wait4``; the floor's covers both modes). On noisy shared machines only ratios measured
within one run mean anything.

    .venv/bin/python benchmarks/pipeline.py                    # all cases (~20 min on 2 cores)
    .venv/bin/python benchmarks/pipeline.py --cases tile60 tile10 --repeat 3

With ``--repeat N`` each case runs N floor/run pairs, each pair back to back, and the table
shows the pair with the median ratio, all N ratios beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BENCHMARK_DATA", ROOT / ".benchmark-data")).resolve()
CASES = {"sample": 60, "tile60": 60, "tile10": 10, "tile10sr": 10, "zarr10": 10, "zarr60": 60}
"""Each case's ``--resolution``."""
FLAGS = {"tile10sr": ("--super-resolve",)}
"""Flags a case adds to the run; such a case also times the run without them (``plain_s``)
right after, and reports ``over_plain``, what the flags cost."""


def synthetic_tile() -> Path:
    """A full-size synthetic L1C product, 13 bands (written once, about 5 min, then reused)."""
    item_file = DATA / "full-tile" / "item.json"
    if not item_file.is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from support.synthetic import make_l1c_product

        started = time.perf_counter()
        item = make_l1c_product(item_file.parent, size_10m=10980)
        item_file.write_text(json.dumps(item))
        print(f"wrote the synthetic full tile in {time.perf_counter() - started:.0f} s")
    return item_file


FLOOR_WAYS = {
    "jp2": {"sequential": ("once",), "parallel": ("once",)},
    "zarr": {"sequential": ("once",), "parallel": ("zarr",)},
}
"""The way each mode of the floor is timed, by the product's format: the fastest when every
way was timed (``--all-floor-ways``, the full tile on 2 shared cores). JPEG 2000, ``once``
then ``direct``: 7.3 s / 12.0 s sequential and 6.8 s / 9.2 s parallel at 60 m, 99 s / 129 s
and 125 s / 147 s at 10 m. Zarr, ``once``, ``zarr``, ``direct``: 5.0 / 6.2 / 19.3 s
sequential and 4.7 / 3.8 / 11.2 s parallel at 60 m, 19.4 / 21.4 / 35.9 s and 21.3 / 20.9 /
43.5 s at 10 m (GDAL 3.10's Zarr driver decodes a chunk in one thread)."""
ALL_WAYS = {"jp2": ("direct", "once"), "zarr": ("direct", "once", "zarr")}
"""Every way, timed in each mode with ``--all-floor-ways``."""


def load_item(item_path: str) -> dict[str, Any]:
    """The L1C item at *item_path*: an item document, or an EOPF Zarr product's bands."""
    from component.core.settings import Settings
    from component.io import zarr_product
    from component.io.search import read_item

    if zarr_product.is_zarr_source(item_path):
        return zarr_product.item_from_zarr(item_path, Settings.from_environ())
    return read_item(item_path).data


def floor(item_path: str, resolution: int, output: Path) -> dict[str, object]:
    """GDAL (or zarr-python) decodes each L2A band on its product grid and writes it as a
    DEFLATE level-1 COG, bands one by one and bands in parallel threads."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack
    from itertools import repeat

    import numpy as np
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from component.core.bands import L2A_BANDS, NATIVE_RESOLUTION
    from component.core.settings import Settings
    from component.engine.schedule import workers
    from component.io import overviews, zarr_product
    from component.io.l1c import from_item
    from component.io.load import STRIP_ROWS, BandReader, gdal, output_grid, overview_level
    from component.io.write import COG_OPTIONS, Draft, overview_factors

    assert COG_OPTIONS["COMPRESS"] == "DEFLATE" and COG_OPTIONS["LEVEL"] == "1", COG_OPTIONS
    data = load_item(item_path)
    item = from_item(data)
    settings = Settings.from_environ()
    kind = "zarr" if zarr_product.is_zarr_source(item_path) else "jp2"

    def grid_of(band: str) -> Any:
        return output_grid(item, band, max(resolution, NATIVE_RESOLUTION[band]))

    def env(threaded: bool) -> ExitStack:
        """The component's GDAL options; with *threaded*, GDAL's own threads too."""
        stack = ExitStack()
        stack.enter_context(gdal(settings))
        if threaded:
            stack.enter_context(rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"))
        return stack

    def cog(draft: Draft) -> None:
        """``Draft.finish`` without the checksum: overviews into the draft, COG copy."""
        draft.close()
        grid = draft.asset.grid
        overviews.build(draft.path, overview_factors(grid), Resampling.average)
        options = COG_OPTIONS | {"OVERVIEWS": "FORCE_USE_EXISTING"}
        rasterio.shutil.copy(draft.path, draft.asset.path, driver="COG", **options)
        draft.path.unlink()

    def direct(band: str, folder: Path, threaded: bool) -> None:
        """GDAL's COG driver from the band file (its reduced-resolution level, warped when it
        is not the grid's): the source decoded twice, for the overviews and the full grid."""
        grid, target, href = grid_of(band), folder / f"{band}.tif", item.bands[band].href
        with env(threaded), ExitStack() as files:
            source = files.enter_context(rasterio.open(href))
            if abs(source.res[0] - grid.resolution) > 1e-6:
                level = overview_level(source, grid.resolution)
                if level is not None:
                    source = files.enter_context(rasterio.open(href, OVERVIEW_LEVEL=str(level)))
            if abs(source.res[0] - grid.resolution) > 1e-6:
                extras = {"NUM_THREADS": "ALL_CPUS"} if threaded else {}
                source = files.enter_context(
                    WarpedVRT(
                        source,
                        crs=source.crs,
                        transform=grid.transform,
                        width=grid.width,
                        height=grid.height,
                        resampling=Resampling.average,
                        src_nodata=0,
                        nodata=0,
                        **extras,
                    )
                )
            rasterio.shutil.copy(source, target, driver="COG", **COG_OPTIONS)

    def once(band: str, folder: Path, threaded: bool) -> None:
        """The component's reader (strips of the source's blocks on its own grid) into an
        uncompressed tiled draft, then overviews and the COG copy: decoded once."""
        grid, href = grid_of(band), item.bands[band].href
        draft = Draft(folder, band, grid, "reflectance", (band,))
        with env(threaded):
            with rasterio.open(href) as source:
                native = abs(source.res[0] - grid.resolution) < 1e-6
                rows = source.block_shapes[0][0] if native else STRIP_ROWS
            with BandReader(item, band, grid) as reader:
                for y0 in range(0, grid.height, rows):
                    draft.write(y0, reader.read(y0, min(grid.height, y0 + rows)))
            cog(draft)

    def zarr(band: str, folder: Path, threaded: bool) -> None:
        """zarr-python decodes the band's chunk rows (its own threads), averaged onto a
        coarser grid by numpy (0 left out), into a draft, then overviews and the COG copy."""
        import zarr as zarr_python

        grid = grid_of(band)
        array = zarr_python.open_group(item_path, mode="r")[data["assets"][band]["eopf:array"]]
        factor = round(grid.resolution / NATIVE_RESOLUTION[band])
        draft = Draft(folder, band, grid, "reflectance", (band,))
        rows = array.chunks[0] - array.chunks[0] % factor
        for y0 in range(0, grid.height * factor, rows):
            dn = array[y0 : min(grid.height * factor, y0 + rows), : grid.width * factor]
            if factor > 1:
                blocks = dn.reshape(dn.shape[0] // factor, factor, grid.width, factor)
                total = blocks.sum(axis=(1, 3), dtype=np.uint32)
                count = np.count_nonzero(blocks, axis=(1, 3)).astype(np.uint32)
                dn = ((total + count // 2) // np.maximum(count, 1)).astype(np.uint16)
            draft.write(y0 // factor, dn)
        with env(threaded):
            cog(draft)

    jobs = {"direct": direct, "once": once, "zarr": zarr}
    ways = ALL_WAYS[kind] if os.environ.get("BENCHMARK_ALL_FLOOR_WAYS") else None
    result: dict[str, object] = {}

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
        return usage.ru_utime + usage.ru_stime

    for mode in ("sequential", "parallel"):
        timings, cpus = {}, {}
        for way in ways or FLOOR_WAYS[kind][mode]:
            folder = output / f"{mode}-{way}"
            folder.mkdir(parents=True, exist_ok=True)
            started, cpu_started = time.perf_counter(), cpu()
            if mode == "sequential":
                for band in L2A_BANDS:
                    jobs[way](band, folder, True)
            else:
                with ThreadPoolExecutor(workers(settings)) as pool:
                    list(pool.map(jobs[way], L2A_BANDS, repeat(folder), repeat(False)))
            timings[way] = round(time.perf_counter() - started, 2)
            cpus[way] = round(cpu() - cpu_started, 2)
            shutil.rmtree(folder)
            result[f"floor_{mode}_{way}_s"] = timings[way]
        best = min(timings, key=timings.__getitem__)
        result[f"floor_{mode}_s"] = timings[best]
        result[f"floor_{mode}_cpu_s"] = cpus[best]
        result[f"floor_{mode}_way"] = best
    fastest = min(("sequential", "parallel"), key=lambda m: float(result[f"floor_{m}_s"]))
    result["floor_s"] = result[f"floor_{fastest}_s"]
    result["floor_cpu_s"] = result[f"floor_{fastest}_cpu_s"]
    result["floor_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def network(item: str, resolution: int, output: Path) -> dict[str, object]:
    """One forward pass of the atmosphere network over the case's coarse grid."""
    import numpy as np

    from component.io.l1c import from_item
    from component.io.load import output_grid
    from component.model.card import load_card
    from component.model.engines import build_scene_corrector

    card = load_card()
    corrector, engine = build_scene_corrector(card, device="cpu")
    grid = output_grid(from_item(load_item(item)), "B02", int(card.atmosphere_grid_m))
    rng = np.random.default_rng(0)
    spectrum = np.array([0.12, 0.10, 0.09, 0.07, 0.11, 0.20, 0.24, 0.26, 0.27, 0.09, 0.004, 0.17,
                         0.09], np.float32)  # fmt: skip
    toa = spectrum[:, None, None] * rng.uniform(0.9, 1.1, (1, grid.height, grid.width))
    toa = toa.astype(np.float32)
    corrector.estimator(toa, corrector.input_bands, None)  # warm-up (graph optimization)
    started = time.perf_counter()
    corrector.estimator(toa, corrector.input_bands, None)
    return {"network_s": round(time.perf_counter() - started, 2), "network_grid":
            f"{grid.height}x{grid.width}", "engine": engine}  # fmt: skip


def timed(command: list[str], logs: Path) -> tuple[float, int, int, float]:
    """Wall seconds from exec to exit, exit code, peak RSS (MB) and CPU seconds (user +
    system, every thread) of that process alone.

    Output goes to files under *logs* (a pipe nobody reads could fill and stall the child).
    """
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stdout").open("w") as out, (logs / "stderr").open("w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, process.returncode, round(usage.ru_maxrss / 1024), round(cpu, 2)


def end_to_end(
    item: str, resolution: int, output: Path, flags: tuple[str, ...] = ()
) -> dict[str, object]:
    """The component's CLI (with *flags*) in a fresh interpreter, timed from outside."""
    subprocess.run(["rm", "-rf", str(output)], check=True)
    command = [sys.executable, "-m", "component", "run", "--item", item,
               "--resolution", str(resolution), "--output", str(output), *flags]  # fmt: skip
    elapsed, code, peak_mb, cpu_s = timed(command, output.with_name(output.name + "-logs"))
    if code != 0:
        raise SystemExit(f"run failed with exit code {code}: see {output}-logs/stderr")
    summary = json.loads((output / "run-summary.json").read_text())
    result = summary["items"][0]
    with open(result["item"]) as stream:
        assets = json.load(stream)["assets"]
    height, width = assets[f"B02_{resolution}m"]["proj:shape"]
    return {
        "grid": f"{height}x{width}",
        "run_s": round(elapsed, 2),
        "cpu_s": cpu_s,
        "startup_s": round(elapsed - float(summary["seconds"]["total"]), 2),
        "peak_mb": peak_mb,
        "stages": result["seconds"],
        "assets": len(assets),
    }


def _child(kind: str, case: str, item: str, output: Path) -> dict[str, object]:
    """*kind* measured in a fresh interpreter, its result as the child prints it."""
    subprocess.run(["rm", "-rf", str(output)], check=True)
    command = [sys.executable, __file__, "--child", kind, case, item, str(output)]
    logs = output.with_name(output.name + "-logs")
    _, code, _, _ = timed(command, logs)
    if code != 0:
        raise SystemExit(f"{kind} {case} failed:\n{(logs / 'stderr').read_text()[-3000:]}")
    line = next(x for x in (logs / "stdout").read_text().splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def gdal_startup_s(folder: Path) -> float:
    """A bare interpreter importing rasterio: what a minimal GDAL script pays before work.

    The floor child itself imports the component's grid helpers (scipy and more), which a
    GDAL-only script would not; the floor's process time is its work plus this.
    """
    return min(timed([sys.executable, "-c", "import rasterio"], folder)[0] for _ in range(3))


def pair(case: str, item: str, startup: float) -> dict[str, object]:
    """The floor, then the component, back to back: on a shared machine the load changes over
    minutes, so each ratio compares neighbours."""
    base = DATA / "out" / case
    row: dict[str, object] = {"case": case, "resolution": CASES[case]}
    row |= _child("floor", case, item, base / "floor")
    floor_process_s = round(float(str(row["floor_s"])) + startup, 2)
    row["floor_process_s"] = floor_process_s
    row |= end_to_end(item, CASES[case], base / "run", FLAGS.get(case, ()))
    row["ratio"] = round(float(str(row["run_s"])) / floor_process_s, 2)
    # On cores the floor keeps busy, the run's extra CPU work is extra time: it cannot finish
    # before its CPU seconds spread over every core, however it is scheduled.
    cpu_s, floor_cpu_s = float(str(row["cpu_s"])), float(str(row["floor_cpu_s"]))
    row["cpu_ratio"] = round(cpu_s / floor_cpu_s, 2)
    row["floor_cores"] = round(floor_cpu_s / float(str(row["floor_s"])), 2)
    row["min_ratio"] = round(cpu_s / (os.cpu_count() or 1) / floor_process_s, 2)
    if case in FLAGS:
        plain = end_to_end(item, CASES[case], base / "plain")
        row["plain_s"] = plain["run_s"]
        row["over_plain"] = round(float(str(row["run_s"])) / float(str(plain["run_s"])), 2)
        row["over_plain_cpu"] = round(float(str(row["cpu_s"])) / float(str(plain["cpu_s"])), 2)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument(
        "--repeat", type=int, default=1, help="floor/run pairs per case; the median ratio's row"
    )
    parser.add_argument(
        "--all-floor-ways",
        action="store_true",
        help="time every way of the floor in each mode, not only the fastest measured",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.all_floor_ways:
        os.environ["BENCHMARK_ALL_FLOOR_WAYS"] = "1"  # the floor children inherit it
    if args.child:
        kind, case, item, output = args.child
        measure = floor if kind == "floor" else network
        print("RESULT " + json.dumps(measure(item, CASES[case], Path(output))))
        return
    from component.sample import item_path

    rows = []
    startup = gdal_startup_s(DATA / "out" / "gdal-startup")
    for case in args.cases:
        if case == "sample":
            item = str(item_path())
        elif case.startswith("zarr"):
            from zarr_tile import zarr_tile

            item = str(zarr_tile(synthetic_tile(), DATA / "full-tile-zarr"))
        else:
            item = str(synthetic_tile())
        pairs = [pair(case, item, startup) for _ in range(args.repeat)]
        ratios = sorted(float(str(p["ratio"])) for p in pairs)
        row = next(p for p in pairs if float(str(p["ratio"])) == ratios[len(ratios) // 2])
        row["ratios"] = ",".join(f"{r:.2f}" for r in ratios)
        row |= _child("network", case, item, DATA / "out" / case / "network")
        row["network_share"] = round(float(str(row["network_s"])) / float(str(row["run_s"])), 3)
        rows.append(row)
    columns = ["case", "grid", "floor_process_s", "floor_s", "floor_sequential_s",
               "floor_parallel_s", "run_s", "ratio", "ratios", "floor_cpu_s", "floor_cores",
               "cpu_s", "cpu_ratio", "min_ratio",
               "startup_s", "network_s", "network_share", "peak_mb", "floor_peak_mb",
               "plain_s", "over_plain", "over_plain_cpu", "stages"]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


if __name__ == "__main__":
    main()
