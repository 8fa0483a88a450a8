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
* ``run``: the component end to end (``component.pipeline.run``, one item, no Dask): read,
  estimate the atmosphere, correct, write 12 band COGs + TCI + AOT + WVP, describe, publish.

Each child's peak resident memory is its own (``ru_maxrss``). On noisy shared machines only
ratios measured within one run mean anything.

    .venv/bin/python benchmarks/pipeline.py                    # all cases (~12 min on 2 cores)
    .venv/bin/python benchmarks/pipeline.py --cases tile60 tile10
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
CASES = {"sample": 60, "tile60": 60, "tile10": 10}


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

    from component.io.load import (
        PRODUCT_BANDS,
        STRIP_ROWS,
        BandReader,
        gdal_env,
        output_grid,
        overview_level,
    )
    from component.io.product import workers
    from component.io.search import read_item
    from component.io.write import COG_OPTIONS, Draft
    from component.model.correction import NATIVE_RESOLUTION

    item = read_item(item_path).data
    output.mkdir(parents=True, exist_ok=True)
    env = gdal_env()

    def one(band: str) -> None:
        grid = output_grid(item, band, max(resolution, NATIVE_RESOLUTION[band]))
        target = output / f"{band}.tif"
        with rasterio.Env(**env), rasterio.open(item["assets"][band]["href"]) as dataset:
            if abs(dataset.res[0] - grid.resolution) < 1e-6:
                rasterio.shutil.copy(dataset, target, driver="COG", **COG_OPTIONS)
                return
            level = overview_level(dataset, grid.resolution)
            options = {} if level is None else {"OVERVIEW_LEVEL": str(level)}
            with rasterio.open(item["assets"][band]["href"], **options) as reduced:
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
        with rasterio.Env(**env), BandReader(item, band, grid) as reader:
            for y0 in range(0, grid.height, STRIP_ROWS):
                draft.write(y0, reader.read(y0, min(grid.height, y0 + STRIP_ROWS)))
        draft.finish()

    timings = {}
    for name, job in (("direct", one), ("once", once)):
        started = time.perf_counter()
        with ThreadPoolExecutor(workers()) as pool:
            list(pool.map(job, PRODUCT_BANDS))
        timings[name] = round(time.perf_counter() - started, 2)
    return {
        "floor_s": min(timings.values()),
        "floor_direct_s": timings["direct"],
        "floor_once_s": timings["once"],
        "floor_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def end_to_end(item: str, resolution: int, output: Path) -> dict[str, object]:
    """The component, one item, in this process."""
    from component.io.load import gdal_env
    from component.params import RunParams
    from component.pipeline import run

    started = time.perf_counter()
    summary = run(RunParams(output=output, items=(item,), resolution=resolution,
                            gdal_env=gdal_env()))  # fmt: skip
    elapsed = time.perf_counter() - started
    result = summary.results[0]
    with open(result.item or "") as stream:
        assets = json.load(stream)["assets"]
    height, width = assets[f"B02_{resolution}m"]["proj:shape"]
    return {
        "grid": f"{height}x{width}",
        "run_s": round(elapsed, 2),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stages": result.seconds,
        "assets": len(assets),
    }


def _child(kind: str, case: str, item: str, output: Path) -> dict[str, object]:
    subprocess.run(["rm", "-rf", str(output)], check=True)
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, case, item, str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} {case} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, case, item, output = args.child
        measure = floor if kind == "floor" else end_to_end
        print("RESULT " + json.dumps(measure(item, CASES[case], Path(output))))
        return
    from component.sample import item_path

    rows = []
    for case in args.cases:
        item = str(item_path()) if case == "sample" else str(synthetic_tile())
        base = DATA / "out" / case
        row: dict[str, object] = {"case": case, "resolution": CASES[case]}
        row |= _child("floor", case, item, base / "floor")
        row |= _child("run", case, item, base / "run")
        row["ratio"] = round(float(row["run_s"]) / float(row["floor_s"]), 2)  # type: ignore[arg-type]
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = ["case", "grid", "floor_s", "floor_direct_s", "floor_once_s", "run_s", "ratio",
               "peak_mb", "floor_peak_mb", "stages"]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


if __name__ == "__main__":
    main()
