"""Sun/view geometry: MTD_TL.xml angle grids on the coarse grid, item means, fallbacks, S3."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from component.core.grid import Grid
from component.core.settings import Settings
from component.io import geometry, l1c
from component.io.load import output_grid
from component.model.atmosphere import Geometry, relative_azimuth
from support.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from support.synthetic import ANGLE_STEP_M, cdse_s3_base, synthetic_angles, tile_angles_xml

Factory = Callable[..., dict[str, Any]]
ULX, ULY = 300000.0, 4900020.0
LOCAL = Settings()


def _xml(angles: dict[str, Any] | None = None) -> str:
    return tile_angles_xml(
        "S2B_OPER_MSI_L1C_TL_TEST",
        datetime(2024, 1, 16, 10, 53, 29, tzinfo=timezone.utc),
        32631,
        ULX,
        ULY,
        {10: 10980, 20: 5490, 60: 1830},
        angles or synthetic_angles(),
    )


def test_parse_reduces_bands_and_detectors_nan_aware() -> None:
    """Sun grids as written; view zenith the mean of every band and detector seeing a node."""
    angles = synthetic_angles()
    parsed = geometry.parse_tile_angles(_xml(angles))
    assert (parsed.ulx, parsed.uly) == (ULX, ULY)
    assert parsed.step_x == parsed.step_y == ANGLE_STEP_M
    np.testing.assert_allclose(parsed.sun_zenith, angles["sun_zenith"], atol=1e-4)
    zeniths = np.stack([z for d in angles["view"].values() for z, _ in d.values()])
    expected = np.nanmean(zeniths, axis=0)  # every node is seen by some detector here
    np.testing.assert_allclose(parsed.view_zenith, expected, atol=1e-4)
    # Where the two detectors overlap (columns 10-12) the azimuths 100 and 108 average to 104.
    np.testing.assert_allclose(parsed.view_azimuth[0, 11], 104.0, atol=1e-3)
    np.testing.assert_allclose(parsed.view_azimuth[0, 5], 100.0, atol=1e-3)


def test_azimuths_average_as_directions() -> None:
    """Detectors at 358 and 6 degrees average to 2, not 182."""
    angles = synthetic_angles(("B02",))
    (z1, a1), (z2, a2) = angles["view"]["B02"][1], angles["view"]["B02"][2]
    angles["view"]["B02"] = {1: (np.full_like(z1, 5.0), np.full_like(a1, 358.0)),
                             2: (np.full_like(z2, 5.0), np.full_like(a2, 6.0))}  # fmt: skip
    parsed = geometry.parse_tile_angles(_xml(angles))
    np.testing.assert_allclose(parsed.view_azimuth, 2.0, atol=1e-6)


def test_grids_are_interpolated_at_pixel_centres() -> None:
    """A coarse pixel centred on a node gets the node's value; between nodes, bilinear."""
    parsed = geometry.parse_tile_angles(_xml())
    # 120 m pixels whose centres fall on the nodes of row 2 and columns 4 and 5 (+ halfway).
    grid = Grid(32631, Affine(2500, 0, ULX + 4 * 5000 - 1250, 0, -5000, ULY - 2 * 5000 + 2500),
                3, 1)  # fmt: skip
    scene = geometry.angles_on_grid(parsed, grid)
    assert isinstance(scene, Geometry) and scene.known
    sun = np.asarray(scene.sun_zenith)[0]
    np.testing.assert_allclose(sun[0], parsed.sun_zenith[2, 4], atol=1e-4)
    np.testing.assert_allclose(sun[2], parsed.sun_zenith[2, 5], atol=1e-4)
    np.testing.assert_allclose(sun[1], parsed.sun_zenith[2, 4:6].mean(), atol=1e-4)


def test_nodes_outside_the_swath_take_the_nearest_value() -> None:
    """Columns no detector sees (NaN in every grid) are filled, never NaN on the coarse grid."""
    angles = synthetic_angles()
    for detectors in angles["view"].values():
        for detector, (zenith, azimuth) in detectors.items():
            zenith[:, 18:] = np.nan
            azimuth[:, 18:] = np.nan
            detectors[detector] = (zenith, azimuth)
    parsed = geometry.parse_tile_angles(_xml(angles))
    assert np.isnan(parsed.view_zenith[:, 18:]).all()
    grid = Grid(32631, Affine(600, 0, ULX, 0, -600, ULY), 183, 183)
    scene = geometry.angles_on_grid(parsed, grid)
    assert np.isfinite(scene.view_zenith).all()
    # East of the last seen node column (17, at 85 km) the field is that column's, constant.
    east = np.asarray(scene.view_zenith)[:, round(85_000 / 600) + 1 :]
    np.testing.assert_allclose(east, np.repeat(east[:, :1], east.shape[1], axis=1), atol=1e-4)


def test_resolve_prefers_the_granule_metadata(l1c_product: Factory) -> None:
    """With MTD_TL.xml: arrays on the coarse grid, their means as view:* properties."""
    product = l1c.from_item(l1c_product(size_10m=192))
    grid = output_grid(product, "B02", 120)
    scene, notes = geometry.resolve(product, grid, LOCAL)
    assert scene is not None and notes == [] and "MTD_TL.xml" in scene.source
    assert np.shape(scene.sun_zenith) == (grid.height, grid.width)
    assert isinstance(scene, Geometry), "the scene's geometry is the model's"
    assert scene.known and np.shape(scene.relative_azimuth) == (grid.height, grid.width)
    expected = relative_azimuth(float(np.ravel(scene.sun_azimuth)[0]),
                                float(np.ravel(scene.view_azimuth)[0]))  # fmt: skip
    np.testing.assert_allclose(np.ravel(scene.relative_azimuth)[0], expected, atol=1e-3)
    props = geometry.view_properties(scene)
    assert 29 < props["view:sun_elevation"] < 31 and 1 < props["view:incidence_angle"] < 4


def test_resolve_falls_back_to_the_item_means(l1c_product: Factory, tmp_path: Path) -> None:
    """Unreadable granule metadata: scene means, and a note; no angles at all: None."""
    item = l1c_product(size_10m=96)
    broken = json.loads(json.dumps(item))
    broken["assets"]["granule_metadata"]["href"] = str(tmp_path / "absent" / "MTD_TL.xml")
    grid = output_grid(l1c.from_item(item), "B02", 120)
    scene, notes = geometry.resolve(l1c.from_item(broken), grid, LOCAL)
    assert scene is not None and "view:* properties" in scene.source
    assert len(notes) == 1 and "granule metadata unreadable" in notes[0]
    props = item["properties"]
    assert scene.known
    assert scene.sun_zenith == pytest.approx(90 - props["view:sun_elevation"])
    assert scene.relative_azimuth == pytest.approx(
        relative_azimuth(props["view:sun_azimuth"], props["view:azimuth"])
    )
    assert geometry.from_properties(l1c.from_item(item).view) == scene
    bare = l1c.from_item(l1c_product(size_10m=96, angles=False))
    assert bare.granule_metadata is None and bare.view == {}
    assert geometry.resolve(bare, grid, LOCAL) == (None, [])


def test_granule_metadata_read_from_s3(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, l1c_product: Factory
) -> None:
    """``s3://`` granule metadata is read with the same settings GDAL's /vsis3 uses."""
    date = datetime(2023, 6, 4, 10, 30, 21, tzinfo=timezone.utc)
    root = tmp_path / "s3"
    item = l1c_product(root=root, size_10m=60, date=date, href_base=cdse_s3_base(date))
    s3_server.upload_tree(root, cdse_s3_base(date).removeprefix("s3://eodata/"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_environ({**os.environ, **s3_server.gdal_env()})
    assert settings.access_key_id == ACCESS_KEY_ID
    assert settings.secret_access_key == SECRET_ACCESS_KEY
    assert settings.s3_endpoint == s3_server.endpoint and not settings.s3_https
    product = l1c.from_item(item)
    href = item["assets"]["granule_metadata"]["href"]
    assert product.granule_metadata == href
    assert href.startswith("s3://eodata/") and href.endswith("MTD_TL.xml")
    local = root / href.removeprefix(cdse_s3_base(date))
    assert geometry.read_text(href, settings) == local.read_bytes()
    with pytest.raises(OSError, match="HTTP 404"):
        geometry.read_text(href.replace("MTD_TL", "MTD_XX"), settings)
    with pytest.raises(ValueError, match="no S3 keys"):
        geometry.read_text(href, settings.without_keys())
    grid = output_grid(product, "B02", 120)
    scene, notes = geometry.resolve(product, grid, settings)
    assert scene is not None and notes == [] and "MTD_TL.xml" in scene.source


def test_malformed_documents_are_refused() -> None:
    for document in (b"not xml", b"<a/>", _xml().replace("Sun_Angles_Grid", "Sun_Grid")):
        with pytest.raises(ValueError):
            geometry.parse_tile_angles(document)
