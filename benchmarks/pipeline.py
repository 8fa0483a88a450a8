"""End-to-end benchmark against the I/O floor measured in the same run.

Cases: the embedded sample at 60 m; a synthetic full tile (13 JPEG 2000 bands on their native
grids, 10980² px at 10 m, in the real L1C layout) at 60 m and at 10 m. For each case two
fresh child processes run one after the other:

* ``floor``: GDAL alone does what no L2A product can avoid: decode every band the product
  contains (the 12 L2A bands) on its product grid (``max(R, native)``, from the JPEG 2000
  reduced-resolution level where coarser, as the component reads it) and write it as a
  DEFLATE COG with the component's COG options, bands in parallel threads (as many as the
  component uses). No model, no scaling, no quicklook, AOT, WVP or metadata. Two ways, and
  the floor is the faster: ``direct``, GDAL's COG driver copying from the JPEG 2000 (or its
  warped reduced-resolution level), which decodes a band twice when it builds the overviews
  from the source; and ``once``, each band decoded once in strips into an uncompressed tiled
  GeoTIFF, then copied as a COG (the component's own write path).
* ``run``: the component as a user (or a DeltaTwin container) runs it, ``python -m component
  run --item ITEM --resolution R --output DIR``, timed from outside: wall clock from exec to
  exit, interpreter start and imports included. Its stages (read, decode, estimate, correct,
  write, describe, publish) come from the run summary; ``startup_s`` is the time before the
  first of them (interpreter, imports, model load).
* ``network``: the bare atmosphere network, one forward pass on the case's 120 m grid with the
  engine the run uses (ONNX Runtime on CPU), model already loaded: the reference for "the
  network is never the bottleneck".

The ratio is the component's whole-process wall time over the floor's (also timed from
outside, interpreter included), measured just before the run it is compared with. Each
child's peak resident memory is its own (``wait4``). On noisy shared machines only ratios
measured within one run mean anything.

    .venv/bin/python benchmarks/pipeline.py                    # all cases (~12 min on 2 cores)
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

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BENCHMARK_DATA", ROOT / ".benchmark-data")).resolve()
CASES = {"sample": 60, "tile60": 60, "tile10": 10, "tile10sr": 10}
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


def floor(item_path: str, resolution: int, output: Path) -> dict[str, object]:
    """GDAL decodes each L2A band on its product grid and writes it as a DEFLATE COG."""
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from component.core.bands import L2A_BANDS, NATIVE_RESOLUTION
    from component.core.settings import Settings
    from component.engine.schedule import workers
    from component.io.l1c import from_item
    from component.io.load import STRIP_ROWS, BandReader, gdal, output_grid, overview_level
    from component.io.search import read_item
    from component.io.write import COG_OPTIONS, Draft

    item = from_item(read_item(item_path).data)
    output.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_environ()

    def one(band: str) -> None:
        grid = output_grid(item, band, max(resolution, NATIVE_RESOLUTION[band]))
        target = output / f"{band}.tif"
        href = item.bands[band].href
        with gdal(settings), rasterio.open(href) as dataset:
            if abs(dataset.res[0] - grid.resolution) < 1e-6:
                rasterio.shutil.copy(dataset, target, driver="COG", **COG_OPTIONS)
                return
            level = overview_level(dataset, grid.resolution)
            options = {} if level is None else {"OVERVIEW_LEVEL": str(level)}
            with rasterio.open(href, **options) as reduced:
                if abs(reduced.res[0] - grid.resolution) < 1e-6:
                    rasterio.shutil.copy(reduced, target, driver="COG", **COG_OPTIONS)
                    return
                with WarpedVRT(
                    reduced,
                    crs=reduced.crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.average,
                    src_nodata=0,
                    nodata=0,
                ) as vrt:
                    rasterio.shutil.copy(vrt, target, driver="COG", **COG_OPTIONS)

    def once(band: str) -> None:
        grid = output_grid(item, band, max(resolution, NATIVE_RESOLUTION[band]))
        draft = Draft(output, f"{band}_once", grid, "reflectance", (band,))
        with gdal(settings), BandReader(item, band, grid) as reader:
            for y0 in range(0, grid.height, STRIP_ROWS):
                draft.write(y0, reader.read(y0, min(grid.height, y0 + STRIP_ROWS)))
        draft.finish()

    timings = {}
    for name, job in (("direct", one), ("once", once)):
        started = time.perf_counter()
        with ThreadPoolExecutor(workers(settings)) as pool:
            list(pool.map(job, L2A_BANDS))
        timings[name] = round(time.perf_counter() - started, 2)
    return {
        "floor_s": min(timings.values()),
        "floor_direct_s": timings["direct"],
        "floor_once_s": timings["once"],
        "floor_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def network(item: str, resolution: int, output: Path) -> dict[str, object]:
    """One forward pass of the atmosphere network over the case's coarse grid."""
    import numpy as np

    from component.io.l1c import from_item
    from component.io.load import output_grid
    from component.io.search import read_item
    from component.model.card import load_card
    from component.model.engines import build_scene_corrector

    card = load_card()
    corrector, engine = build_scene_corrector(card, device="cpu")
    grid = output_grid(from_item(read_item(item).data), "B02", int(card.atmosphere_grid_m))
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


def timed(command: list[str], logs: Path) -> tuple[float, int, int]:
    """Wall seconds from exec to exit, exit code and peak RSS (MB) of that process alone.

    Output goes to files under *logs* (a pipe nobody reads could fill and stall the child).
    """
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stdout").open("w") as out, (logs / "stderr").open("w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, process.returncode, round(usage.ru_maxrss / 1024)


def end_to_end(
    item: str, resolution: int, output: Path, flags: tuple[str, ...] = ()
) -> dict[str, object]:
    """The component's CLI (with *flags*) in a fresh interpreter, timed from outside."""
    subprocess.run(["rm", "-rf", str(output)], check=True)
    command = [sys.executable, "-m", "component", "run", "--item", item,
               "--resolution", str(resolution), "--output", str(output), *flags]  # fmt: skip
    elapsed, code, peak_mb = timed(command, output.with_name(output.name + "-logs"))
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
    _, code, _ = timed(command, logs)
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
    if case in FLAGS:
        plain = end_to_end(item, CASES[case], base / "plain")
        row["plain_s"] = plain["run_s"]
        row["over_plain"] = round(float(str(row["run_s"])) / float(str(plain["run_s"])), 2)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument(
        "--repeat", type=int, default=1, help="floor/run pairs per case; the median ratio's row"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, case, item, output = args.child
        measure = floor if kind == "floor" else network
        print("RESULT " + json.dumps(measure(item, CASES[case], Path(output))))
        return
    from component.sample import item_path

    rows = []
    startup = gdal_startup_s(DATA / "out" / "gdal-startup")
    for case in args.cases:
        item = str(item_path()) if case == "sample" else str(synthetic_tile())
        pairs = [pair(case, item, startup) for _ in range(args.repeat)]
        ratios = sorted(float(str(p["ratio"])) for p in pairs)
        row = next(p for p in pairs if float(str(p["ratio"])) == ratios[len(ratios) // 2])
        row["ratios"] = ",".join(f"{r:.2f}" for r in ratios)
        row |= _child("network", case, item, DATA / "out" / case / "network")
        row["network_share"] = round(float(str(row["network_s"])) / float(str(row["run_s"])), 3)
        rows.append(row)
    columns = ["case", "grid", "floor_process_s", "floor_s", "run_s", "ratio", "ratios",
               "startup_s", "network_s", "network_share", "peak_mb", "floor_peak_mb",
               "plain_s", "over_plain", "stages"]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


if __name__ == "__main__":
    main()
