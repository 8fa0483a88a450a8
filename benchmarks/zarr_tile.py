"""The benchmark's synthetic full tile as an EOPF Zarr v2 product, laid out as ESA publishes it.

The SAFE tile (``pipeline.synthetic_tile()``) is written again by the tests' own EOPF writer,
``tests/support/eopf.py``'s ``write_eopf_zarr``, with ESA's real metadata (``cpm-2.6``: the CRS
only in ``other_metadata``, a ``"null"`` datetime, a ``.SAFE`` id, a swapped bbox), its angle
grids in ``conditions/geometry`` and its AUX_ECMWFT in ``conditions/meteorology/ecmwf``. Only the
band arrays' encoding differs from the writer's (256 px chunks, its default compressor): here
the one ESA's products have (``../shared/docs/atmosphere-inputs.md``, "EOPF Zarr, as ESA
publishes it"): 1830², 915² and 305² chunks for the 10, 20 and 60 m bands, blosc zstd level 3
with bitshuffle, separator ``"."``, consolidated metadata. The writer holds the 13 bands in
memory at once (1.4 GB for a full tile).

Written once into ``.benchmark-data/full-tile-zarr/`` (or ``$BENCHMARK_DATA/full-tile-zarr/``)
and reused; on its own this script writes it if missing and prints its path and size::

    .venv/bin/python benchmarks/zarr_tile.py
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ESA_CHUNKS = {10980: 1830, 5490: 915, 1830: 305}
"""Chunk side of a full tile's 10, 20 and 60 m band arrays in ESA's v2 products."""


def esa_encoding(shape: tuple[int, ...], zarr_format: int, inner_chunk: int) -> dict[str, Any]:
    """A band array's encoding as in ESA's v2 products, for ``support.eopf.write_eopf_zarr``'s
    *encoding* (the bands of a full tile only)."""
    import numcodecs

    assert zarr_format == 2 and shape[0] in ESA_CHUNKS, (shape, zarr_format)
    return {
        "_FillValue": 0,
        "chunks": tuple(ESA_CHUNKS[side] for side in shape),
        "compressors": (
            numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE),
        ),
    }


def product_in(folder: Path) -> Path | None:
    """The Zarr product already written into *folder*, if any."""
    found = sorted(folder.glob("*.zarr"))
    return found[0] if found and (found[0] / ".zmetadata").is_file() else None


def zarr_tile(item_file: Path, folder: Path) -> Path:
    """The product of the SAFE item at *item_file* as ``folder/<id>.zarr`` (written once, in a
    sibling folder renamed when complete, then reused)."""
    existing = product_in(folder)
    if existing is not None:
        return existing
    sys.path.insert(0, str(ROOT / "tests"))
    from support import eopf
    from support.synthetic import mgrs_tile_grid, synthetic_angles

    item = json.loads(item_file.read_text())
    _, ulx, uly = mgrs_tile_grid(item["properties"]["grid:code"].removeprefix("MGRS-"))
    granule = Path(item["assets"]["granule_metadata"]["href"]).parent
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    eopf.write_eopf_zarr(
        item_file,
        partial,
        layout="cpm-2.6",
        angles=synthetic_angles(),
        angle_origin=(ulx, uly),
        ecmwf_grib=granule / "AUX_DATA" / "AUX_ECMWFT",
        encoding=esa_encoding,
    )
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    product = product_in(folder)
    assert product is not None
    print(f"wrote the Zarr full tile in {time.perf_counter() - started:.0f} s, {size(product)}")
    return product


def size(path: Path) -> str:
    """Bytes of the files under *path*, and how many."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return f"{sum(p.stat().st_size for p in files) / 1e6:.0f} MB in {len(files)} files"


if __name__ == "__main__":
    from pipeline import DATA, synthetic_tile

    product = zarr_tile(synthetic_tile(), DATA / "full-tile-zarr")
    print(product, size(product))
