"""Pass 2: the jobs that draft every raster of a product, and what lands in the files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from component.core.bands import L1C_BANDS
from component.core.settings import Settings
from component.engine.assemble import (
    Product,
    job_names,
    job_order,
    sampling,
    write_product,
)
from component.engine.decode import decode_bands, scene_grid
from component.engine.scene import classify_scene, estimate_atmosphere
from component.io import l1c, load
from component.io.write import (
    CLOUD_NODATA,
    ProductWriter,
    atmosphere_to_dn,
    quicklook_bytes,
    reflectance_to_dn,
)
from component.model.scene_classification import SceneClass

Factory = Callable[..., dict[str, Any]]
SETTINGS = Settings()


def test_sampling_and_job_order(l1c_product: Factory) -> None:
    assert sampling(10, 10) == "original"
    assert sampling(60, 10) == "downsampled" and sampling(10, 120) == "upsampled"
    product = l1c.from_item(l1c_product(size_10m=96))
    plan = load.plan(product, 10, None, 120, SETTINGS)
    order = job_order(plan)
    assert order[:3] == ["B02", "B03", "B04"] and order[3] == "B08"
    assert set(order[-2:]) == {"B01", "B09"} and len(order) == 12
    assert job_names(plan, with_scene=False) == [*order, "TCI"]
    assert job_names(plan, with_scene=True) == [*order, "SCL", "TCI"]


def _product(item: dict[str, Any], resolution: int, corrector: Any, folder: Path) -> Any:
    corrector, coarse_m = corrector
    product = l1c.from_item(item)
    plan = load.plan(product, resolution, None, coarse_m, SETTINGS)
    decoded = decode_bands(product, plan, SETTINGS, folder)
    toa = np.stack([decoded.coarse_toa[b] for b in corrector.input_bands])
    state = corrector.estimate(toa, plan.coarse, None)
    writer = ProductWriter(folder)
    try:
        write_product(
            Product(plan, corrector, state, product.radiometry, decoded.scratch), writer, SETTINGS
        )
        assets = writer.finish()
    finally:
        writer.close()
    return plan, state, {a.key: a for a in assets}, decoded


def test_both_passes_write_every_band_on_its_grid(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    """At 10 m: each band's file is its product grid, its DN the corrector's BOA of its TOA."""
    item = l1c_product(size_10m=192, seed=4, nodata_fraction=0.1, saturated_fraction=0.02)
    plan, state, assets, decoded = _product(item, 10, corrector, tmp_path)
    keys = {f"{b}_{round(g.resolution)}m" for b, g in plan.grids.items()}
    assert set(assets) == keys | {"TCI_10m", "AOT_10m", "WVP_10m", "thumbnail"}
    assert not list(tmp_path.glob(".*")), "scratch files and drafts are removed"
    assert set(decoded.coarse_toa) == set(L1C_BANDS)
    radiometry = l1c.radiometry(item)
    model = corrector[0]
    for band, grid in plan.grids.items():
        asset = assets[f"{band}_{round(grid.resolution)}m"]
        with rasterio.open(asset.path) as dataset:
            assert dataset.transform == grid.transform
            assert dataset.shape == (grid.height, grid.width)
            written = dataset.read(1)
        with rasterio.open(item["assets"][band]["href"]) as source:
            dn = source.read(1)
        assert dn.shape == written.shape, band
        expected = model.correct(band, load.to_toa(dn, radiometry), grid, state)
        np.testing.assert_array_equal(written, reflectance_to_dn(expected), err_msg=band)
        assert ((written == 0) == ((dn == 0) | (dn == 65535))).all(), band
    grid = plan.grids["B02"]
    with rasterio.open(item["assets"]["B02"]["href"]) as source:
        no_data = source.read(1) == 0
    for name, key in (("aot", "AOT_10m"), ("water", "WVP_10m")):
        with rasterio.open(assets[key].path) as dataset:
            values = dataset.read(1)
        field = model.field(name, grid, state)
        np.testing.assert_array_equal(values, atmosphere_to_dn(field, no_data))
        assert (values[no_data] == 0).all() and (values[~no_data] > 0).all()
    with rasterio.open(assets["TCI_10m"].path) as dataset:
        tci = dataset.read()
    rgb = []
    for band in ("B04", "B03", "B02"):
        with rasterio.open(assets[f"{band}_10m"].path) as dataset:
            dn = dataset.read(1).astype(np.float32)
        rgb.append(np.where(dn == 0, np.nan, dn * np.float32(1e-4) - np.float32(0.1)))
    np.testing.assert_array_equal(tci, quicklook_bytes(np.stack(rgb)))


def test_at_60m_every_band_is_written_at_60m(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    item = l1c_product(size_10m=192, seed=5)
    _, _, assets, _ = _product(item, 60, corrector, tmp_path)
    assert {a.grid.resolution for a in assets.values() if a.grid is not None} == {60}
    assert assets["B01_60m"].sampling == "original"
    assert assets["B05_60m"].sampling == "downsampled"
    with rasterio.open(assets["B05_60m"].path) as dataset:
        assert dataset.shape == (32, 32)


def _with_scene(
    item: dict[str, Any], resolution: int, corrector: Any, folder: Path
) -> tuple[Any, ...]:
    """Pass 1, the scene and the atmosphere as the pipeline chains them."""
    model, coarse_m = corrector
    product = l1c.from_item(item)
    plan = load.plan(product, resolution, None, coarse_m, SETTINGS)
    grid = scene_grid(plan)
    decoded = decode_bands(product, plan, SETTINGS, folder, grid)
    assert decoded.scene_toa is not None
    scene = classify_scene(decoded.scene_toa, grid, plan.coarse, None, "B10" in plan.inputs)
    state = estimate_atmosphere(model, decoded.coarse_toa, plan.coarse, None, scene)
    return product, plan, grid, decoded, scene, state


def test_scl_and_cld_are_written_on_the_scene_grid(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    model, _ = corrector
    item = l1c_product(size_10m=192, seed=4, nodata_fraction=0.1)
    product, plan, grid, decoded, scene, state = _with_scene(item, 10, corrector, tmp_path)
    writer = ProductWriter(tmp_path)
    try:
        write_product(
            Product(plan, model, state, product.radiometry, decoded.scratch, scene),
            writer,
            SETTINGS,
        )
        assets = {a.key: a for a in writer.finish()}
    finally:
        writer.close()
    assert list(assets)[-3:] == ["SCL_20m", "CLD_20m", "thumbnail"]
    with rasterio.open(assets["SCL_20m"].path) as dataset:
        assert dataset.transform == grid.transform and dataset.shape == (96, 96)
        assert dataset.dtypes[0] == "uint8" and dataset.nodata == 0
        scl = dataset.read(1)
    with rasterio.open(assets["CLD_20m"].path) as dataset:
        assert dataset.nodata == CLOUD_NODATA
        cld = dataset.read(1)
    np.testing.assert_array_equal(scl, scene.classification.scl)
    no_data = scl == SceneClass.NO_DATA
    assert no_data.any() and (cld[no_data] == CLOUD_NODATA).all()
    assert (cld[~no_data] <= 100).all()
    properties = scene.properties()
    assert sum(v for k, v in properties["statistics"].items() if k != "no_data") == (
        pytest.approx(100.0, abs=0.01)
    )
    assert {"eo:cloud_cover", "eo:snow_cover"} <= set(properties)


@pytest.mark.parametrize("with_scene", [True, False])
def test_job_names_are_the_jobs_run_and_every_draft_is_finished(
    l1c_product: Factory, tmp_path: Path, corrector: Any, with_scene: bool
) -> None:
    """The progress of pass 2 counts :func:`job_names`: exactly the jobs write_product runs
    (each reported once through *on_job*); and every draft a job opens reaches the writer's
    finish (which returns every raster, the thumbnail besides)."""
    model, _ = corrector
    item = l1c_product(size_10m=96, seed=7, nodata_fraction=0.05)
    product, plan, _, decoded, scene, state = _with_scene(item, 60, corrector, tmp_path)
    writer = ProductWriter(tmp_path / "out")
    opened: list[str] = []
    open_draft = writer.open

    def recording_open(key: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(key)
        return open_draft(key, *args, **kwargs)

    writer.open = recording_open  # type: ignore[method-assign]
    ran: list[str] = []
    chosen = scene if with_scene else None
    built = Product(plan, model, state, product.radiometry, decoded.scratch, chosen)
    try:
        write_product(built, writer, SETTINGS, on_job=ran.append)
        assets = writer.finish()
    finally:
        writer.close()
    names = job_names(plan, with_scene=with_scene)
    assert Counter(ran) == Counter(names) and len(ran) == len(names)
    assert len(opened) == len(set(opened)), "one draft per raster"
    finished = [a.key for a in assets if a.kind != "thumbnail"]
    assert sorted(finished) == sorted(opened)
    expected = {f"{b}_60m" for b in plan.grids} | {"TCI_60m", "AOT_60m", "WVP_60m"}
    if with_scene:
        expected |= {"SCL_60m", "CLD_60m"}
    assert set(finished) == expected
    assert [a.key for a in assets if a.kind == "thumbnail"] == ["thumbnail"]
    assert all(a.path.is_file() and a.checksum for a in assets)
    assert not list((tmp_path / "out").glob(".*")), "no draft is left behind"
    assert not list(tmp_path.glob(".*")), "every scratch file is read back and removed"
