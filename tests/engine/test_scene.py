"""The scene classification, and the atmosphere estimated with its clouds kept out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from component.core.bands import L1C_BANDS
from component.core.blocks import block_mean
from component.core.grid import Grid
from component.core.settings import Settings
from component.engine.decode import decode_bands, scene_grid
from component.engine.scene import (
    EXCLUDED_CLASSES,
    Scene,
    classify_scene,
    coarse_exclude,
    estimate_atmosphere,
    has_valid_pixel,
)
from component.io import l1c, load
from component.model.scene_classification import SceneClass, classify

Factory = Callable[..., dict[str, Any]]
SETTINGS = Settings()


def test_coarse_exclusion_counts_pixels_with_data() -> None:
    grid = Grid(32633, Affine(20, 0, 0, 0, -20, 120), 12, 6)
    coarse = Grid(32633, Affine(120, 0, 0, 0, -120, 120), 2, 1)
    scl = np.full((6, 12), SceneClass.VEGETATION, np.uint8)
    scl[0, 0] = SceneClass.CLOUD_HIGH_PROBABILITY  # 1 of 36: a speck, kept
    scl[:, 6:9] = SceneClass.NO_DATA
    scl[0:2, 9:12] = SceneClass.CLOUD_SHADOWS  # 6 of the 18 pixels with data
    np.testing.assert_array_equal(coarse_exclude(scl, grid, coarse), [[False, True]])
    assert SceneClass.WATER not in EXCLUDED_CLASSES, "clear water informs the aerosol"
    scl[:] = SceneClass.NO_DATA
    np.testing.assert_array_equal(coarse_exclude(scl, grid, coarse), [[False, False]])


def test_without_b10_the_scene_has_no_thin_cirrus(l1c_product: Factory, tmp_path: Path) -> None:
    item = l1c_product(size_10m=96, seed=2)
    del item["assets"]["B10"]
    product = l1c.from_item(item)
    plan = load.plan(product, 60, None, 120, SETTINGS)
    grid = scene_grid(plan)
    decoded = decode_bands(product, plan, SETTINGS, tmp_path, grid)
    assert decoded.scene_toa is not None
    scene = classify_scene(decoded.scene_toa, grid, plan.coarse, None, "B10" in plan.inputs)
    assert any("no B10" in note for note in scene.notes)
    assert not (scene.classification.scl == SceneClass.THIN_CIRRUS).any()
    assert scene.grid == grid and scene.classification.scl.shape == grid.shape
    assert scene.exclude.shape == plan.coarse.shape and scene.exclude.dtype == bool


def test_has_valid_pixel() -> None:
    nan = np.full((2, 2), np.nan, np.float32)
    some = nan.copy()
    some[1, 1] = 0.1
    assert not has_valid_pixel({"B02": nan, "B03": nan}, ("B02", "B03", "B04"))
    assert has_valid_pixel({"B02": nan, "B03": some}, ("B02", "B03"))
    assert not has_valid_pixel({"B02": nan, "B03": some}, ("B02",))


def test_estimate_atmosphere_keeps_the_scene_exclusion_and_missing_bands(
    l1c_product: Factory, tmp_path: Path, corrector: Any
) -> None:
    """Its result is the corrector's estimate on the coarse stack (a band absent counting as
    missing), with the scene's exclusion."""
    model, coarse_m = corrector
    product = l1c.from_item(l1c_product(size_10m=192, seed=4, nodata_fraction=0.1))
    plan = load.plan(product, 60, None, coarse_m, SETTINGS)
    decoded = decode_bands(product, plan, SETTINGS, tmp_path)
    coarse = plan.coarse
    exclude = np.zeros(coarse.shape, bool)
    exclude[:2, :3] = True
    scene = Scene(scene_grid(plan), None, exclude)  # type: ignore[arg-type]
    state = estimate_atmosphere(model, decoded.coarse_toa, coarse, None, scene)
    toa = np.stack([decoded.coarse_toa[b] for b in model.input_bands])
    expected = model.estimate(toa, coarse, None, exclude=exclude)
    np.testing.assert_array_equal(state.aot, expected.aot)
    np.testing.assert_array_equal(state.water, expected.water)
    assert state.grid == coarse and state.notes == expected.notes
    without = {b: v for b, v in decoded.coarse_toa.items() if b != "B09"}
    state = estimate_atmosphere(model, without, coarse, None, scene)
    toa[model.input_bands.index("B09")] = np.nan
    expected = model.estimate(toa, coarse, None, exclude=exclude)
    np.testing.assert_array_equal(state.water, expected.water)
    assert any("B09" in note for note in state.notes)


CLOUD_TOA = {
    "B01": 0.55, "B02": 0.52, "B03": 0.50, "B04": 0.50, "B05": 0.51, "B06": 0.52, "B07": 0.52,
    "B08": 0.52, "B8A": 0.52, "B09": 0.25, "B10": 0.05, "B11": 0.38, "B12": 0.25,
}  # fmt: skip
"""An opaque water cloud at TOA (as in tests/model/test_scene_classification.py)."""


def test_a_cloud_does_not_bias_the_aerosol_next_to_it(
    shared_data_dir: Path, corrector: Any
) -> None:
    """A real clear scene (TerraMind L1C chip, 2.2 km), then the same with an opaque cloud
    over a quarter of it: taken as haze, the cloud raises the AOT estimated around it; kept
    out by the classification, the AOT next to it stays the clear scene's."""
    model, coarse_m = corrector
    with rasterio.open(shared_data_dir / "pairs/terramind/L1C/38D_378R_2_3.tif") as source:
        clear = source.read().astype(np.float32) / 10000
    cloudy = clear.copy()
    for i, band in enumerate(L1C_BANDS):
        cloudy[i, :96, :96] = CLOUD_TOA[band]
    fine = Grid(32633, Affine(10, 0, 0, 0, -10, 2240), 224, 224)
    factor = round(coarse_m / 10)
    coarse = Grid(32633, Affine(coarse_m, 0, 0, 0, -coarse_m, 2240), 19, 19)
    assert -(-224 // factor) == 19

    def aot(toa: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        return model.estimate(block_mean(toa, factor), coarse, None, exclude).aot

    result = classify(cloudy, None, L1C_BANDS, 10.0, None)
    assert result.masked[:96, :96].mean() > 0.95, "the painted cloud is classified as cloud"
    exclude = coarse_exclude(result.scl, fine, coarse)
    assert exclude[:8, :8].all() and not exclude[12:, 12:].any()
    scene = classify_scene(cloudy, fine, coarse, None, True)
    np.testing.assert_array_equal(scene.classification.scl, result.scl)
    np.testing.assert_array_equal(scene.exclude, exclude)
    reference = aot(clear, None)
    # Next to the cloud: the clear coarse cells within 360 m of it.
    ring = np.zeros((19, 19), bool)
    ring[:11, :11] = True
    ring &= ~exclude
    assert ring.sum() >= 10
    biased = np.abs(aot(cloudy, None) - reference)[ring].mean()
    kept_out = np.abs(aot(cloudy, exclude) - reference)[ring].mean()
    assert biased > 0.05, f"the cloud taken as haze should raise the AOT (bias {biased:.3f})"
    print(f"AOT next to the cloud: bias {biased:.3f} included, {kept_out:.3f} kept out")
    assert kept_out < 0.3 * biased, (kept_out, biased)
