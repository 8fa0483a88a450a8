"""The test support itself works: servers answer, files are real, the sample is consistent.

If these fail, every test built on the fixtures would fail in confusing ways; they fail here
first with a precise message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio
from affine import Affine

from support.s3 import S3Server
from support.stac_api import absolute_hrefs
from support.synthetic import ALL_BANDS, BAND_INFO, cdse_s3_base, mgrs_tile_grid

VALIDATOR = Path(__file__).resolve().parents[2] / "shared" / "tools" / "stac_validate.py"


# --- embedded sample -------------------------------------------------------------------------


def test_sample_item_matches_files(sample_item_path: Path) -> None:
    item = json.loads(sample_item_path.read_text())
    assert item["id"].startswith("S2A_MSIL1C_20170216T102101_N0204_")
    assert item["properties"]["processing:version"] == "02.04"
    assert set(item["assets"]) == set(ALL_BANDS)
    native = {name: info[0] for name, info in BAND_INFO.items()}
    for name, asset in item["assets"].items():
        assert asset["gsd"] == native[name] == asset["proj:transform"][0], name
        assert asset["href"].startswith("./")
        path = sample_item_path.parent / asset["href"]
        data = path.read_bytes()
        assert asset["file:size"] == len(data)
        assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
        with rasterio.open(path) as src:
            assert src.driver == "JP2OpenJPEG"
            assert f"EPSG:{src.crs.to_epsg()}" == asset["proj:code"] == "EPSG:32633"
            assert [src.height, src.width] == asset["proj:shape"]
            assert list(src.transform)[:6] == asset["proj:transform"]
            assert list(src.bounds) == asset["proj:bbox"]


def test_sample_geometry_is_plausible(sample_item_path: Path) -> None:
    """Sun from NOAA's algorithm at 52.5 N on 16 February, 10:21 UTC; a near-nadir view."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_sample", Path(__file__).parents[1] / "scripts" / "make_sample.py"
    )
    assert spec is not None and spec.loader is not None
    make_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_sample)
    # Reference values: June solstice noon at Greenwich (zenith = latitude - 23.44).
    zenith, azimuth = make_sample.solar_position(
        datetime(2024, 6, 21, 12, 0, tzinfo=timezone.utc), 51.48, 0.0
    )
    assert abs(zenith - (51.48 - 23.44)) < 0.1 and abs(azimuth - 180) < 2
    props = json.loads(sample_item_path.read_text())["properties"]
    assert 20 < props["view:sun_elevation"] < 28 and 150 < props["view:sun_azimuth"] < 175
    assert 0 <= props["view:incidence_angle"] < 12
    # The satellite is seen across the SSW-bound descending track: ESE or WNW.
    assert min(abs(props["view:azimuth"] - a) for a in (106.6, 286.6)) < 5


def test_sample_item_reads_with_pystac(sample_item_path: Path) -> None:
    item = pystac.Item.from_file(str(sample_item_path))
    href = item.assets["B04"].get_absolute_href()
    assert href is not None and Path(href).is_file()


@pytest.mark.skipif(not VALIDATOR.exists(), reason="../shared/tools/stac_validate.py absent")
def test_sample_item_validates(sample_item_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(VALIDATOR), str(sample_item_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- synthetic products ----------------------------------------------------------------------


def test_mgrs_tile_grid_matches_cdse() -> None:
    assert mgrs_tile_grid("31TCJ") == (32631, 300000.0, 4900020.0)
    assert mgrs_tile_grid("51CVP") == (32751, 399960.0, 1400020.0)  # from a CDSE item
    epsg, x0, y0 = mgrs_tile_grid("33UUU")
    assert (epsg, x0, y0) == (32633, 300000.0, 5900040.0)
    assert x0 <= 330000 and y0 >= 5822040  # contains the embedded sample's crop


def test_synthetic_product_layout_and_values(
    l1c_product: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    item = l1c_product(
        root=tmp_path / "p",
        bands=("B01", "B02", "B04", "B8A"),
        nodata_fraction=0.1,
        saturated_fraction=0.02,
    )
    b02 = Path(item["assets"]["B02"]["href"])
    assert b02.parent.name == "IMG_DATA"
    assert b02.parents[2].name == "GRANULE"
    assert b02.parents[3].name == item["id"] + ".SAFE"
    assert b02.name.startswith("T31TCJ_") and b02.name.endswith("_B02.jp2")
    shapes = {k: tuple(item["assets"][k]["proj:shape"]) for k in ("B01", "B02", "B8A")}
    assert shapes == {"B01": (64, 64), "B02": (384, 384), "B8A": (192, 192)}
    with rasterio.open(b02) as src:
        assert src.driver == "JP2OpenJPEG"
        assert src.crs.to_epsg() == 32631
        assert src.overviews(1) == [2, 4]  # JPEG2000 resolution levels
        full = src.read(1)
        half = src.read(1, out_shape=(192, 192))
    valid = full[(full > 0) & (full < 65535)]
    assert valid.min() > 1000  # baseline 05.10 DNs carry the +1000 offset
    assert 1500 < np.median(valid) < 4000
    assert 0.09 < (full == 0).mean() < 0.11
    assert 0.01 < (full == 65535).mean() < 0.03
    assert valid.std() > 50  # textured, not flat
    assert half.shape == (192, 192)
    assert item["assets"]["B02"]["file:checksum"].startswith("1220")

    mtd = Path(item["assets"]["product_metadata"]["href"])
    root = ET.parse(mtd).getroot()
    assert root.findtext(".//QUANTIFICATION_VALUE") == "10000"
    offsets = root.findall(".//RADIO_ADD_OFFSET")
    assert len(offsets) == 13 and {o.text for o in offsets} == {"-1000"}
    assert offsets[1].get("band_id") == "1"


def test_synthetic_lossless_and_old_baseline(
    l1c_product: Callable[..., dict[str, Any]],
) -> None:
    a = l1c_product(baseline="02.04", platform="sentinel-2a", date=datetime(2017, 2, 16))
    b = l1c_product(baseline="02.04", platform="sentinel-2a", date=datetime(2017, 2, 16))
    assert a["id"].startswith("S2A_MSIL1C_20170216T000000_N0204_R051_T31TCJ_")
    assert a["properties"]["processing:version"] == "02.04"
    assert a["assets"]["B02"]["raster:offset"] == -0.1  # CDSE's quirk, kept on purpose
    with (
        rasterio.open(a["assets"]["B03"]["href"]) as sa,
        rasterio.open(b["assets"]["B03"]["href"]) as sb,
    ):
        da, db = sa.read(1), sb.read(1)
    np.testing.assert_array_equal(da, db)  # deterministic and lossless
    assert da.min() < 1000  # no offset before baseline 04.00
    root = ET.parse(a["assets"]["product_metadata"]["href"]).getroot()
    assert root.findall(".//RADIO_ADD_OFFSET") == []


@pytest.mark.skipif(not VALIDATOR.exists(), reason="../shared/tools/stac_validate.py absent")
def test_synthetic_item_validates(
    l1c_product: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    item = l1c_product(size_10m=96)
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    result = subprocess.run(
        [sys.executable, str(VALIDATOR), str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- S3 --------------------------------------------------------------------------------------


def test_rasterio_reads_jp2_from_moto_through_vsis3(
    s3_server: S3Server, l1c_product: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    date = datetime(2024, 1, 16, 10, 53, 29, tzinfo=timezone.utc)
    root = tmp_path / "s3"
    item = l1c_product(root=root, date=date, href_base=cdse_s3_base(date))
    s3_server.upload_tree(root, "Sentinel-2/MSI/L1C/2024/01/16/")
    href = item["assets"]["B02"]["href"]
    assert href.startswith("s3://eodata/Sentinel-2/MSI/L1C/2024/01/16/")
    env = s3_server.gdal_env()
    assert env == {
        "AWS_S3_ENDPOINT": f"127.0.0.1:{s3_server.port}",
        "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_DEFAULT_REGION": "default",
    }
    local = Path(root) / href.removeprefix(cdse_s3_base(date))
    with rasterio.open(local) as src:
        expected = src.read(1)
    with s3_server.rasterio_env(), rasterio.open(href) as src:
        assert src.crs.to_epsg() == 32631
        np.testing.assert_array_equal(src.read(1), expected)
        assert src.read(1, out_shape=(96, 96)).shape == (96, 96)


def test_gdal_env_as_environment_variables(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The six keys as process environment, how a DeltaTwin run would receive them."""
    key = "Sentinel-2/MSI/L1C/test/env.jp2"
    with rasterio.open(
        tmp_path / "env.jp2",
        "w",
        driver="JP2OpenJPEG",
        width=64,
        height=64,
        count=1,
        dtype="uint16",
        crs="EPSG:32631",
        transform=Affine(10, 0, 300000, 0, -10, 4900020),
        QUALITY=100,
        REVERSIBLE="YES",
    ) as dst:
        dst.write(np.full((64, 64), 1234, dtype=np.uint16), 1)
    href = s3_server.upload_file(tmp_path / "env.jp2", key)
    for name, value in s3_server.gdal_env().items():
        monkeypatch.setenv(name, value)
    with rasterio.Env(), rasterio.open(href) as src:
        assert int(src.read(1)[0, 0]) == 1234


# --- STAC API --------------------------------------------------------------------------------


def _series(item: dict[str, Any], dates: list[str]) -> list[dict[str, Any]]:
    out = []
    for i, date in enumerate(dates):
        copy_ = copy.deepcopy(item)
        copy_["id"] = f"{item['id']}-{i}"
        copy_["properties"]["datetime"] = date
        copy_["properties"]["eo:cloud_cover"] = 10.0 * i
        out.append(copy_)
    return out


def test_stac_api_search_bbox_datetime_paging(
    stac_api: Callable[..., str], sample_item_path: Path
) -> None:
    sample = absolute_hrefs(json.loads(sample_item_path.read_text()), sample_item_path.parent)
    items = _series(
        sample, ["2017-02-16T10:21:01Z", "2017-03-18T10:21:01Z", "2018-02-16T10:21:01Z"]
    )
    url = stac_api(items)
    client = pystac_client.Client.open(url)
    search = client.search(
        collections=["sentinel-2-l1c"],
        bbox=[12.55, 52.46, 12.6, 52.5],
        datetime="2017-01-01/2017-12-31",
        limit=1,
    )
    found = list(search.items())
    assert [i.id for i in found] == [items[0]["id"], items[1]["id"]]
    assert len(list(search.pages())) >= 2  # paged one item at a time
    assert Path(found[0].assets["B02"].href).is_file()
    assert found[0].properties["processing:version"] == "02.04"
    assert list(client.search(bbox=[0, 0, 1, 1]).items()) == []
    assert [i.id for i in client.search(ids=[items[2]["id"]]).items()] == [items[2]["id"]]


def test_stac_api_query_extension_is_not_supported(stac_api: Callable[..., str]) -> None:
    """Documents rustac's behaviour: POST ``query`` matches nothing (not even all items)."""
    item = json.loads(
        Path(__file__).parents[1].joinpath("src/component/sample/item.json").read_text()
    )
    url = stac_api(_series(item, ["2017-02-16T10:21:01Z", "2017-02-17T10:21:01Z"]))
    client = pystac_client.Client.open(url)
    assert "query" not in " ".join(client.get_conforms_to())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = client.search(query={"eo:cloud_cover": {"lte": 5}})
        assert list(search.items()) == []


def test_synthetic_default_product_has_13_bands_on_native_grids(
    l1c_product: Callable[..., dict[str, Any]],
) -> None:
    """By default (as for the benchmark's full tile) every L1C band, JPEG 2000, native grid."""
    item = l1c_product(size_10m=192)
    assert set(ALL_BANDS) <= set(item["assets"])
    for name in ALL_BANDS:
        asset = item["assets"][name]
        resolution = BAND_INFO[name][0]
        with rasterio.open(asset["href"]) as src:
            assert src.driver == "JP2OpenJPEG", name
            assert src.res == (resolution, resolution), name
            assert [src.height, src.width] == asset["proj:shape"] == [1920 // resolution] * 2
    tile = ET.parse(item["assets"]["granule_metadata"]["href"]).getroot()
    grids = [e for e in tile.iter() if e.tag == "Viewing_Incidence_Angles_Grids"]
    assert len(grids) == 13 * 2  # every band, two detectors
