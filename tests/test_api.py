"""The Python API: the documented example runs, and its values are the CLI product's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio

import component
from component import api
from component.errors import InvalidParameterError
from component.io.write import atmosphere_to_dn, reflectance_to_dn
from component.sample import item_path as sample_item_path
from support.eopf import write_eopf_zarr
from support.nrt import component_env, models_dir, run_cli  # noqa: F401 (fixture)

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "python-api.md"


@pytest.fixture(autouse=True)
def _models(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("COMPONENT_MODELS_DIR", str(models_dir))


@pytest.fixture(scope="module")
def cli_60m(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:  # noqa: F811
    output = tmp_path_factory.mktemp("cli") / "out"
    done = run_cli(["--output", str(output)], component_env(models_dir))
    assert done.returncode == 0, done.stderr
    (folder,) = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


def test_import_is_light() -> None:
    """``import component`` loads neither dask, xarray nor torch; the API comes on first use."""
    code = (
        "import sys, component; heavy = [m for m in ('torch', 'dask', 'xarray', 'onnxruntime', "
        "'rasterio') if m in sys.modules]; assert not heavy, heavy; "
        "assert callable(component.correct) and callable(component.load_l1c)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_documented_example_runs(tmp_path: Path, models_dir: Path) -> None:  # noqa: F811
    """The code block of docs/python-api.md (pasted in the README) runs as it is."""
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    env = {**os.environ, "COMPONENT_MODELS_DIR": str(models_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "mean NDVI" in done.stdout
    with rasterio.open(tmp_path / "B04_boa.tif") as dataset:
        assert dataset.crs.to_epsg() == 32633 and dataset.shape == (128, 256)


@pytest.mark.slow
def test_values_equal_the_cli_product(cli_60m: Path) -> None:
    """Every band, AOT and WVP of the API, quantized as the CLI writes them, within one DN of
    the CLI's 60 m product; and nothing is computed before it is asked for."""
    api._correctors.clear()
    l1c = component.load_l1c(sample_item_path())
    assert l1c.dims == ("band", "y", "x") and isinstance(l1c.data, da.Array)
    l2a = component.correct(l1c, device="cpu")
    assert not api._correctors  # lazy: the model is not even built yet
    assert l2a.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(l2a["x"], l1c["x"])
    assert set(l2a.data_vars) == {*(f"B{n:02d}" for n in range(1, 13) if n != 10), "B8A"} | {
        "AOT",
        "WVP",
    }
    computed = l2a.compute()
    for name in computed.data_vars:
        values = computed[name].values
        with rasterio.open(cli_60m / f"{name}_60m.tif") as dataset:
            reference = dataset.read(1).astype(np.int32)
            transform = dataset.transform
        if name in ("AOT", "WVP"):
            dn = atmosphere_to_dn(values).astype(np.int32)
        else:
            dn = reflectance_to_dn(values).astype(np.int32)
        assert np.abs(dn - reference).max() <= 1, name
    assert (transform.c, transform.f) == (float(l2a.x[0]) - 30, float(l2a.y[0]) + 30)
    # elevation= reaches the physics: at sea level the blue loses more Rayleigh path
    sea = component.correct(l1c, device="cpu", elevation="sea-level")["B02"].values
    terrain = computed["B02"].values
    valid = np.isfinite(sea) & np.isfinite(terrain)
    assert valid.any() and (sea[valid] < terrain[valid] - 1e-4).mean() > 0.5


@pytest.fixture(scope="module")
def cli_10m(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:  # noqa: F811
    output = tmp_path_factory.mktemp("cli10") / "out"
    done = run_cli(["--output", str(output), "--resolution", "10"], component_env(models_dir))
    assert done.returncode == 0, done.stderr
    (folder,) = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


@pytest.mark.slow
def test_super_resolve_example_equals_the_cli_sharpened_bands(
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """The super_resolve example of docs/python-api.md, run on the native COGs of a product
    the CLI wrote with --super-resolve: its sharpened bands are the product's <band>_10m
    within one DN (the same kernel, strips and halo), its 10 m bands the product's own."""
    output = tmp_path / "out"
    args = ["--output", str(output), "--resolution", "10", "--super-resolve"]
    done = run_cli(args, component_env(models_dir))
    assert done.returncode == 0, done.stderr
    (folder,) = [p for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")]
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[1]
    assert f"```python\n{code}```" in (REPO_ROOT / "README.md").read_text()  # the README's
    code, count = re.subn(r'product = "[^"]*"', f"product = {str(folder)!r}", code)
    assert count == 1
    code += "\nsharp.to_netcdf('sharp.nc')\n"
    env = {**os.environ, "COMPONENT_MODELS_DIR": str(models_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "mean NDWI" in done.stdout
    import xarray as xr

    sharp = xr.open_dataset(tmp_path / "sharp.nc")
    assert [v for v in sharp.data_vars if v != "spatial_ref"] == list(api.L2A_BANDS)
    for band in api.L2A_BANDS:
        name = f"{band}_10m.tif"
        with rasterio.open(folder / name) as dataset:
            reference = dataset.read(1).astype(np.int32)
        values = reflectance_to_dn(sharp[band].values).astype(np.int32)
        assert values.shape == reference.shape, band
        assert np.abs(values - reference).max() <= 1, band


def test_super_resolve_refuses_what_does_not_fit() -> None:
    ones = np.zeros((12, 18), np.float32)
    bands = {b: ones for b in ("B02", "B03", "B04", "B08")}
    bands |= {b: np.zeros((6, 9), np.float32) for b in ("B05", "B06", "B07", "B8A", "B11")}
    with pytest.raises(InvalidParameterError, match="B12"):
        component.super_resolve(bands)
    bands["B12"] = np.zeros((6, 9), np.float32)
    bands |= {"B01": np.zeros((2, 3), np.float32), "B09": np.zeros((3, 3), np.float32)}
    with pytest.raises(InvalidParameterError, match="B09 is \\(3, 3\\) pixels, not \\(2, 3\\)"):
        component.super_resolve(bands)
    bands["B09"] = np.zeros((2, 3), np.float32)
    result = component.super_resolve(bands).compute()
    assert result.B11.shape == (12, 18) and result.B01.shape == (12, 18)


@pytest.mark.slow
def test_values_equal_the_cli_product_at_10m(cli_10m: Path) -> None:
    """At 10 m: the bands the CLI writes at 10 m, AOT and WVP, quantized as the CLI writes
    them, within one DN of the CLI's product (every band at 10 m goes into the estimate and the
    classification, as the CLI's native 20 m and 60 m bands do)."""
    l1c = component.load_l1c(sample_item_path(), resolution=10)
    computed = component.correct(l1c, device="cpu").compute()
    for name in ("B02", "B03", "B04", "B08", "AOT", "WVP"):
        with rasterio.open(cli_10m / f"{name}_10m.tif") as dataset:
            reference = dataset.read(1).astype(np.int32)
        values = computed[name].values
        quantize = atmosphere_to_dn if name in ("AOT", "WVP") else reflectance_to_dn
        assert np.abs(quantize(values).astype(np.int32) - reference).max() <= 1, name


def test_a_geographic_grid_is_refused_in_one_line() -> None:
    """odc-stac's EPSG:4326 arrays (latitude/longitude dimensions, cells in degrees): a
    one-line parameter error before anything is computed, never an allocation error."""
    l1c = component.load_l1c(sample_item_path(), bands=["B02", "B04", "B08"])
    degrees = l1c.rename(x="longitude", y="latitude").assign_coords(
        longitude=9.0 + np.arange(l1c.sizes["x"]) * 0.001,
        latitude=46.0 - np.arange(l1c.sizes["y"]) * 0.001,
    )
    degrees = degrees.rio.set_spatial_dims(x_dim="longitude", y_dim="latitude")
    degrees = degrees.rio.write_crs("EPSG:4326")
    with pytest.raises(InvalidParameterError, match="geographic CRS") as raised:
        component.correct(degrees)
    assert raised.value.exit_code == 2 and "\n" not in str(raised.value)


def test_zarr_product_loads_as_the_safe_one(tmp_path: Path) -> None:
    """An EOPF Zarr product (a .zarr path) gives the SAFE item's TOA, grid and CRS."""
    pytest.importorskip("zarr")
    store = write_eopf_zarr(sample_item_path(), tmp_path)
    safe = component.load_l1c(sample_item_path(), bands=["B02", "B8A", "B10"], resolution=20)
    zarr = component.load_l1c(store, bands=["b02", "nir08", "cirrus"], resolution=20)
    assert list(zarr["band"].values) == ["B02", "B8A", "B10"]
    np.testing.assert_array_equal(zarr.values, safe.values)
    assert zarr.rio.crs == safe.rio.crs


def test_bbox_window_and_other_inputs() -> None:
    """A bbox reads only its window; a dataset with a time dimension of one (as stackstac and
    odc-stac give) is accepted; DN and several times are refused with one-line messages."""
    item = json.loads(sample_item_path().read_text())
    west, south, east, north = item["bbox"]
    bbox = (west, south, (west + east) / 2, (south + north) / 2)
    l1c = component.load_l1c(sample_item_path(), bands=["B02", "B04", "B08"], bbox=bbox)
    assert 0 < l1c.sizes["x"] < 256 and 0 < l1c.sizes["y"] < 128
    dataset = l1c.to_dataset("band").expand_dims(time=1)
    dataset.attrs = {}  # no item: default angles
    l2a = component.correct(dataset)
    assert set(l2a.data_vars) == {"B02", "B04", "B08", "AOT", "WVP"}
    with pytest.raises(InvalidParameterError, match="DN"):
        component.correct((l1c * 10000).astype("uint16"))
    with pytest.raises(InvalidParameterError, match="one scene at a time"):
        component.correct(l1c.expand_dims(time=2))
    with pytest.raises(InvalidParameterError, match="unknown band"):
        component.load_l1c(sample_item_path(), bands=["B13"])


def test_correct_takes_the_cli_elevation_sources() -> None:
    """``elevation=`` as ``--elevation``: checked when called, before any pixel is read."""
    with pytest.raises(InvalidParameterError, match="--elevation 'srtm'"):
        component.correct(None, elevation="srtm")
    with pytest.raises(InvalidParameterError, match="--dem and --elevation offline"):
        component.correct(None, dem="dem.tif", elevation="offline")
