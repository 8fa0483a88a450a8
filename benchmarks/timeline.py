"""Where a run's time goes: the process's CPU use each second and what each thread was doing.

One ``component run`` in this process, with the product's jobs and GDAL's heavy calls wrapped
to record (thread, what, start, end), and a sampler reading the process's CPU time each second
from ``/proc/self/stat`` (2.0 = both cores of the development machine busy). Prints the CPU use
in 5 s bins, the time spent in each wrapped call summed over threads, and the pass-2 jobs and
COG steps in order. Linux only (``/proc``).

    .venv/bin/python benchmarks/timeline.py --item .benchmark-data/full-tile/item.json \\
        --resolution 10 --output /tmp/timeline-out
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import rasterio.shutil

from component import cli, pipeline
from component.engine import assemble, decode
from component.io import load, overviews, write

START = time.perf_counter()
EVENTS: list[tuple[str, str, float, float]] = []
SHOWN = (
    "sharpen_job",
    "_band_job",
    "_tci_job",
    "_scene_job",
    "classify_scene",
    "overviews",
    "cog_copy",
)


def _recorded(function: Callable[..., Any], label: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter() - START
        try:
            return function(*args, **kwargs)
        finally:
            name = threading.current_thread().name
            EVENTS.append((name, label, started, time.perf_counter() - START))

    return wrapper


def _instrument() -> None:
    # Each where it is called from (a name imported into a module is patched there).
    for module, name in ((assemble.sharpen, "sharpen_job"), (decode, "_decode_job"),
                         (assemble, "_band_job"), (assemble, "_tci_job"),
                         (assemble, "_scene_job"), (pipeline, "classify_scene"),
                         (assemble, "correct_window"), (assemble, "field_window"),
                         (assemble, "quicklook_from_dn"), (assemble.sharpen, "read_padded"),
                         (assemble.sharpen, "sharpen_strip")):  # fmt: skip
        setattr(module, name, _recorded(getattr(module, name), name))
    write.multihash_sha256 = _recorded(write.multihash_sha256, "checksum")
    overviews.build = _recorded(overviews.build, "overviews")
    rasterio.shutil.copy = _recorded(rasterio.shutil.copy, "cog_copy")
    load.BandReader.read = _recorded(load.BandReader.read, "band_read")
    write.Draft.write = _recorded(write.Draft.write, "draft_write")


def _sample(into: list[tuple[float, float]]) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    last: tuple[float, float] | None = None
    while True:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        now = time.perf_counter() - START
        if last is not None:
            into.append((now, (cpu - last[1]) / (now - last[0])))
        last = (now, cpu)
        time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--item", required=True)
    parser.add_argument("--resolution", default="10")
    parser.add_argument("--output", required=True)
    parser.add_argument("--super-resolve", action="store_true", help="run with --super-resolve")
    args = parser.parse_args()
    shutil.rmtree(args.output, ignore_errors=True)
    _instrument()
    usage: list[tuple[float, float]] = []
    threading.Thread(target=_sample, args=(usage,), daemon=True).start()
    flags = ["--super-resolve"] if args.super_resolve else []
    code = cli.main(["run", "--item", args.item, "--resolution", args.resolution,
                     "--output", args.output, "--quiet", *flags])  # fmt: skip
    print(f"exit code {code}, {time.perf_counter() - START:.1f} s")
    bins = [usage[i : i + 5] for i in range(0, len(usage), 5)]
    print("CPU use (cores), 5 s bins:")
    print(" ".join(f"{b[0][0]:.0f}s:{sum(u for _, u in b) / len(b):.2f}" for b in bins))
    totals: dict[str, float] = collections.defaultdict(float)
    for _, label, started, ended in EVENTS:
        totals[label] += ended - started
    print("\nseconds in each call, summed over threads:")
    for label, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:18s} {seconds:8.1f}")
    print("\npass-2 jobs and COG steps (thread, what, start, end):")
    for name, label, started, ended in sorted(EVENTS, key=lambda e: e[2]):
        if label in SHOWN:
            print(f"  {name:12s} {label:16s} {started:7.1f} {ended:7.1f}")


if __name__ == "__main__":
    main()
