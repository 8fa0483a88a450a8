"""EOPF Zarr v3 L1C input (``sentinel-2-l1c-zarr3``): sharded band arrays GDAL cannot read,
read with zarr-python into local GeoTIFFs whose overviews are the product's multiscale levels;
the same L2A as the v2 product of the same data, locally and from the loopback S3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from component.core.settings import Settings
from component.errors import AssetReadError
from component.io import zarr_product, zarr_v3
from component.sample import item_path as sample_item_path
from support.eopf import block_mean, write_eopf_zarr
from support.nrt import component_env, models_dir, run_cli  # noqa: F401 (fixture)
from support.products import assert_same_l2a
from support.s3 import S3Server

pytest.importorskip("zarr")

SAFE_ITEM = sample_item_path()
LOCAL = Settings()
SHARD = "measurements/reflectance/r10m/b02/c/0/0"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "v2": write_eopf_zarr(SAFE_ITEM, tmp_path_factory.mktemp("v2")),
        "v3": write_eopf_zarr(SAFE_ITEM, tmp_path_factory.mktemp("v3"), zarr_format=3),
    }


def _run(source: str, output: Path, env: dict[str, str], resolution: str = "60") -> None:
    done = run_cli(["--resolution", resolution, "--item", source, "--output", str(output)], env)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def v2_60m(
    stores: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,  # noqa: F811
) -> Path:
    output = tmp_path_factory.mktemp("v2run") / "out"
    _run(str(stores["v2"]), output, component_env(models_dir))
    return output


def test_the_v3_store_is_sharded_with_multiscale_levels(stores: dict[str, Path]) -> None:
    """As ESA writes ``sentinel-2-l1c-zarr3``: one ``sharding_indexed`` shard per band of
    blosc/zstd inner chunks, ``spatial_ref``, and coarser levels (block means of the DN)."""
    root = stores["v3"]
    meta = json.loads((root / "measurements/reflectance/r10m/b02/zarr.json").read_text())
    (codec,) = meta["codecs"]
    assert codec["name"] == "sharding_indexed"
    assert codec["configuration"]["chunk_shape"] == [256, 256]
    assert [c["name"] for c in codec["configuration"]["codecs"]] == ["bytes", "blosc"]
    assert codec["configuration"]["codecs"][1]["configuration"]["cname"] == "zstd"
    assert [p.name for p in (root / "measurements/reflectance/r10m/b02/c").rglob("*")
            if p.is_file()] == ["0"]  # fmt: skip
    group = zarr_v3.open_band_store(str(root), LOCAL)
    fine = group["measurements/reflectance/r10m/b02"][:]
    np.testing.assert_array_equal(
        group["measurements/reflectance/r60m/b02"][:], block_mean(fine, 6)
    )
    attrs = group["measurements/reflectance"].attrs
    assert [level["asset"] for level in attrs["multiscales"]["layout"]] == ["r10m", "r20m", "r60m"]
    assert "crs_wkt" in group["measurements/reflectance/r10m/spatial_ref"].attrs


def test_v3_bands_become_geotiffs_with_the_levels_as_overviews(stores: dict[str, Path]) -> None:
    """Each band: the v2 product's grid, its DN in a local GeoTIFF (GDAL refuses the v3
    arrays), the product's coarser levels as that file's overviews."""
    v2 = zarr_product.item_from_zarr(str(stores["v2"]), LOCAL)
    v3 = zarr_product.item_from_zarr(str(stores["v3"]), LOCAL)
    assert v3["properties"] == v2["properties"] and v3["id"] == v2["id"]
    for band, asset in v2["assets"].items():
        if band == "product":
            continue
        mine = v3["assets"][band]
        assert mine["proj:transform"] == asset["proj:transform"], band
        assert mine["proj:shape"] == asset["proj:shape"], band
        assert mine["href"].startswith(zarr_v3.scratch_folder().as_uri()), band
        with rasterio.open(asset["href"]) as want, rasterio.open(mine["href"]) as got:
            assert got.crs == want.crs and got.nodata == 0
            np.testing.assert_array_equal(got.read(1), want.read(1))
            factors = {"B01": [], "B09": [], "B10": []}.get(band)
            if factors is None:
                factors = [2, 6] if asset["proj:transform"][0] == 10 else [3]
            assert got.overviews(1) == factors, band
    assert v3["assets"]["B02"]["eopf:levels"] == {
        "20m": "measurements/reflectance/r20m/b02",
        "60m": "measurements/reflectance/r60m/b02",
    }


@pytest.mark.slow
def test_v3_gives_the_v2_l2a(
    stores: dict[str, Path],
    v2_60m: Path,
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    output = tmp_path / "v3"
    _run(str(stores["v3"]), output, component_env(models_dir))
    assert_same_l2a(v2_60m, output)
    (item_file,) = output.glob("*/*_s2-l1c2l2a-*.json")
    document = item_file.read_text()
    assert "component-zarr3" not in document  # no temporary file named in the output
    links = json.loads(document)["links"]
    assert [link["href"] for link in links if link["rel"] == "derived_from"] == [str(stores["v3"])]


@pytest.mark.slow
def test_v3_on_s3_gives_the_v2_l2a(
    stores: dict[str, Path],
    v2_60m: Path,
    tmp_path: Path,
    s3_server: S3Server,
    models_dir: Path,  # noqa: F811
) -> None:
    prefix = f"Sentinel-2/MSI/L1C-zarr3/{stores['v3'].name}/"
    s3_server.upload_tree(stores["v3"], prefix)
    href = f"s3://{s3_server.bucket}/{prefix}".rstrip("/")
    output = tmp_path / "s3"
    _run(href, output, component_env(models_dir, **s3_server.gdal_env()))
    assert_same_l2a(v2_60m, output)


def _without_shard(stores: dict[str, Path], folder: Path) -> Path:
    copy = folder / stores["v3"].name
    shutil.copytree(stores["v3"], copy)
    (copy / SHARD).unlink()
    return copy


def test_a_missing_shard_is_an_asset_read_error(stores: dict[str, Path], tmp_path: Path) -> None:
    broken = _without_shard(stores, tmp_path)
    with pytest.raises(AssetReadError, match="r10m/b02/c/0/0 is missing"):
        zarr_product.item_from_zarr(str(broken), LOCAL)


def test_a_missing_shard_exits_5_in_one_line(
    stores: dict[str, Path],
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    broken = _without_shard(stores, tmp_path)
    args = ["--resolution", "60", "--item", str(broken), "--output", str(tmp_path / "out")]
    done = run_cli(args, component_env(models_dir))
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "b02/c/0/0 is missing" in last, done.stderr


@pytest.mark.slow
def test_the_temporary_folder_is_removed_after_the_run(
    stores: dict[str, Path],
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """The GeoTIFFs live in the process's temporary folder (TMPDIR), never in --output, and
    are gone when the run ends, also when it fails."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**component_env(models_dir), "TMPDIR": str(scratch)}
    output = tmp_path / "out"
    _run(str(stores["v3"]), output, env)
    assert _scratch_gone(scratch)
    assert not [p for p in output.rglob("*") if p.suffix == ".vrt" or "zarr3" in p.name]
    broken = _without_shard(stores, tmp_path)
    args = ["--resolution", "60", "--item", str(broken), "--output", str(tmp_path / "failed")]
    done = run_cli(args, env)
    assert done.returncode == 5, done.stderr
    assert _scratch_gone(scratch)


def _scratch_gone(tmpdir: Path, wait_s: float = 10.0) -> bool:
    """Whether the run's ``component-zarr3-*`` folder under *tmpdir* is removed (by its
    watcher, a moment after the process ended)."""
    deadline = time.monotonic() + wait_s
    while list(tmpdir.glob("component-zarr3-*")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_killed_process_leaves_no_scratch_folder(stores: dict[str, Path], tmp_path: Path) -> None:
    """Even a process that ends by SIGKILL (no atexit) leaves its folder to the watcher."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = (
        "import os, signal, sys\n"
        "from component.core.settings import Settings\n"
        "from component.io import zarr_product\n"
        "zarr_product.item_from_zarr(sys.argv[1], Settings())\n"
        "print('ready', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(stores["v3"])],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == -9 and "ready" in done.stdout, done.stderr
    assert _scratch_gone(scratch)


def test_a_coarser_read_uses_the_products_own_level(stores: dict[str, Path]) -> None:
    """At 60 m a 10 m band is read from the product's r60m level (the GeoTIFF's overview),
    as it is stored, not averaged from the 10 m array; at 10 m from the 10 m array."""
    from component.io import l1c, load

    product = l1c.from_item(zarr_product.item_from_zarr(str(stores["v3"]), LOCAL))
    group = zarr_v3.open_band_store(str(stores["v3"]), LOCAL)
    for resolution, array in ((60, "r60m/b02"), (20, "r20m/b02"), (10, "r10m/b02")):
        grid = load.output_grid(product, "B02", resolution)
        with load.gdal(LOCAL), load.BandReader(product, "B02", grid) as reader:
            assert not isinstance(reader._source, rasterio.vrt.WarpedVRT), resolution
            dn = reader.read(0, grid.height)
        np.testing.assert_array_equal(dn, group[f"measurements/reflectance/{array}"][:])


def test_a_v3_product_without_consolidated_metadata(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """Without ``consolidated_metadata`` the groups and arrays are found by their own
    ``zarr.json`` (no listing, as over HTTP and S3): the same item."""
    assert json.loads((stores["v3"] / "zarr.json").read_text())["consolidated_metadata"]
    copy = tmp_path / stores["v3"].name
    shutil.copytree(stores["v3"], copy)
    for meta in copy.rglob("zarr.json"):
        document = json.loads(meta.read_text())
        document.pop("consolidated_metadata", None)
        meta.write_text(json.dumps(document))
    consolidated = zarr_product.item_from_zarr(str(stores["v3"]), LOCAL)
    probed = zarr_product.item_from_zarr(str(copy), LOCAL)
    assert probed["properties"] == consolidated["properties"]
    for band, asset in consolidated["assets"].items():
        if band == "product":
            continue
        mine = probed["assets"][band]
        assert {k: v for k, v in mine.items() if k != "href"} == {
            k: v for k, v in asset.items() if k != "href"
        }, band
        with rasterio.open(asset["href"]) as want, rasterio.open(mine["href"]) as got:
            np.testing.assert_array_equal(got.read(1), want.read(1))
            assert got.overviews(1) == want.overviews(1)
