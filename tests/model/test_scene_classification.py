"""The scene classifier: real s2cloudless forward passes on real and constructed scenes.

Scenes come from the real TerraMind L1C/L2A pairs in ``../shared/data`` (skipped when absent);
clouds and shadows are painted onto them where the sun geometry puts them. Constructed spectra
check the surface rules. The sen2r chips are not used here: they are the held-out reference of
``scripts/measure_scene_classification.py``.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.model import scene_classification
from component.model.atmosphere import Geometry
from component.model.scene_classification import (
    CLOUD_CLASSES,
    SceneClass,
    class_percentages,
    classify,
    cover_properties,
    stac_classes,
)

needs_s2cloudless = pytest.mark.skipif(
    importlib.util.find_spec("s2cloudless") is None or importlib.util.find_spec("lightgbm") is None,
    reason="s2cloudless (with lightgbm) is not installed",
)

CDSE_NAMES = (
    "no_data", "saturated_or_defective", "dark_area_pixels", "cloud_shadows", "vegetation",
    "not_vegetated", "water", "unclassified", "cloud_medium_probability",
    "cloud_high_probability", "thin_cirrus", "snow",
)  # fmt: skip
CLOUD_TOA = {
    "B01": 0.55, "B02": 0.52, "B03": 0.50, "B04": 0.50, "B05": 0.51, "B06": 0.52, "B07": 0.52,
    "B08": 0.52, "B8A": 0.52, "B09": 0.25, "B10": 0.05, "B11": 0.38, "B12": 0.25,
}  # fmt: skip
"""An opaque water cloud at TOA (bright and flat in the visible and NIR, SWIR lower)."""
PATH = {
    "B01": 0.12, "B02": 0.09, "B03": 0.06, "B04": 0.04, "B05": 0.035, "B06": 0.03, "B07": 0.03,
    "B08": 0.025, "B8A": 0.025, "B09": 0.01, "B11": 0.005, "B12": 0.003,
}  # fmt: skip
"""A clear-sky path reflectance per band, to make plausible TOA spectra from surface ones."""


def _pair(shared: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A real TerraMind L1C (13 bands) / L2A (12 bands) chip, 224² at 10 m, reflectance."""
    import rasterio

    arrays = []
    for level in ("L1C", "L2A"):
        with rasterio.open(shared / "pairs" / "terramind" / level / f"{name}.tif") as source:
            arrays.append(source.read().astype(np.float32) / 10000)
    return arrays[0], arrays[1]


def _offset(distance_px: float, towards_deg: float) -> tuple[int, int]:
    """(rows, cols) of a move towards an azimuth: rows grow southwards, columns eastwards."""
    angle = math.radians(towards_deg)
    return round(-math.cos(angle) * distance_px), round(math.sin(angle) * distance_px)


def _paint_cloud(toa: np.ndarray, boa: np.ndarray, rows: slice, cols: slice) -> None:
    for i, band in enumerate(L1C_BANDS):
        toa[i, rows, cols] = CLOUD_TOA[band]
    for i, band in enumerate(L2A_BANDS):
        boa[i, rows, cols] = CLOUD_TOA[band]


def _paint_shadow(toa: np.ndarray, boa: np.ndarray, rows: slice, cols: slice) -> None:
    """The sun's direct beam blocked: a quarter of the surface signal is left (diffuse light);
    at TOA the path reflectance stays and the surface part through ~0.8 transmittance drops."""
    surface = boa[:, rows, cols].copy()
    boa[:, rows, cols] = surface * 0.25
    for i, band in enumerate(L2A_BANDS):
        toa[L1C_BANDS.index(band), rows, cols] -= 0.8 * 0.75 * surface[i]


def _scene_with_cloud(shared: Path, control: bool) -> dict[str, object]:
    """The clear TerraMind chip, a 240 m cloud 1 km up in its middle and its shadow where a sun
    at zenith 35°, azimuth 135° puts it (700 m to the north-west); with *control*, the same
    darkening on the other side, where no shadow can fall."""
    toa, boa = _pair(shared, "38D_378R_2_3")
    cloud = (slice(100, 124), slice(100, 124))
    distance_px = 1000.0 * math.tan(math.radians(35.0)) / 10.0
    dr, dc = _offset(distance_px, 135.0 + 180.0)
    shadow = (slice(100 + dr, 124 + dr), slice(100 + dc, 124 + dc))
    _paint_shadow(toa, boa, *shadow)
    elsewhere = (slice(100 - dr, 124 - dr), slice(100 - dc, 124 - dc))
    if control:
        _paint_shadow(toa, boa, *elsewhere)
    _paint_cloud(toa, boa, *cloud)
    return {"toa": toa, "boa": boa, "cloud": cloud, "shadow": shadow, "elsewhere": elsewhere}


def test_class_table_matches_sen2cor_and_cdse() -> None:
    classes = stac_classes()
    assert [c["value"] for c in classes] == list(range(12))
    assert tuple(c["name"] for c in classes) == CDSE_NAMES
    assert [c.get("nodata", False) for c in classes] == [True] + [False] * 11
    for entry in classes:
        assert re.fullmatch(r"[0-9A-Za-z_-]+", str(entry["name"]))
        assert re.fullmatch(r"[0-9A-F]{6}", str(entry["color_hint"]))
        assert entry["description"]
    assert [c["value"] for c in stac_classes((0, 4, 9))] == [0, 4, 9]
    assert {int(c) for c in CLOUD_CLASSES} == {8, 9, 10}


def test_percentages_and_cover_are_computed_on_the_product() -> None:
    scl = np.zeros((10, 10), np.uint8)  # 20 no-data pixels, 80 with data
    scl[2:4] = SceneClass.CLOUD_HIGH_PROBABILITY  # 20
    scl[4, :5] = SceneClass.CLOUD_MEDIUM_PROBABILITY  # 5
    scl[4, 5:] = SceneClass.THIN_CIRRUS  # 5
    scl[5] = SceneClass.SNOW  # 10
    scl[6:] = SceneClass.VEGETATION  # 40
    shares = class_percentages(scl)
    assert shares["no_data"] == 20.0
    assert shares["cloud_high_probability"] == 25.0
    assert shares["vegetation"] == 50.0
    assert math.isclose(sum(v for k, v in shares.items() if k != "no_data"), 100.0)
    assert cover_properties(scl) == {"eo:cloud_cover": 37.5, "eo:snow_cover": 12.5}
    assert cover_properties(np.zeros((3, 3), np.uint8)) == {}


@needs_s2cloudless
@needs_s2cloudless
def test_the_row_blocks_do_not_change_the_classes(
    shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-pixel tests run on blocks of rows: blocks of 1000 (the whole chip at once) or of
    7 rows give the same SCL and cloud probability, with a saturation mask and a budget that
    makes the detector work on blocks."""
    toa, _ = _pair(shared_data_dir, "282D_485L_3_3")
    toa[:, :3] = np.nan
    saturated = np.zeros(toa.shape[1:], bool)
    saturated[100:104, 50:60] = True
    results = []
    for rows in (1000, 7):
        monkeypatch.setattr(scene_classification, "ROW_BLOCK", rows)
        result = classify(toa, None, L1C_BANDS, 10.0, None, saturated=saturated, budget=4000)
        results.append(result)
    assert results[0].detection_block > 1
    np.testing.assert_array_equal(results[0].scl, results[1].scl)
    np.testing.assert_array_equal(results[0].cloud_probability, results[1].cloud_probability)
    assert len(np.unique(results[0].scl)) >= 4


def test_surface_rules_on_constructed_spectra() -> None:
    """Water, vegetation, snow, soil and dark surfaces, 6x6 pixels each, as surface spectra
    (B02 B03 B04 B8A B11 B12, the others interpolated) with a clear-sky path added at TOA."""
    surfaces = {
        SceneClass.WATER: (0.05, 0.04, 0.02, 0.01, 0.005, 0.003),
        SceneClass.VEGETATION: (0.03, 0.07, 0.03, 0.40, 0.20, 0.09),
        SceneClass.SNOW: (0.92, 0.90, 0.88, 0.78, 0.09, 0.05),
        SceneClass.NOT_VEGETATED: (0.10, 0.14, 0.19, 0.27, 0.34, 0.27),
        SceneClass.DARK_AREA_PIXELS: (0.04, 0.045, 0.05, 0.09, 0.05, 0.03),
    }
    boa = np.zeros((len(L2A_BANDS), 6, 6 * len(surfaces)), np.float32)
    for k, (b02, b03, b04, b8a, b11, b12) in enumerate(surfaces.values()):
        spectrum = {"B01": b02, "B02": b02, "B03": b03, "B04": b04, "B05": (b04 + b8a) / 2,
                    "B06": b8a, "B07": b8a, "B08": b8a, "B8A": b8a, "B09": b8a, "B11": b11,
                    "B12": b12}  # fmt: skip
        for i, band in enumerate(L2A_BANDS):
            boa[i, :, 6 * k : 6 * k + 6] = spectrum[band]
    toa = np.zeros((len(L1C_BANDS), *boa.shape[1:]), np.float32)
    for i, band in enumerate(L1C_BANDS):
        if band == "B10":
            toa[i] = 0.002  # clear, moist air: no cirrus
        else:
            toa[i] = boa[L2A_BANDS.index(band)] * 0.85 + PATH[band]
    toa[L1C_BANDS.index("B09")] *= 0.3  # water vapour absorption
    result = classify(toa, boa, L1C_BANDS, 20.0, Geometry(40.0, 5.0, 90.0), sun_azimuth=150.0)
    for k, expected in enumerate(surfaces):
        block = result.scl[:, 6 * k : 6 * k + 6]
        assert (block == expected).all(), f"{expected.name}: got {np.unique(block)}"
    assert result.cloud_probability.max() == 0, "clear surfaces must not be clouds"
    # The same spectra without BOA: the rules act on TOA (Sen2Cor's way) and still hold for
    # the unambiguous surfaces.
    on_toa = classify(toa, None, L1C_BANDS, 20.0, None)
    for k, expected in enumerate(surfaces):
        if expected in (SceneClass.WATER, SceneClass.VEGETATION, SceneClass.SNOW):
            assert (on_toa.scl[:, 6 * k : 6 * k + 6] == expected).all(), expected.name


@needs_s2cloudless
def test_nodata_stays_zero_and_partial_data_is_defective(shared_data_dir: Path) -> None:
    toa, boa = _pair(shared_data_dir, "637U_59R_1_3")
    toa[:, :10, :] = np.nan  # no data at all
    toa[3, 20:30, :] = np.nan  # one band invalid (saturated, say)
    saturated = np.zeros(toa.shape[1:], bool)
    saturated[40:45] = True
    result = classify(toa, boa, L1C_BANDS, 10.0, None, saturated=saturated)
    assert (result.scl[:10] == SceneClass.NO_DATA).all()
    assert (result.cloud_probability[:10] == 0).all()
    assert (result.scl[20:30] == SceneClass.SATURATED_OR_DEFECTIVE).all()
    assert (result.scl[40:45] == SceneClass.SATURATED_OR_DEFECTIVE).all()
    assert (result.scl[50:] != SceneClass.NO_DATA).all()
    assert result.scl.dtype == result.cloud_probability.dtype == np.uint8


@needs_s2cloudless
def test_cloud_and_its_shadow_where_the_sun_puts_it(shared_data_dir: Path) -> None:
    scene = _scene_with_cloud(shared_data_dir, control=True)
    result = classify(
        scene["toa"], scene["boa"], L1C_BANDS, 10.0, Geometry(35.0, 5.0, 90.0), sun_azimuth=135.0
    )
    scl = result.scl
    cloud = np.isin(scl[scene["cloud"]], (8, 9))
    assert cloud.mean() > 0.95, np.unique(scl[scene["cloud"]], return_counts=True)
    assert (result.cloud_probability[scene["cloud"]] >= 35).mean() > 0.95
    in_shadow = scl[scene["shadow"]] == SceneClass.CLOUD_SHADOWS
    assert in_shadow.mean() > 0.9, np.unique(scl[scene["shadow"]], return_counts=True)
    assert (scl[scene["elsewhere"]] == SceneClass.CLOUD_SHADOWS).mean() < 0.05
    assert (scl == SceneClass.CLOUD_SHADOWS).sum() < 1.5 * in_shadow.size
    assert (np.isin(scl, (8, 9)).sum()) < 1.5 * cloud.size, "clouds beyond the painted one"
    assert result.shadow_azimuth == pytest.approx(315.0)
    assert result.masked[scene["cloud"]].all()


@needs_s2cloudless
def test_unknown_sun_azimuth_is_estimated_from_the_scene(shared_data_dir: Path) -> None:
    scene = _scene_with_cloud(shared_data_dir, control=False)
    for geometry in (Geometry(35.0, 5.0, 90.0), None):
        result = classify(scene["toa"], scene["boa"], L1C_BANDS, 10.0, geometry)
        assert result.shadow_azimuth is not None
        assert abs((result.shadow_azimuth - 315.0 + 180.0) % 360.0 - 180.0) <= 20.0
        assert (result.scl[scene["shadow"]] == SceneClass.CLOUD_SHADOWS).mean() > 0.9
        assert any("estimated" in note for note in result.notes)
    # Without clouds there is nothing to cast and nothing to estimate.
    toa, boa = _pair(shared_data_dir, "38D_378R_2_3")
    clear = classify(toa, boa, L1C_BANDS, 10.0, None)
    assert clear.shadow_azimuth is None
    assert not (clear.scl == SceneClass.CLOUD_SHADOWS).any()


@needs_s2cloudless
def test_probabilities_are_the_s2cloudless_package_own(shared_data_dir: Path) -> None:
    from s2cloudless import S2PixelCloudDetector

    from component.model.scene_clouds import S2CLOUDLESS_BANDS, predict

    toa, _ = _pair(shared_data_dir, "637U_59R_1_3")
    detector = S2PixelCloudDetector(all_bands=True, average_over=None, dilation_size=None)
    expected = detector.get_cloud_probability_maps(np.moveaxis(toa, 0, -1)[None])[0]
    index = [L1C_BANDS.index(b) for b in S2CLOUDLESS_BANDS]
    ours = predict(toa[index].reshape(len(index), -1).T).reshape(toa.shape[1:])
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    assert expected.max() > 0.65, "the chip has clouds: the comparison covers both ends"


@needs_s2cloudless
def test_a_small_budget_keeps_small_clouds(shared_data_dir: Path) -> None:
    """Clouds of 40 to 300 m painted over the clear chip: with a budget smaller than their pixel
    count the model sees block means of candidates (plus refinement), and still finds the same
    clouds as when every candidate is evaluated, the smallest included."""
    toa, boa = _pair(shared_data_dir, "38D_378R_2_3")
    boxes = [(10, 10, 4), (10, 60, 6), (10, 120, 8), (60, 10, 12), (60, 60, 16), (60, 120, 24),
             (130, 10, 30), (130, 70, 30), (130, 150, 30), (190, 190, 30)]  # fmt: skip
    for row, col, size in boxes:
        _paint_cloud(toa, boa, slice(row, row + size), slice(col, col + size))
    painted = sum(size * size for *_, size in boxes)
    geometry = Geometry(35.0, 5.0, 90.0)
    full = classify(toa, boa, L1C_BANDS, 10.0, geometry, sun_azimuth=135.0, budget=1 << 20)
    small = classify(toa, boa, L1C_BANDS, 10.0, geometry, sun_azimuth=135.0, budget=painted // 2)
    assert full.detection_block == 1 and small.detection_block > 1
    a, b = np.isin(full.scl, (8, 9)), np.isin(small.scl, (8, 9))
    for row, col, size in boxes:
        assert b[row : row + size, col : col + size].mean() > 0.9, (row, col, size)
    assert (a & b).sum() / (a | b).sum() > 0.95
    assert any("blocks" in note for note in small.notes)
