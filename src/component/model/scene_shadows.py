"""Where cloud shadows can fall: the cloud mask cast along the sun's azimuth.

A cloud at height ``h`` casts its shadow ``h * tan(sun zenith)`` away from the sun, towards
azimuth ``sun azimuth + 180``. Cloud heights are unknown, so the cloud mask is cast over a range
of heights and the union is the zone where a shadow may lie; the classifier then keeps the
*dark* pixels of that zone (Sen2Cor does the same: a geometric shadow probability from a
cloud-height distribution, combined with a radiometric test; ``L2A_SceneClass.L2A_SHD``).

The view geometry shifts where a cloud appears by ``h * tan(view zenith)`` (parallax, at most
0.2 h for Sentinel-2's 12° field); it is not modelled and the zone is widened by one cell
instead. The zone is computed on cells of :data:`CELL_M` (coarser than the product: the height
range smears it over kilometres anyway), so a full 20 m tile costs well under a second. A cell
casts only when at least half of it is cloud: specks (a bright roof, a few pixels of a cloud
edge) would otherwise smear kilometre-long zones over dark fields for shadows smaller than a
cell (Sen2Cor median-filters its cloud mask 7 x 7 before casting, for the same reason).

Unknown sun azimuth (chips without metadata): the shadow direction is estimated from the scene.
The cloud mask is moved as a whole in every direction (every :data:`AZIMUTH_STEP_DEG`) and by
every distance of the range; where it lands, the fraction of dark pixels under it is its score,
and a direction scores its best distance. The best direction is kept only when its score
exceeds the median direction's by :data:`DIRECTION_CONTRAST` (a real shadow makes one direction
stand out; a scene dark everywhere, or without shadows, does not); otherwise no pixel is called
a cloud shadow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLOUD_HEIGHT_RANGE_M = (500.0, 6000.0)
"""Cloud-top heights cast. Sen2Cor's height distribution (L2A_CSHD_1) is at half maximum from
about 0.6 to 4.2 km with tails to 6 km; low cumulus start near 0.5 km."""
CELL_M = 120.0
"""Cell size of the zone computation (never finer than the product's grid)."""
UNKNOWN_SUN_ZENITH_RANGE = (20.0, 65.0)
"""Sun zeniths assumed when the geometry is unknown: Sentinel-2's usual span (10:30 solar
time, latitudes 56° S - 84° N, the seasons), which widens the cast distances."""
AZIMUTH_STEP_DEG = 10.0
SEARCH_CELL_M = 480.0
"""Cell size of the direction search (36 casts: kept coarse so a 20 m tile stays cheap; finer
for small scenes, which keep at least 32 cells across)."""
DIRECTION_CONTRAST = 0.2
"""How much darker (fraction of dark pixels under the moved clouds) the best direction must be
than the median direction for an unknown azimuth to be accepted. Not fitted to data: a shadow
under the right move is nearly all dark, a wrong move over a bright scene nearly none."""


@dataclass(frozen=True)
class ShadowZone:
    """The zone (h, w) and how it was found."""

    zone: np.ndarray
    shadow_azimuth: float | None
    """Direction shadows were cast towards, degrees from north; None when none was."""
    note: str | None = None


def _shift_or(target: np.ndarray, source: np.ndarray, dr: int, dc: int) -> None:
    """``target |= source`` moved by (dr, dc) cells, nothing wrapping around."""
    h, w = source.shape
    if abs(dr) >= h or abs(dc) >= w:
        return
    dst = target[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)]
    dst |= source[max(-dr, 0) : h - max(dr, 0), max(-dc, 0) : w - max(dc, 0)]


def _offsets(azimuth_deg: float, near: float, far: float) -> list[tuple[int, int]]:
    """(rows, cols) moves towards *azimuth_deg* for every distance in [near, far] cells, in
    steps of at most one cell on either axis (no gap); rows grow southwards, columns east."""
    east, north = math.sin(math.radians(azimuth_deg)), math.cos(math.radians(azimuth_deg))
    step = 1.0 / max(abs(east), abs(north))
    moves = (
        (round(-north * distance), round(east * distance))
        for distance in np.arange(near, far + step, step)
    )
    return list(dict.fromkeys(moves))


def cast(clouds: np.ndarray, azimuth_deg: float, near: float, far: float) -> np.ndarray:
    """The union of *clouds* moved towards *azimuth_deg* by every distance in [near, far]
    (cells)."""
    zone = np.zeros_like(clouds)
    for offset in _offsets(azimuth_deg, near, far):
        _shift_or(zone, clouds, *offset)
    return zone


def _coarse(mask: np.ndarray, factor: int, how: str) -> np.ndarray:
    h, w = mask.shape
    bh, bw = -(-h // factor), -(-w // factor)
    padded = np.zeros((bh * factor, bw * factor), np.float32)
    padded[:h, :w] = mask
    blocks = padded.reshape(bh, factor, bw, factor)
    mean = blocks.mean(axis=(1, 3))
    return mean >= 0.5 if how == "majority" else mean


def _estimate_direction(
    clouds: np.ndarray, dark: np.ndarray, resolution_m: float, near_m: float, far_m: float
) -> tuple[float, float]:
    """The shadow direction, and how much it stands out.

    For each direction and each distance, the cloud cells are moved as a whole (one height for
    the scene) and scored by the fraction of dark pixels under them; a direction scores its
    best distance. Positions where fewer than half the cloud cells land on the scene, outside
    clouds, are not scored (a sliver at the edge says nothing).
    """
    # At least 32 cells across, so that a small scene is not reduced to a handful of cells.
    factor = max(1, min(round(SEARCH_CELL_M / resolution_m), min(clouds.shape) // 32))
    cell = resolution_m * factor
    cloud_cells = _coarse(clouds, factor, "majority")
    dark_cells = _coarse(dark & ~clouds, factor, "mean") * ~cloud_cells
    free = (~cloud_cells).astype(np.float32)
    source = cloud_cells.astype(np.float32)
    needed = 0.5 * float(source.sum())
    h, w = source.shape
    scores: dict[float, float] = {}
    for azimuth in np.arange(0.0, 360.0, AZIMUTH_STEP_DEG):
        best = 0.0
        for dr, dc in _offsets(float(azimuth), near_m / cell, far_m / cell):
            if abs(dr) >= h or abs(dc) >= w:
                continue
            src = source[max(-dr, 0) : h - max(dr, 0), max(-dc, 0) : w - max(dc, 0)]
            dst = (slice(max(dr, 0), h + min(dr, 0)), slice(max(dc, 0), w + min(dc, 0)))
            landed = float((src * free[dst]).sum())
            if landed >= needed:
                best = max(best, float((src * dark_cells[dst]).sum()) / landed)
        scores[float(azimuth)] = best
    direction = max(scores, key=lambda a: scores[a])
    return direction, scores[direction] - float(np.median(list(scores.values())))


def shadow_zone(
    clouds: np.ndarray,
    dark: np.ndarray,
    resolution_m: float,
    sun_zenith: float | None,
    sun_azimuth: float | None,
) -> ShadowZone:
    """Where shadows of *clouds* may fall on the product grid (h, w).

    *sun_zenith* None: the geometry is unknown (a range is cast). *sun_azimuth* None: the
    direction is estimated from *dark* (pixels dark enough to be shadow), or given up.
    """
    height, width = clouds.shape
    if not clouds.any():
        return ShadowZone(np.zeros_like(clouds), None)
    factor = max(1, round(CELL_M / resolution_m))
    cell = resolution_m * factor
    cloud_cells = _coarse(clouds, factor, "majority")
    if not cloud_cells.any():
        return ShadowZone(np.zeros_like(clouds), None)
    low, high = CLOUD_HEIGHT_RANGE_M
    if sun_zenith is None:
        z_low, z_high = UNKNOWN_SUN_ZENITH_RANGE
    else:
        z_low = z_high = min(max(float(sun_zenith), 0.0), 85.0)
    near = low * math.tan(math.radians(z_low)) / cell
    far = high * math.tan(math.radians(z_high)) / cell
    note = None
    if sun_azimuth is None:
        best, contrast = _estimate_direction(clouds, dark, resolution_m, near * cell, far * cell)
        if contrast < DIRECTION_CONTRAST:
            return ShadowZone(
                np.zeros_like(clouds),
                None,
                "sun azimuth unknown and no shadow direction stands out: no cloud shadows",
            )
        direction = best
        note = f"sun azimuth unknown: shadow direction {best:.0f} deg estimated from the scene"
    else:
        direction = (float(sun_azimuth) + 180.0) % 360.0
    zone = cast(cloud_cells, direction, near, far)
    from scipy.ndimage import binary_dilation  # on use: see component.pipeline

    zone = binary_dilation(zone, np.ones((3, 3), bool))
    fine = np.repeat(np.repeat(zone, factor, 0), factor, 1)[:height, :width]
    return ShadowZone(fine & ~clouds, direction, note)
