"""Scene classification: Sen2Cor's SCL classes and cloud probability for the L2A product.

Every L2A user masks clouds, their shadows, snow and water with the scene classification layer
(SCL) that Sen2Cor writes next to the reflectance, so the component writes one with the same
class values, at 20 m (60 m for a 60 m product), plus a cloud probability in percent like
Sen2Cor's ``MSK_CLDPRB``. How each class is decided, in priority order:

====  =========================  ===========================================================
  0   no_data                    no valid TOA reflectance in any band
  1   saturated_or_defective     invalid (nodata or saturated) in some bands only, or flagged
                                 by the caller's saturation mask
  9   cloud_high_probability     s2cloudless probability >= 0.65 (Sen2Cor ``T_CLOUD_HP``)
 10   thin_cirrus                TOA B10 in (0.012, 0.035), blue < 0.5, probability < 0.8
                                 (Sen2Cor ``T1_B10``/``T2_B10``, step 7)
  8   cloud_medium_probability   probability >= 0.35 (``T_CLOUD_MP``), or TOA B10 >= 0.035
 11   snow                       Sen2Cor's snow filters on surface reflectance
  6   water                      blue/SWIR-1 > 4 and SWIR-2 below Sen2Cor's bound
  3   cloud_shadows              dark pixel in the zone the clouds cast along the sun
  4   vegetation                 NDVI >= 0.47 or NIR/green >= 2.5
  2   dark_area_pixels           red < 0.08 and NIR < 0.15 (Sen2Cor's dark features)
  5   not_vegetated              Sen2Cor's soil, rock and sand tests
  7   unclassified               none of the above (Sen2Cor: "low probability clouds /
                                 unclassified")
====  =========================  ===========================================================

Thresholds are Sen2Cor's own (``L2A_CAL_SC_GIPP.xml`` and ``L2A_SceneClass.py`` of Sen2Cor 2.x),
none was fitted here. Clouds are decided on TOA reflectance, as Sen2Cor and s2cloudless do;
the surface classes (snow, water, shadow darkness, vegetation, dark, soil) on the corrected
reflectance when the caller has it (*boa*), otherwise on TOA, where Sen2Cor applies them. The
cloud probability is s2cloudless's (see :mod:`component.model.scene_clouds`), set to 0 where
Sen2Cor's per-pixel tests rule a cloud out (:func:`cloud_veto`): a vegetated, watery, soil or
dark pixel is not a cloud, whatever its neighbourhood. Shadows are in
:mod:`component.model.scene_shadows`. ``docs/scene-classification.md`` has the measured
agreement with Sen2Cor, the speed and the choices.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from component.model.atmosphere import Geometry
from component.model.scene_clouds import DEFAULT_BUDGET, S2CLOUDLESS_BANDS, cloud_probability
from component.model.scene_shadows import shadow_zone


class SceneClass(enum.IntEnum):
    """Sen2Cor's SCL values; ``stac_name`` is the name CDSE's L2A items give each."""

    NO_DATA = 0
    SATURATED_OR_DEFECTIVE = 1
    DARK_AREA_PIXELS = 2
    CLOUD_SHADOWS = 3
    VEGETATION = 4
    NOT_VEGETATED = 5
    WATER = 6
    UNCLASSIFIED = 7
    CLOUD_MEDIUM_PROBABILITY = 8
    CLOUD_HIGH_PROBABILITY = 9
    THIN_CIRRUS = 10
    SNOW = 11

    @property
    def stac_name(self) -> str:
        return self.name.lower()


CLASS_DESCRIPTIONS: dict[SceneClass, str] = {
    SceneClass.NO_DATA: "No valid top-of-atmosphere reflectance",
    SceneClass.SATURATED_OR_DEFECTIVE: "Saturated or nodata in some bands only",
    SceneClass.DARK_AREA_PIXELS: "Dark surface (red < 0.08, NIR < 0.15) outside cloud shadows",
    SceneClass.CLOUD_SHADOWS: "Dark pixel where the clouds cast their shadows",
    SceneClass.VEGETATION: "Vegetation (NDVI >= 0.47 or NIR/green >= 2.5)",
    SceneClass.NOT_VEGETATED: "Bare soil, rock, sand, built-up",
    SceneClass.WATER: "Water (blue/SWIR ratio)",
    SceneClass.UNCLASSIFIED: "Unclassified (no rule applies; low cloud probability)",
    SceneClass.CLOUD_MEDIUM_PROBABILITY: "Cloud, probability 35-65 % (or TOA B10 >= 0.035)",
    SceneClass.CLOUD_HIGH_PROBABILITY: "Cloud, probability >= 65 %",
    SceneClass.THIN_CIRRUS: "Thin cirrus (TOA B10 between 0.012 and 0.035)",
    SceneClass.SNOW: "Snow or ice",
}
COLOR_HINTS: dict[SceneClass, str] = {
    SceneClass.NO_DATA: "000000",
    SceneClass.SATURATED_OR_DEFECTIVE: "FF0000",
    SceneClass.DARK_AREA_PIXELS: "2F2F2F",
    SceneClass.CLOUD_SHADOWS: "643200",
    SceneClass.VEGETATION: "00A000",
    SceneClass.NOT_VEGETATED: "FFE65A",
    SceneClass.WATER: "0000FF",
    SceneClass.UNCLASSIFIED: "808080",
    SceneClass.CLOUD_MEDIUM_PROBABILITY: "C0C0C0",
    SceneClass.CLOUD_HIGH_PROBABILITY: "FFFFFF",
    SceneClass.THIN_CIRRUS: "64C8FF",
    SceneClass.SNOW: "FF96FF",
}
"""The usual SCL palette (Sen2Cor's quicklook colours), as STAC ``color_hint`` (RRGGBB)."""

CLOUD_CLASSES = (
    SceneClass.CLOUD_MEDIUM_PROBABILITY,
    SceneClass.CLOUD_HIGH_PROBABILITY,
    SceneClass.THIN_CIRRUS,
)
"""What Sen2Cor counts in ``CLOUDY_PIXEL_PERCENTAGE`` (and so ``eo:cloud_cover``)."""

# Sen2Cor 2.x thresholds (L2A_CAL_SC_GIPP.xml; the ones hard-coded in L2A_SceneClass.py noted).
T_CLOUD_MP, T_CLOUD_HP = 0.35, 0.65
T1_B04 = 0.08
"""Red below this: not a cloud (step 1.1), and with NIR below :data:`T2_DARK_B8A` a dark
feature."""
T2_DARK_B8A = 0.15
"""NIR bound of dark features (hard-coded in step 1.1). Sen2Cor also requires NIR > 0.04 and
leaves darker pixels unclassified (then "defective"); here they are dark too."""
T1_NDSI_CLD = -0.24
"""NDSI (green - SWIR1) / (green + SWIR1) at or below this: not a cloud (step 1.2)."""
T1_NDSI_SNW, T1_B8A_SNW, T1_B02_SNW, T1_R_B02_B04_SNW, T2_B12_SNW = 0.20, 0.15, 0.18, 0.85, 0.25
"""Snow filters 1-5 (step 2): NDSI, NIR, blue and blue/red above, SWIR-2 at or below."""
T2_NDVI, T1_B02_VEG = 0.47, 0.15
"""NDVI (NIR B8A vs red) for vegetation; as a cloud veto only with blue below 0.15 (step 3,
hard-coded)."""
T2_R_B8A_B03 = 2.50
"""NIR/green for vegetation, senescent included (step 4)."""
T11_B02, T12_B02, T12_R_B02_B11 = -0.40, 0.46, 1.5
"""Soil (step 5.1): blue/SWIR1 at most 1.5 and blue at most ``clip(-0.40 r + 0.46, 0.15,
0.32)``."""
T21_B12, T22_B12, T22_R_B02_B11 = 0.1, -0.09, 4.0
"""Water (step 5.2 and the water recovery): blue/SWIR1 above 4 and SWIR2 below
``clip(0.1 r - 0.09, 0.07, 0.21)``."""
T_B02_B04_WATER = 0.034
"""Blue minus red above this: water (step 5.2, second part). A TOA test (Rayleigh makes water
blue at TOA); used only in the cloud veto, which is on TOA."""
T1_R_B8A_B11 = 0.90
"""NIR/SWIR1 at or below this: rock or sand (step 6)."""
T_SOIL_RECOVERY = 0.65
"""Dark pixels with blue/SWIR1 below this are soil (soil recovery)."""
T1_B10, T2_B10, T_CIRRUS_PROBABILITY, T_CIRRUS_B02 = 0.012, 0.035, 0.8, 0.50
"""Thin cirrus (step 7): TOA B10 in (T1, T2), cloud probability below 0.8, blue below 0.5;
B10 at or above T2 makes a candidate pixel a medium-probability cloud."""

TOA_RULES_NOTE = "no surface reflectance: surface rules applied to TOA, as Sen2Cor does"
"""The note of a classification without *boa*: a fallback for a caller that has surface
reflectance, the design for one that classifies before the correction (the pipeline)."""
SUBSTITUTES = {"B8A": "B08", "B08": "B8A"}
"""Narrow and broad NIR see the same plateau; either stands in for the other when absent."""
EPSILON = 1e-6


class _Bands:
    """Named access to a (bands, h, w) stack, with :data:`SUBSTITUTES` for absent bands."""

    def __init__(self, stack: np.ndarray, names: tuple[str, ...], what: str) -> None:
        if stack.ndim != 3 or stack.shape[0] != len(names):
            raise ValueError(
                f"{what}: expected ({len(names)}, h, w) for bands {names}, got {stack.shape}"
            )
        self.stack, self.names, self.what = stack, names, what
        self.substituted: list[str] = []

    def rows(self, rows: slice) -> _Bands:
        """The same bands on *rows* only (views); substitutions are noted on this one."""
        view = _Bands(self.stack[:, rows], self.names, self.what)
        view.substituted = self.substituted
        return view

    def __getitem__(self, band: str) -> np.ndarray:
        if band in self.names:
            return self.stack[self.names.index(band)]
        other = SUBSTITUTES.get(band)
        if other in self.names:
            if band not in self.substituted:
                self.substituted.append(band)
            return self.stack[self.names.index(other)]
        raise ValueError(f"{self.what} has no band {band}: the classifier needs it")


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a / np.maximum(b, EPSILON)


def _normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b) / np.maximum(a + b, EPSILON)


def _blue_swir_ratio(bands: _Bands) -> np.ndarray:
    return _ratio(bands["B02"], bands["B11"])


def snow_mask(surface: _Bands) -> np.ndarray:
    """Sen2Cor's snow filters 1-5: a pixel is snow when none of them says no."""
    b02, b04, b8a, b12 = surface["B02"], surface["B04"], surface["B8A"], surface["B12"]
    return (
        (_normalized_difference(surface["B03"], surface["B11"]) > T1_NDSI_SNW)
        & (b8a > T1_B8A_SNW)
        & (b02 > T1_B02_SNW)
        & (_ratio(b02, b04) > T1_R_B02_B04_SNW)
        & (b12 <= T2_B12_SNW)
    )


def water_mask(surface: _Bands) -> np.ndarray:
    """Sen2Cor's water test (step 5.2): very blue against SWIR, SWIR-2 low."""
    ratio = _blue_swir_ratio(surface)
    bound = np.clip(ratio * T21_B12 + T22_B12, 0.07, 0.21)
    return (ratio > T22_R_B02_B11) & (surface["B12"] < bound)


def vegetation_mask(surface: _Bands) -> np.ndarray:
    """NDVI or NIR/green at Sen2Cor's upper thresholds (dark-vegetation recovery)."""
    b8a = surface["B8A"]
    return (_normalized_difference(b8a, surface["B04"]) >= T2_NDVI) | (
        _ratio(b8a, surface["B03"]) >= T2_R_B8A_B03
    )


def dark_mask(surface: _Bands) -> np.ndarray:
    """Sen2Cor's dark features: low red and low NIR (the shadow candidates too)."""
    return (surface["B04"] < T1_B04) & (surface["B8A"] < T2_DARK_B8A)


def soil_mask(surface: _Bands) -> np.ndarray:
    """Sen2Cor's bare-soil tests: step 5.1 (blue vs blue/SWIR1) and step 6 (rock, sand)."""
    b02 = surface["B02"]
    ratio = _blue_swir_ratio(surface)
    bound = np.clip(ratio * T11_B02 + T12_B02, 0.15, 0.32)
    soil = (ratio <= T12_R_B02_B11) & (b02 <= bound)
    return soil | (_ratio(surface["B8A"], surface["B11"]) <= T1_R_B8A_B11)


def cloud_veto(toa: _Bands) -> np.ndarray:
    """Pixels Sen2Cor's cascade gives a cloud confidence of 0 on TOA: too dark in red, NDSI too
    low, vegetation, soil, water, rock or sand. The cloud detector is not asked about them."""
    b02, b04, b8a = toa["B02"], toa["B04"], toa["B8A"]
    veto = b04 < T1_B04
    veto |= _normalized_difference(toa["B03"], toa["B11"]) <= T1_NDSI_CLD
    veto |= (_normalized_difference(b8a, b04) >= T2_NDVI) & (b02 < T1_B02_VEG)
    veto |= _ratio(b8a, toa["B03"]) >= T2_R_B8A_B03
    veto |= soil_mask(toa)
    veto |= water_mask(toa)
    veto |= (b02 - b04) > T_B02_B04_WATER
    return veto


@dataclass
class SceneClassification:
    """The classifier's output on the input grid."""

    scl: np.ndarray
    """uint8 (h, w), :class:`SceneClass` values."""
    cloud_probability: np.ndarray
    """uint8 (h, w), percent (0 where a cloud is ruled out and on nodata), like MSK_CLDPRB."""
    detection_block: int
    """Block size (pixels) at which s2cloudless saw the scene; 1: every candidate pixel."""
    shadow_azimuth: float | None
    """Direction cloud shadows were cast towards (degrees from north), None if none were."""
    notes: list[str] = field(default_factory=list)
    """Fallbacks taken (band substitutes, unknown geometry), for the run summary."""

    @property
    def masked(self) -> np.ndarray:
        """Clouds, cirrus and cloud shadows: what an atmosphere estimate should not look at."""
        return np.isin(self.scl, [SceneClass.CLOUD_SHADOWS, *(int(c) for c in CLOUD_CLASSES)])


def _scalar(value: np.ndarray | float | None, circular: bool = False) -> float | None:
    """A scene value from a scalar or a per-pixel field (NaN-aware; azimuths as vectors)."""
    if value is None:
        return None
    values = np.asarray(value, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    if not circular:
        return float(values.mean())
    radians = np.radians(values)
    return float(np.degrees(np.arctan2(np.sin(radians).mean(), np.cos(radians).mean())) % 360)


ROW_BLOCK = 256
"""Rows per block of the per-pixel tests."""


def _row_blocks(height: int) -> list[slice]:
    """Blocks of :data:`ROW_BLOCK` rows (one empty block for an empty grid)."""
    return [slice(y, min(height, y + ROW_BLOCK)) for y in range(0, max(height, 1), ROW_BLOCK)]


def _pixel_tests(t: _Bands, s: _Bands, saturated: np.ndarray | None) -> dict[str, np.ndarray]:
    """The per-pixel tests of :func:`classify` on a block of rows (*t*, *s*: its TOA and
    surface bands; *saturated*: its rows of the caller's mask), by name: validity, snow, cloud
    candidates, water, dark, vegetation and soil."""
    any_valid = np.zeros(t.stack.shape[1:], bool)
    all_valid = np.ones(t.stack.shape[1:], bool)
    for plane in t.stack:
        present = np.isfinite(plane)
        any_valid |= present
        all_valid &= present
    valid = np.ones(t.stack.shape[1:], bool)
    for plane in [t[b] for b in (*S2CLOUDLESS_BANDS, "B03")] + [
        s[b] for b in ("B02", "B03", "B04", "B8A", "B11", "B12")
    ]:
        valid &= np.isfinite(plane)
    defective = any_valid & ~(valid & all_valid)
    if saturated is not None:
        defective |= np.asarray(saturated, bool) & any_valid
    valid &= ~defective
    snow = snow_mask(s) & valid
    return {
        "any_valid": any_valid,
        "defective": defective,
        "valid": valid,
        "snow": snow,
        "candidates": valid & ~snow & ~cloud_veto(t),
        "water": water_mask(s) & valid,
        "dark": dark_mask(s) & valid,
        "vegetation": vegetation_mask(s),
        "soil": soil_mask(s),
        "low_blue_swir": _blue_swir_ratio(s) < T_SOIL_RECOVERY,
    }


def classify(
    toa: np.ndarray,
    boa: np.ndarray | None,
    bands: tuple[str, ...],
    resolution_m: float,
    geometry: Geometry | None,
    *,
    sun_azimuth: np.ndarray | float | None = None,
    boa_bands: tuple[str, ...] | None = None,
    saturated: np.ndarray | None = None,
    budget: int = DEFAULT_BUDGET,
    threads: int = 0,
) -> SceneClassification:
    """Classify a scene on one grid.

    *toa*: (len(bands), h, w) L1C TOA reflectance, NaN = invalid; *bands* names its bands
    (the 13 L1C bands; B08 or B8A may be missing, the other stands in). *boa*: the corrected
    surface reflectance on the same grid, bands *boa_bands* (default: *bands* without B10), or
    None to apply the surface rules to TOA. *resolution_m*: the grid's pixel size.
    *geometry*: :class:`~component.model.atmosphere.Geometry` (its sun zenith sets how far
    shadows fall); None or ``known=False`` casts the range of usual sun zeniths.
    *sun_azimuth* (degrees from north, scalar or field): the direction shadows fall away from;
    it is not part of ``Geometry`` (the atmosphere needs only the relative azimuth); None: the
    direction is estimated from the scene. *saturated*: optional (h, w) mask of saturated or
    defective pixels. *budget*: s2cloudless evaluations allowed (speed; see
    :mod:`component.model.scene_clouds`). *threads*: the detector's threads (0: the cores).
    """
    t = _Bands(np.asarray(toa, np.float32), tuple(bands), "toa")
    height, width = toa.shape[1:]
    if boa is None:
        s, notes = t, [TOA_RULES_NOTE]
    else:
        names = tuple(boa_bands) if boa_bands else tuple(b for b in bands if b != "B10")
        s, notes = _Bands(np.asarray(boa, np.float32), names, "boa"), []
        if boa.shape[1:] != (height, width):
            raise ValueError(f"boa grid {boa.shape[1:]} differs from toa grid {(height, width)}")

    # The per-pixel tests run on blocks of rows: their float temporaries stay a few MB, where
    # on a whole 20 m tile each would be 0.12 GB and several live at once.
    masks: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for rows in _row_blocks(height):
            block = None if saturated is None else saturated[rows]
            for name, values in _pixel_tests(t.rows(rows), s.rows(rows), block).items():
                masks.setdefault(name, np.empty((height, width), bool))[rows] = values
    any_valid, defective, valid = masks["any_valid"], masks["defective"], masks["valid"]
    snow, candidates = masks["snow"], masks["candidates"]
    water, dark = masks["water"], masks["dark"]

    with np.errstate(invalid="ignore", divide="ignore"):
        model_toa = [t[b] for b in S2CLOUDLESS_BANDS]
        probability, block = cloud_probability(model_toa, candidates, budget, threads)
        b10 = t["B10"]
        high = probability >= T_CLOUD_HP
        thin_cirrus = (
            valid
            & (b10 > T1_B10)
            & (b10 < T2_B10)
            & (probability < T_CIRRUS_PROBABILITY)
            & (t["B02"] < T_CIRRUS_B02)
            & ~high
        )
        medium = ((probability >= T_CLOUD_MP) | (candidates & (b10 >= T2_B10))) & ~high
        clouds = (high | medium) & ~thin_cirrus
        sun_zenith = _scalar(geometry.sun_zenith) if geometry and geometry.known else None
        if (geometry is None or not geometry.known) and clouds.any():
            notes.append("sun zenith unknown: shadows cast over the usual range of sun zeniths")
        zone = shadow_zone(
            clouds,
            dark & ~water & ~snow,
            resolution_m,
            sun_zenith,
            _scalar(sun_azimuth, circular=True),
        )
        if zone.note:
            notes.append(zone.note)
        shadow = zone.zone & dark & ~water & ~snow
        soil_recovery = dark & masks["low_blue_swir"]
        conditions = [
            ~any_valid,
            defective,
            high,
            thin_cirrus,
            medium,
            snow,
            water,
            shadow,
            masks["vegetation"],
            dark & ~soil_recovery,
            masks["soil"] | soil_recovery,
        ]
    choices = [
        SceneClass.NO_DATA,
        SceneClass.SATURATED_OR_DEFECTIVE,
        SceneClass.CLOUD_HIGH_PROBABILITY,
        SceneClass.THIN_CIRRUS,
        SceneClass.CLOUD_MEDIUM_PROBABILITY,
        SceneClass.SNOW,
        SceneClass.WATER,
        SceneClass.CLOUD_SHADOWS,
        SceneClass.VEGETATION,
        SceneClass.DARK_AREA_PIXELS,
        SceneClass.NOT_VEGETATED,
    ]
    # np.select's order (the first condition that holds wins) in uint8, without its int64
    # result and temporaries: the conditions painted last to first.
    scl = np.full((height, width), int(SceneClass.UNCLASSIFIED), np.uint8)
    for condition, choice in zip(reversed(conditions), reversed(choices), strict=True):
        scl[condition] = int(choice)
    del conditions
    probability[~valid] = 0
    probability *= 100
    percent = np.rint(probability, out=probability).astype(np.uint8)
    del probability
    for band in (*t.substituted, *(s.substituted if s is not t else [])):
        notes.append(f"no {band} band: {SUBSTITUTES[band]} stands in for it")
    if block > 1:
        notes.append(f"cloud probability from s2cloudless on {block}x{block}-pixel blocks")
    return SceneClassification(scl, percent, block, zone.shadow_azimuth, list(dict.fromkeys(notes)))


def stac_classes(values: tuple[int, ...] | None = None) -> list[dict[str, object]]:
    """``classification:classes`` for the SCL asset: value, name, description, color hint, and
    ``nodata: true`` on 0. All twelve are listed: each can occur (``defective`` only where a
    band is partly invalid or the caller flags saturation). *values* restricts the list."""
    classes = []
    for member in SceneClass:
        if values is not None and int(member) not in values:
            continue
        entry: dict[str, object] = {
            "value": int(member),
            "name": member.stac_name,
            "description": CLASS_DESCRIPTIONS[member],
            "color_hint": COLOR_HINTS[member],
        }
        if member is SceneClass.NO_DATA:
            entry["nodata"] = True
        classes.append(entry)
    return classes


def class_percentages(scl: np.ndarray) -> dict[str, float]:
    """Share of each class in percent, by STAC name: ``no_data`` of all pixels, the others of
    the pixels with data (Sen2Cor's quality-indicator convention); empty when no pixel has data
    but ``no_data`` (100)."""
    counts = np.bincount(np.asarray(scl, np.uint8).ravel(), minlength=len(SceneClass))
    total = int(counts.sum())
    with_data = total - int(counts[SceneClass.NO_DATA])
    result = {SceneClass.NO_DATA.stac_name: 100.0 * counts[SceneClass.NO_DATA] / max(total, 1)}
    if with_data == 0:
        return {key: round(float(v), 4) for key, v in result.items()}
    for member in SceneClass:
        if member is not SceneClass.NO_DATA:
            result[member.stac_name] = 100.0 * counts[member] / with_data
    return {key: round(float(v), 4) for key, v in result.items()}


def cover_properties(scl: np.ndarray) -> dict[str, float]:
    """``eo:cloud_cover`` (medium and high probability clouds and thin cirrus, Sen2Cor's
    cloudy-pixel percentage) and ``eo:snow_cover``, in percent of the pixels with data, computed
    on this product (not copied from the L1C). Empty when no pixel has data."""
    shares = class_percentages(scl)
    if len(shares) == 1:
        return {}
    cloud = sum(shares[c.stac_name] for c in CLOUD_CLASSES)
    return {
        "eo:cloud_cover": round(cloud, 2),
        "eo:snow_cover": round(shares[SceneClass.SNOW.stac_name], 2),
    }
