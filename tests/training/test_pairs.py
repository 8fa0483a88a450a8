"""Paired data: GeoTIFF band selection (0 = missing), nodata, STAC L1C/L2A pairing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from component.errors import InvalidParameterError
from component.training import pairs


def _write(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
        "crs": "EPSG:32632",
        "transform": from_origin(500000, 5100000, 10, 10),
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_read_pair_with_band_selection_scale_offset_nodata(tmp_path: Path) -> None:
    toa = np.arange(12 * 4 * 5, dtype=np.uint16).reshape(12, 4, 5) + 1000
    toa[3, 0, 0] = 65535
    boa = np.full((11, 4, 5), 2000, np.uint16)
    l1c = _write(tmp_path / "toa.tif", toa, nodata=65535)
    l2a = _write(tmp_path / "boa.tif", boa, nodata=65535)
    pair = pairs.load_pair(
        "x",
        pairs.RasterSpec(l1c, (2, 3, 4), scale=10000, offset=-1000),
        pairs.RasterSpec(l2a, (2, 3, 4)),
    )
    assert pair.toa.shape == (3, 4, 5)
    assert pair.toa[0, 0, 1] == pytest.approx((toa[1, 0, 1] - 1000) / 10000)
    assert np.isnan(pair.toa[:, 0, 0]).all() and np.isnan(pair.boa[:, 0, 0]).all()
    assert pair.boa[0, 1, 1] == pytest.approx(0.2)


def test_band_helpers() -> None:
    assert pairs.band_indices(["B02", "B8A"], pairs.TERRAMIND_L1C) == (2, 9)
    assert pairs.band_indices(["B11"], pairs.TERRAMIND_L2A) == (11,)
    assert pairs.band_indices(["B10", "B8A"], pairs.SEN2R_BOA) == (0, 0)  # not in the file
    assert pairs.parse_band_list("2,3,4") == (2, 3, 4)
    assert pairs.parse_band_list("0,1") == (0, 1)
    for bad in ("-1,1", "0,0", "", "a"):
        with pytest.raises(InvalidParameterError):
            pairs.parse_band_list(bad)


def test_a_missing_band_reads_as_nan(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.tif", np.full((2, 3, 3), 1500, np.uint16))
    refl, _ = pairs.read_reflectance(pairs.RasterSpec(path, (2, 0, 1)))
    assert refl.shape == (3, 3, 3)
    assert np.isnan(refl[1]).all() and np.allclose(refl[[0, 2]], 0.15)


def test_shared_pairs_when_present(shared_data_dir: Path) -> None:
    found = pairs.shared_pairs(shared_data_dir, ("B02", "B03", "B04", "B8A"))
    assert {"38D_378R_2_3", "sen2r_20170703"} <= set(found)
    sen2r = found["sen2r_20170703"]
    assert sen2r.toa.shape == (4, 42, 24)
    assert 0 < np.nanmedian(sen2r.boa[:3]) < 1
    assert np.isnan(sen2r.toa[3]).all()  # sen2r has no B8A


def _item(level: str, item_id: str, **props: object) -> dict:
    base = {
        "platform": "sentinel-2a",
        "datetime": "2024-01-16T00:07:41.024000Z",
        "grid:code": "MGRS-51CVP",
        "sat:relative_orbit": 130,
    }
    base.update(props)
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "collection": f"sentinel-2-{level}",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[120, -80], [121, -80], [121, -79], [120, -79], [120, -80]]],
        },
        "bbox": [120, -80, 121, -79],
        "properties": base,
        "links": [],
        "assets": {},
    }


def test_stac_pairing_on_loopback_api(stac_api) -> None:
    l1c = _item("l1c", "S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505")
    l2a_old = _item(
        "l2a",
        "S2A_MSIL2A_20240116T000741_N0510_R130_T51CVP_20240116T020000",
        **{"processing:version": "05.10"},
    )
    l2a_new = _item(
        "l2a",
        "S2A_MSIL2A_20240116T000741_N0511_R130_T51CVP_20240301T020000",
        **{"processing:version": "05.11"},
    )
    other_tile = _item(
        "l2a",
        "S2A_MSIL2A_20240116T000741_N0510_R130_T51CVQ_20240116T020000",
        **{"grid:code": "MGRS-51CVQ"},
    )
    lone = _item(
        "l1c",
        "S2B_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505",
        platform="sentinel-2b",
    )
    url = stac_api([l1c, lone, l2a_old, l2a_new, other_tile])
    found = pairs.search_pairs(url, bbox=[120, -80, 121, -79])
    assert [(a.id, b.id) for a, b in found] == [(l1c["id"], l2a_new["id"])]


def test_datatake_key_falls_back_to_the_id() -> None:
    import pystac

    item = pystac.Item.from_dict(
        _item("l1c", "S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505")
    )
    for key in ("platform", "grid:code", "sat:relative_orbit"):
        item.properties.pop(key)
    assert pairs.datatake_key(item) == ("sentinel-2a", "20240116T000741", "MGRS-51CVP", 130)
