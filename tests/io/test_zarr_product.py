"""EOPF Zarr L1C input: a real Zarr store in the EOPF layout, written from the embedded sample's
JPEG 2000 bands, read locally and from the loopback S3; it gives the SAFE product's L2A."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.grid import Grid
from component.core.settings import ZARR_EXTENSIONS, Settings
from component.io import geometry, l1c, load, meteorology, trust, zarr_product
from component.io.search import read_item
from component.sample import item_path as sample_item_path
from support.eopf import BAND_GROUPS, write_eopf_zarr
from support.nrt import component_env, models_dir, run_cli  # noqa: F401 (fixture)
from support.products import assert_same_l2a
from support.s3 import S3Server
from support.synthetic import make_l1c_product, mgrs_tile_grid, synthetic_angles

pytest.importorskip("zarr")

SAFE_ITEM = sample_item_path()
LOCAL = Settings()


@pytest.fixture(scope="module")
def zarr_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_eopf_zarr(SAFE_ITEM, tmp_path_factory.mktemp("eopf"))


def test_store_has_the_eopf_layout(zarr_store: Path) -> None:
    """The groups, names, encoding and metadata the EOPF reader (xarray-eopf 0.3) looks for:
    ``measurements/reflectance/r<res>m/b<nn>``, CRS in ``other_metadata``, STAC metadata in
    ``stac_discovery``; xarray's Zarr reader decodes the DN to the SAFE path's reflectance."""
    tree = xr.open_datatree(zarr_store, engine="zarr", chunks=None)
    safe = json.loads(SAFE_ITEM.read_text())
    assert tree.attrs["other_metadata"]["horizontal_CRS_code"] == "EPSG:32633"
    assert tree.attrs["stac_discovery"]["id"] == safe["id"]
    for group, bands in BAND_GROUPS.items():
        dataset = tree[f"measurements/reflectance/{group}"].to_dataset()
        assert sorted(dataset.data_vars) == sorted(b.lower() for b in bands)
        for band in bands:
            variable = dataset[band.lower()]
            assert variable.dims == ("y", "x")
            assert list(variable.shape) == safe["assets"][band]["proj:shape"]
            with rasterio.open(SAFE_ITEM.parent / safe["assets"][band]["href"]) as source:
                dn = source.read(1)
            expected = np.where(dn == 0, np.nan, dn * 0.0001)  # baseline 02.04: no offset
            np.testing.assert_allclose(variable.values, expected, rtol=1e-6)


def test_item_from_zarr_has_the_safe_grids(zarr_store: Path) -> None:
    """Every band: the SAFE item's grid and CRS, a GDAL-readable href with the same DN."""
    safe = json.loads(SAFE_ITEM.read_text())
    item = zarr_product.item_from_zarr(str(zarr_store), LOCAL)
    assert item["id"] == safe["id"]
    assert l1c.radiometry(item) == l1c.radiometry(safe)
    assert item["properties"]["product:type"] == "S2MSI1C"
    # GDAL may fetch the Zarr metadata and chunk names with the settings as they are.
    allowed = LOCAL.gdal_options()["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]
    assert set(ZARR_EXTENSIONS.split(",")) <= set(str(allowed).split(","))
    product = l1c.from_item(item, str(zarr_store))
    safe_product = l1c.from_item(read_item(str(SAFE_ITEM)).data)
    assert product.inputs == safe_product.inputs == L1C_BANDS
    assert product.radiometry == safe_product.radiometry
    for band in L1C_BANDS:
        assert l1c.asset_grid(item, band) == l1c.asset_grid(safe, band)
        assert l1c.epsg_of(item, band) == 32633
        assert product.bands[band].grid == safe_product.bands[band].grid
        grid = load.output_grid(product, band, NATIVE_RESOLUTION[band])
        np.testing.assert_array_equal(
            load.read_band(product, band, grid, LOCAL),
            load.read_band(safe_product, band, grid, LOCAL),
        )


def test_not_a_zarr_product_is_an_invalid_item(tmp_path: Path) -> None:
    empty = tmp_path / "S2A_MSIL1C_x.zarr"
    empty.mkdir()
    with pytest.raises(zarr_product.InvalidItemError):
        zarr_product.item_from_zarr(str(empty), LOCAL)


@pytest.fixture(scope="module")
def safe_10m(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:  # noqa: F811
    output = tmp_path_factory.mktemp("safe") / "out"
    done = run_cli(["--resolution", "10", "--output", str(output)], component_env(models_dir))
    assert done.returncode == 0, done.stderr
    return output


@pytest.mark.slow
def test_zarr_and_safe_give_the_same_l2a(
    zarr_store: Path,
    safe_10m: Path,
    tmp_path: Path,
    models_dir: Path,  # noqa: F811
) -> None:
    """At 10 m every band is read at its native resolution from both formats: the products
    are the same to one DN, and the output names the Zarr product as its source."""
    output = tmp_path / "out"
    args = ["--resolution", "10", "--item", str(zarr_store), "--output", str(output)]
    done = run_cli(args, component_env(models_dir))
    assert done.returncode == 0, done.stderr
    assert_same_l2a(safe_10m, output)
    (item_file,) = output.glob("*/*_s2-l1c2l2a-*.json")
    links = json.loads(item_file.read_text())["links"]
    assert [link["href"] for link in links if link["rel"] == "derived_from"] == [str(zarr_store)]


@pytest.mark.slow
def test_zarr_on_s3_and_an_item_naming_it(
    zarr_store: Path,
    safe_10m: Path,
    tmp_path: Path,
    s3_server: S3Server,
    models_dir: Path,  # noqa: F811
    stac_api: Callable[..., str],
) -> None:
    """The product on (loopback) S3, named by an ``s3://`` ``--item``, by an item whose
    ``product`` asset is the Zarr (as the EOPF STAC API serves them) and found by a search of
    the loopback STAC API: the same L2A; without keys, the credentials error (exit 7)."""
    prefix = f"Sentinel-2/MSI/L1C-zarr/{zarr_store.name}/"
    s3_server.upload_tree(zarr_store, prefix)
    href = f"s3://{s3_server.bucket}/{prefix}".rstrip("/")
    env = component_env(models_dir, **s3_server.gdal_env())
    output = tmp_path / "s3"
    done = run_cli(["--resolution", "10", "--item", href, "--output", str(output)], env)
    assert done.returncode == 0, done.stderr
    assert_same_l2a(safe_10m, output)

    safe = json.loads(SAFE_ITEM.read_text())
    document = {
        **{k: safe[k] for k in ("type", "stac_version", "id", "geometry", "bbox", "properties")},
        "links": [],
        "assets": {
            "product": {
                "href": href,
                "type": "application/vnd+zarr",
                "roles": ["data"],
                "xarray:open_datatree_kwargs": {"engine": "eopf-zarr", "op_mode": "native"},
            }
        },
    }
    item_file = tmp_path / "item.json"
    item_file.write_text(json.dumps(document))
    output = tmp_path / "item"
    done = run_cli(["--resolution", "10", "--item", str(item_file), "--output", str(output)], env)
    assert done.returncode == 0, done.stderr
    assert_same_l2a(safe_10m, output)

    # the same item found by a STAC API search (the EOPF STAC API serves Zarr items so)
    url = stac_api([document])
    when = str(safe["properties"]["datetime"])[:10]
    west, south, east, north = safe["bbox"]
    search = ["--stac-url", url, "--bbox", f"{west},{south},{east},{north}", "--datetime", when]
    output = tmp_path / "search"
    done = run_cli(["--resolution", "10", *search, "--output", str(output)], env)
    assert done.returncode == 0, done.stderr
    assert_same_l2a(safe_10m, output)

    no_keys = {k: v for k, v in env.items() if not k.startswith("AWS_") or "KEY" not in k}
    no_keys = {
        k: v for k, v in no_keys.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    done = run_cli(["--item", href, "--output", str(tmp_path / "nokeys")], no_keys)
    assert done.returncode == 7, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.fixture(scope="module")
def angled_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic product with its MTD_TL.xml angle grids: its CDSE item's path."""
    root = tmp_path_factory.mktemp("angled")
    item = make_l1c_product(root / "safe", size_10m=120)
    path = root / "item.json"
    path.write_text(json.dumps(item))
    return path


def _real_layout(item_path: Path, folder: Path, layout: str, crs_key: str) -> Path:
    """The product as ESA publishes it, with its own ``conditions/geometry``."""
    item = json.loads(item_path.read_text())
    _, ulx, uly = mgrs_tile_grid(item["properties"]["grid:code"].removeprefix("MGRS-"))
    granule = Path(item["assets"]["granule_metadata"]["href"]).parent
    return write_eopf_zarr(
        item_path,
        folder,
        layout=layout,
        angles=synthetic_angles(),
        angle_origin=(ulx, uly),
        crs_key=crs_key,
        ecmwf_grib=granule / "AUX_DATA" / "AUX_ECMWFT",
    )


@pytest.mark.parametrize(
    ("layout", "crs_key"),
    [
        ("cpm-2.5", "horizontal_CRS_code"),
        ("cpm-2.6", "horizontal_CRS_code"),
        ("cpm-2.6", "horizontal_crs_code"),
    ],
)
def test_real_layouts_read_like_the_safe_item_with_their_own_angle_grids(
    angled_product: Path, tmp_path: Path, layout: str, crs_key: str
) -> None:
    """ESA's metadata ("null" datetime, a .SAFE id, swapped bbox, the CRS only in
    other_metadata from CPM 2.6.2) give the SAFE item's time, footprint, grids and product
    id; the angles come from conditions/geometry and equal MTD_TL.xml's."""
    safe_item = json.loads(angled_product.read_text())
    store = _real_layout(angled_product, tmp_path, layout, crs_key)
    item = zarr_product.item_from_zarr(str(store), LOCAL)
    assert item["properties"]["datetime"][:19] == safe_item["properties"]["datetime"][:19]
    assert item["bbox"] == pytest.approx(safe_item["bbox"], abs=1e-6)
    assert trust.product_id(item["id"]) == safe_item["id"]
    zarr_input, safe_input = l1c.from_item(item), l1c.from_item(safe_item)
    assert zarr_input.granule_metadata is None and zarr_input.eopf_conditions == str(store)
    for band in safe_input.bands:
        assert zarr_input.bands[band].grid == safe_input.bands[band].grid, band
    coarse = Grid(safe_input.epsg, Affine(120, 0, *safe_input.origin[:1], 0, -120,
                                          safe_input.origin[1]), 10, 10)  # fmt: skip
    from_zarr, notes = geometry.resolve(zarr_input, coarse, LOCAL)
    from_mtd, _ = geometry.resolve(safe_input, coarse, LOCAL)
    assert notes == [] and from_zarr is not None and from_mtd is not None
    assert "conditions/geometry" in from_zarr.source
    for name in ("sun_zenith", "view_zenith", "relative_azimuth", "sun_azimuth"):
        np.testing.assert_allclose(getattr(from_zarr, name), getattr(from_mtd, name), atol=1e-9)
    weather, notes = meteorology.resolve(zarr_input, coarse, LOCAL)
    from_grib, _ = meteorology.resolve(safe_input, coarse, LOCAL)
    assert notes == [] and weather is not None and from_grib is not None
    assert "conditions/meteorology" in weather.source
    for name in ("water_cm", "msl_hpa", "ozone_atm_cm"):
        np.testing.assert_allclose(getattr(weather, name), getattr(from_grib, name), rtol=1e-5)


def test_a_product_without_angle_grids_says_so(angled_product: Path, tmp_path: Path) -> None:
    store = write_eopf_zarr(angled_product, tmp_path, layout="cpm-2.6")
    product = l1c.from_item(zarr_product.item_from_zarr(str(store), LOCAL))
    safe = l1c.from_item(json.loads(angled_product.read_text()))
    coarse = Grid(safe.epsg, Affine(120, 0, safe.origin[0], 0, -120, safe.origin[1]), 10, 10)
    found, notes = geometry.resolve(product, coarse, LOCAL)
    assert len(notes) == 1 and "conditions/geometry" in notes[0] and "scene-mean" in notes[0]
    assert found is not None and "scene means" in found.source


@pytest.mark.slow
def test_a_real_layout_product_on_s3_gives_the_safe_l2a(
    angled_product: Path,
    tmp_path: Path,
    s3_server: S3Server,
    models_dir: Path,  # noqa: F811
) -> None:
    """CPM 2.6.2 metadata and angle grids read from the loopback S3 (zarr-python through the
    signed reader): the SAFE item's L2A to one DN, with no default-angle note."""
    store = _real_layout(angled_product, tmp_path / "store", "cpm-2.6", "horizontal_CRS_code")
    prefix = f"Sentinel-2/MSI/L1C-zarr/real/{store.name}/"
    s3_server.upload_tree(store, prefix)
    env = component_env(models_dir, **s3_server.gdal_env())
    outputs = {}
    for name, source in (
        ("safe", str(angled_product)),
        ("zarr", f"s3://{s3_server.bucket}/{prefix}".rstrip("/")),
    ):
        outputs[name] = tmp_path / name
        args = ["--resolution", "60", "--item", source, "--output", str(outputs[name])]
        done = run_cli(args, env)
        assert done.returncode == 0, done.stderr
    assert_same_l2a(outputs["safe"], outputs["zarr"])
    summary = json.loads((outputs["zarr"] / "run-summary.json").read_text())
    assert "default angles" not in json.dumps(summary)
    (item_file,) = outputs["zarr"].glob("*/*_s2-l1c2l2a-*.json")
    lineage = json.loads(item_file.read_text())["properties"]["processing:lineage"]
    assert "default angles" not in lineage and "climatological ozone" not in lineage
    assert "conditions/geometry" in lineage and "conditions/meteorology" in lineage
