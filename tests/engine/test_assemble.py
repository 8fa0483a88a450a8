"""The pass: the jobs that decode, correct and draft every raster of a product, and what
lands in the files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from component.core.bands import L1C_BANDS
from component.core.blocks import block_mean
from component.core.settings import Settings
from component.engine.assemble import (
    Product,
    job_names,
    job_order,
    sampling,
    write_product,
)
from component.engine.decode import fine_scene_stack, scene_grid, survey, survey_grid
from component.engine.scene import SceneToMake, classify_scene, estimate_atmosphere
from component.errors import ModelError
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
    surveyed = survey(product, plan, SETTINGS)
    toa = np.stack([surveyed.coarse_toa[b] for b in corrector.input_bands])
    state = corrector.estimate(toa, plan.coarse, None)
    writer = ProductWriter(folder)
    try:
        write_product(Product(plan, corrector, state, product, surveyed.dn), writer, SETTINGS)
        assets = writer.finish()
    finally:
        writer.close()
    return plan, state, {a.key: a for a in assets}, surveyed


def test_the_pass_writes_every_band_on_its_grid(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    """At 10 m: each band's file is its product grid, its DN the corrector's BOA of its TOA."""
    item = l1c_product(size_10m=192, seed=4, nodata_fraction=0.1, saturated_fraction=0.02)
    plan, state, assets, surveyed = _product(item, 10, corrector, tmp_path)
    keys = {f"{b}_{round(g.resolution)}m" for b, g in plan.grids.items()}
    assert set(assets) == keys | {"TCI_10m", "AOT_10m", "WVP_10m", "thumbnail"}
    assert not list(tmp_path.glob(".*")), "drafts are removed"
    assert set(surveyed.coarse_toa) == set(L1C_BANDS)
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
    """The survey, its scene, the atmosphere (under way, in another thread) and the scene the
    pass writes, as the pipeline chains them."""
    model, coarse_m = corrector
    product = l1c.from_item(item)
    plan = load.plan(product, resolution, None, coarse_m, SETTINGS)
    surveyed = survey(product, plan, SETTINGS)
    has_b10 = "B10" in plan.inputs
    overview = classify_scene(surveyed.toa, survey_grid(plan), plan.coarse, None, has_b10)
    with ThreadPoolExecutor(1) as pool:
        state = pool.submit(
            estimate_atmosphere, model, surveyed.coarse_toa, plan.coarse, None, overview
        )
    grid = scene_grid(plan)
    if grid == survey_grid(plan):
        return product, plan, grid, surveyed, overview, state
    decoded = tuple(b for b in plan.grids if plan.grids[b].resolution < 60)
    scene = SceneToMake(
        grid,
        fine_scene_stack(surveyed, plan, decoded),
        decoded,
        lambda toa: classify_scene(toa, grid, plan.coarse, None, has_b10),
    )
    return product, plan, grid, surveyed, scene, state


def _full_decode_scene(item: dict[str, Any], plan: Any, grid: Any) -> np.ndarray:
    """The 20 m SCL from every band read whole from its file and averaged onto *grid*."""
    product = l1c.from_item(item)
    stack = []
    for band in L1C_BANDS:
        toa = load.to_toa(load.read_band(product, band, plan.survey[band], SETTINGS),
                          product.radiometry)  # fmt: skip
        if band in plan.grids and plan.grids[band].resolution < 60:
            with rasterio.open(item["assets"][band]["href"]) as source:
                native = load.to_toa(source.read(1), product.radiometry)
            k = round(grid.resolution / plan.grids[band].resolution)
            stack.append(block_mean(native, k) if k > 1 else native)
        else:
            stack.append(np.repeat(np.repeat(toa, 3, 0), 3, 1))
    return classify_scene(np.stack(stack), grid, plan.coarse, None, True).classification.scl


def test_scl_and_cld_are_written_on_the_scene_grid(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    """At 10 m the pass puts every 10 m and 20 m band onto the 20 m scene grid as it decodes
    them, then classifies: the SCL of every band read whole."""
    model, _ = corrector
    item = l1c_product(size_10m=192, seed=4, nodata_fraction=0.1)
    product, plan, grid, surveyed, scene, state = _with_scene(item, 10, corrector, tmp_path)
    assert isinstance(scene, SceneToMake)
    writer = ProductWriter(tmp_path)
    try:
        made = write_product(
            Product(plan, model, state, product, surveyed.dn, scene), writer, SETTINGS
        )
        assets = {a.key: a for a in writer.finish()}
    finally:
        writer.close()
    assert made is not None and made.grid == grid
    assert list(assets)[-3:] == ["SCL_20m", "CLD_20m", "thumbnail"]
    with rasterio.open(assets["SCL_20m"].path) as dataset:
        assert dataset.transform == grid.transform and dataset.shape == (96, 96)
        assert dataset.dtypes[0] == "uint8" and dataset.nodata == 0
        scl = dataset.read(1)
    with rasterio.open(assets["CLD_20m"].path) as dataset:
        assert dataset.nodata == CLOUD_NODATA
        cld = dataset.read(1)
    np.testing.assert_array_equal(scl, made.classification.scl)
    np.testing.assert_array_equal(scl, _full_decode_scene(item, plan, grid))
    no_data = scl == SceneClass.NO_DATA
    assert no_data.any() and (cld[no_data] == CLOUD_NODATA).all()
    assert (cld[~no_data] <= 100).all()
    properties = made.properties()
    assert sum(v for k, v in properties["statistics"].items() if k != "no_data") == (
        pytest.approx(100.0, abs=0.01)
    )
    assert {"eo:cloud_cover", "eo:snow_cover"} <= set(properties)


def test_a_failed_estimate_fails_the_pass(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    """The band jobs wait for the atmosphere: its error is the pass's, nothing is published."""
    model, coarse_m = corrector
    product = l1c.from_item(l1c_product(size_10m=96, seed=1))
    plan = load.plan(product, 10, None, coarse_m, SETTINGS)
    failed: Future[Any] = Future()
    failed.set_exception(ModelError("the estimate failed"))
    writer = ProductWriter(tmp_path / "out")
    try:
        with pytest.raises(ModelError, match="the estimate failed"):
            write_product(Product(plan, model, failed, product), writer, SETTINGS)
    finally:
        writer.close()


@pytest.mark.parametrize("with_scene", [True, False])
def test_job_names_are_the_jobs_run_and_every_draft_is_finished(
    l1c_product: Factory, tmp_path: Path, corrector: Any, with_scene: bool
) -> None:
    """The progress of pass 2 counts :func:`job_names`: exactly the jobs write_product runs
    (each reported once through *on_job*); and every draft a job opens reaches the writer's
    finish (which returns every raster, the thumbnail besides)."""
    model, _ = corrector
    item = l1c_product(size_10m=96, seed=7, nodata_fraction=0.05)
    product, plan, _, surveyed, scene, state = _with_scene(item, 60, corrector, tmp_path)
    writer = ProductWriter(tmp_path / "out")
    opened: list[str] = []
    open_draft = writer.open

    def recording_open(key: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(key)
        return open_draft(key, *args, **kwargs)

    writer.open = recording_open  # type: ignore[method-assign]
    ran: list[str] = []
    chosen = scene if with_scene else None
    built = Product(plan, model, state, product, surveyed.dn, chosen)
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
