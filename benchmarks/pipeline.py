"""End-to-end benchmark: stage times, peak memory, and the pure model on the same pixels.

Cases: the embedded sample at 60 m; a synthetic full tile (10980² px 10 m JP2 bands in the
real L1C layout) corrected at 60 m (1830² px) and at 10 m. Each case runs in a fresh child
process (``python -m component run``-equivalent, single item, no Dask) so its peak memory is
its own; in the same child, after the run, the network alone is timed on the same grid:

* ``model (onnx)``: the default CPU engine, one pass per tile of the component's layout;
* ``model (torch ref)``: the reference, PyTorch fp32 channels_last, one forward pass over
  the whole grid padded to a multiple of 32 (skipped for 10 m: ~115 passes of 1024²);
* ``ESA-style``: the public reference component's method, the grid resized to 1024² and
  one PyTorch forward pass (fast, but at a fraction of the native resolution).

On noisy shared machines only ratios measured within one run mean anything.

    .venv/bin/python benchmarks/pipeline.py                 # all cases (~15 min on 2 cores)
    .venv/bin/python benchmarks/pipeline.py --cases sample tile60
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
DATA = Path(os.environ.get("BENCHMARK_DATA", ROOT / ".benchmark-data"))
CASES = {"sample": 60, "tile60": 60, "tile10": 10}


def synthetic_tile() -> Path:
    """A full-size synthetic L1C product (written once, then reused)."""
    item_file = DATA / "full-tile" / "item.json"
    if not item_file.is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from support.synthetic import make_l1c_product

        started = time.perf_counter()
        item = make_l1c_product(item_file.parent, size_10m=10980)
        item_file.write_text(json.dumps(item))
        print(f"wrote the synthetic full tile in {time.perf_counter() - started:.0f} s")
    return item_file


def child(case: str, item: str, output: Path) -> dict[str, object]:
    """Run one case in this process and measure it (called in a fresh interpreter)."""
    import numpy as np
    import torch

    from component.io.load import gdal_env
    from component.model.card import load_card
    from component.model.engines import build_corrector
    from component.model.inference import axis_layout
    from component.model.network import load_model
    from component.params import RunParams
    from component.pipeline import run

    started = time.perf_counter()
    summary = run(
        RunParams(output=output, items=(item,), resolution=CASES[case], gdal_env=gdal_env())
    )
    end_to_end = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stages = summary.results[0].seconds
    with open(summary.results[0].item or "") as stream:
        shape = json.load(stream)["assets"]["B02_" + f"{CASES[case]}m"]["proj:shape"]
    height, width = shape
    card = load_card()
    rng = np.random.default_rng(0)
    scene = rng.uniform(0.05, 0.3, (card.in_channels, height, width)).astype(np.float32)

    onnx, _ = build_corrector(card, None, "cpu", "onnx")
    th, ys = axis_layout(height, card.tile_size, card.tile_overlap)
    tw, xs = axis_layout(width, card.tile_size, card.tile_overlap)
    tiles = np.zeros((1, card.in_channels, th, tw), np.float32)
    onnx.engine(tiles)  # warm-up
    t = time.perf_counter()
    for _ in range(len(ys) * len(xs)):
        onnx.engine(tiles)
    model_onnx = time.perf_counter() - t

    net = load_model(card).eval().to(memory_format=torch.channels_last)
    model_torch = None
    with torch.inference_mode():
        if case != "tile10":
            ph, pw = -(-height // 32) * 32, -(-width // 32) * 32
            x = torch.zeros(1, card.in_channels, ph, pw).contiguous(
                memory_format=torch.channels_last
            )
            x[..., :height, :width] = torch.from_numpy(scene)
            t = time.perf_counter()
            net(x)
            model_torch = time.perf_counter() - t
        small = torch.nn.functional.interpolate(
            torch.from_numpy(scene)[None], size=(1024, 1024), mode="bilinear"
        ).contiguous(memory_format=torch.channels_last)
        t = time.perf_counter()
        net(small)
        esa = time.perf_counter() - t
    return {
        "case": case,
        "grid": f"{height}x{width}",
        "search": summary.seconds.get("search"),
        **{k: stages.get(k) for k in ("read_wait", "infer", "write_wait", "write", "describe")},
        "end_to_end": round(end_to_end, 2),
        "peak_mb": round(peak_mb),
        "model_onnx": round(model_onnx, 2),
        "model_torch_ref": None if model_torch is None else round(model_torch, 2),
        "esa_style_1024": round(esa, 2),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument(
        "--child", nargs=3, metavar=("CASE", "ITEM", "OUTPUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        case, item, output = args.child
        print("RESULT " + json.dumps(child(case, item, Path(output))))
        return
    from component.sample import item_path

    rows = []
    for case in args.cases:
        item = str(item_path()) if case == "sample" else str(synthetic_tile())
        output = DATA / "out" / case
        subprocess.run(["rm", "-rf", str(output)], check=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", case, item, str(output)],
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        rows.append(json.loads(line.removeprefix("RESULT ")))
        print(json.dumps(rows[-1]), flush=True)
    columns = list(rows[0])
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |")
    for row in rows:
        if row["model_torch_ref"]:
            ratio = row["end_to_end"] / row["model_torch_ref"]
            print(f"{row['case']}: end-to-end / torch fp32 channels_last forward = {ratio:.2f}")


if __name__ == "__main__":
    main()
