"""Measure the scene classifier: agreement with Sen2Cor's SCL, speed, and the cloud libraries.

    .venv/bin/python scripts/measure_scene_classification.py            # agreement only
    .venv/bin/python scripts/measure_scene_classification.py --speed    # + 1830² and 5490² timings
    .venv/bin/python scripts/measure_scene_classification.py --libraries  # + s2cloudless/ukis

Agreement: the two sen2r chips of Lago Barbellino (``../shared/data/pairs/sen2r``) carry Sen2Cor's
SCL on a 20 m grid of 12 x 21 pixels: 504 reference pixels in all, no snow, shadow or cirrus in
them. That is a tiny reference: the table says where the classifier and Sen2Cor agree on these
two scenes, not how good either is. The chips are held out: no threshold was chosen on them.
The 10 m TOA and BOA chips are averaged 2 x 2 onto the SCL grid. The chips have no B8A (B08
stands in) and no angles: the sun position is computed from the date, the chip's centre and
Sentinel-2A's overpass time on relative orbit 22 (about 10:10 UTC there).

Speed: real L1C/L2A pairs (TerraMind chips, 13 bands) tiled to a 60 m tile (1830²) and a 20 m
tile (5490²): a clear savanna, clear fields and a hazy, cloudy scene; wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import rasterio

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.model.atmosphere import Geometry
from component.model.scene_classification import SceneClass, classify
from component.model.scene_clouds import S2CLOUDLESS_BANDS, predict

SEN2R_TOA_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11",
                   "B12")  # fmt: skip
SEN2R_BOA_BANDS = tuple(b for b in SEN2R_TOA_BANDS if b != "B10")
OVERPASS_UTC = (10, 10)
"""Sentinel-2A over relative orbit 22 at 46° N (e.g. tile 32TNR, sensing time 10:10 UTC)."""
NAMES = {int(c): c.stac_name for c in SceneClass}
SHORT = {0: "nodata", 1: "defect", 2: "dark", 3: "shadow", 4: "veg", 5: "notveg", 6: "water",
         7: "unclass", 8: "cld-med", 9: "cld-high", 10: "cirrus", 11: "snow"}  # fmt: skip
GROUPS = {
    "cloud (8 9 10)": (8, 9, 10),
    "shadow (3)": (3,),
    "water (6)": (6,),
    "snow (11)": (11,),
    "vegetation (4)": (4,),
    "other land (2 5 7)": (2, 5, 7),
}


def sun_position(when: datetime, lat: float, lon: float) -> tuple[float, float]:
    """Sun zenith and azimuth (degrees, azimuth from north) by NOAA's approximate equations."""
    day = when.timetuple().tm_yday
    hour = when.hour + when.minute / 60
    gamma = 2 * math.pi / 365 * (day - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (
        0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma)
    )  # fmt: skip
    decl = (0.006918 - 0.399912 * math.cos(gamma) + 0.070257 * math.sin(gamma)
            - 0.006758 * math.cos(2 * gamma) + 0.000907 * math.sin(2 * gamma)
            - 0.002697 * math.cos(3 * gamma) + 0.00148 * math.sin(3 * gamma))  # fmt: skip
    solar_minutes = hour * 60 + eqtime + 4 * lon
    hour_angle = math.radians(solar_minutes / 4 - 180)
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(
        hour_angle
    )
    zenith = math.acos(max(-1.0, min(1.0, cos_zenith)))
    azimuth = math.degrees(
        math.atan2(
            math.sin(hour_angle),
            math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi),
        )
    )
    return math.degrees(zenith), (azimuth + 180) % 360


def read_reflectance(path: Path) -> tuple[np.ndarray, rasterio.Affine, str]:
    with rasterio.open(path) as source:
        dn = source.read().astype(np.float32)
        return np.where(dn == 65535, np.nan, dn / 10000), source.transform, str(source.crs)


def to_20m(values: np.ndarray) -> np.ndarray:
    bands, height, width = values.shape
    return values.reshape(bands, height // 2, 2, width // 2, 2).mean(axis=(2, 4))


def chips(data: Path) -> list[dict[str, object]]:
    from pyproj import Transformer

    out = []
    for scl_path in sorted((data / "pairs" / "sen2r").glob("*_SCL_10.tif")):
        date = scl_path.name.split("_")[1]
        toa_path = next((data / "pairs" / "sen2r").glob(f"S2A1C_{date}_*_TOA_10.tif"))
        boa_path = scl_path.with_name(scl_path.name.replace("_SCL_", "_BOA_"))
        toa, transform, crs = read_reflectance(toa_path)
        boa, _, _ = read_reflectance(boa_path)
        with rasterio.open(scl_path) as source:
            scl = source.read(1)
        x = transform.c + transform.a * toa.shape[2] / 2
        y = transform.f + transform.e * toa.shape[1] / 2
        lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
        when = datetime.strptime(date, "%Y%m%d").replace(
            hour=OVERPASS_UTC[0], minute=OVERPASS_UTC[1], tzinfo=timezone.utc
        )
        zenith, azimuth = sun_position(when, lat, lon)
        out.append({"date": date, "toa": to_20m(toa), "boa": to_20m(boa), "scl": scl,
                    "toa10": toa, "transform": transform,
                    "sun_zenith": zenith, "sun_azimuth": azimuth})  # fmt: skip
    return out


def physics_boa(chip: dict[str, object]) -> np.ndarray:
    """The component's physics-only correction (shipped card, standard atmosphere) of a chip."""
    from affine import Affine

    from component.core.grid import Grid
    from component.model.card import load_card
    from component.model.engines import build_scene_corrector

    corrector, _ = build_scene_corrector(load_card(), device="cpu")
    toa = np.full((len(L1C_BANDS), *chip["toa"].shape[1:]), np.nan, np.float32)
    for i, band in enumerate(SEN2R_TOA_BANDS):
        toa[L1C_BANDS.index(band)] = chip["toa"][i]
    toa[L1C_BANDS.index("B8A")] = toa[L1C_BANDS.index("B08")]  # no B8A in the chips
    t = chip["transform"]
    grid = Grid(None, Affine(20.0, 0, t.c, 0, -20.0, t.f), toa.shape[2], toa.shape[1])
    geometry = Geometry(chip["sun_zenith"], 5.0, 90.0)
    state = corrector.estimate(toa, grid, geometry)
    boa = [corrector.correct(b, toa[L1C_BANDS.index(b)], grid, state) for b in L2A_BANDS]
    return np.stack(boa)


def confusion(reference: np.ndarray, ours: np.ndarray) -> np.ndarray:
    table = np.zeros((12, 12), np.int64)
    np.add.at(table, (reference.ravel(), ours.ravel()), 1)
    return table


def print_confusion(table: np.ndarray, title: str) -> None:
    rows = [v for v in range(12) if table[v].sum()]
    cols = [v for v in range(12) if table[:, v].sum()]
    print(f"\n{title}\n(rows: Sen2Cor SCL, columns: this classifier; pixels)")
    print(f"{'':>10}" + "".join(f"{SHORT[c]:>9}" for c in cols) + f"{'total':>8}")
    for r in rows:
        print(f"{SHORT[r]:>10}" + "".join(f"{table[r, c]:>9}" for c in cols)
              + f"{table[r].sum():>8}")  # fmt: skip
    total = table.sum()
    print(f"overall agreement: {np.trace(table) / total:.1%} of {total} pixels")
    for name, values in GROUPS.items():
        ref = table[list(values)].sum()
        est = table[:, list(values)].sum()
        both = table[np.ix_(values, values)].sum()
        if ref or est:
            iou = both / (ref + est - both)
            agree = (total - ref - est + 2 * both) / total
            print(f"  {name:<20} reference {ref:>4}  ours {est:>4}  both {both:>4}  IoU {iou:.2f}"
                  f"  agreement {agree:.1%}")  # fmt: skip


LABELS = {
    "reference": "Sen2Cor's own L2A BOA",
    "physics": "the physics-only corrector's BOA",
    "none": "TOA (no BOA)",
}


def agreement(data: Path) -> None:
    scenes = chips(data)
    for source in ("reference", "physics", "none"):
        total = np.zeros((12, 12), np.int64)
        for chip in scenes:
            if source == "reference":
                boa, boa_bands = chip["boa"], SEN2R_BOA_BANDS
            elif source == "physics":
                try:
                    boa, boa_bands = physics_boa(chip), L2A_BANDS
                except Exception as error:  # the corrector is developed alongside
                    print(f"\nphysics-only BOA unavailable ({type(error).__name__}: {error})")
                    break
            else:
                boa, boa_bands = None, None
            geometry = Geometry(chip["sun_zenith"], 5.0, 90.0)
            result = classify(chip["toa"], boa, SEN2R_TOA_BANDS, 20.0, geometry,
                              sun_azimuth=chip["sun_azimuth"], boa_bands=boa_bands)  # fmt: skip
            table = confusion(chip["scl"], result.scl)
            total += table
            print(f"\n{chip['date']} sun zenith {chip['sun_zenith']:.1f} azimuth "
                  f"{chip['sun_azimuth']:.1f}; notes: {'; '.join(result.notes)}")  # fmt: skip
            print_confusion(table, f"{chip['date']}, surface rules on {LABELS[source]}")
        else:
            print_confusion(total, f"BOTH CHIPS, surface rules on {LABELS[source]}")


def libraries(data: Path) -> None:
    """Each library's cloud (and shadow) mask on the chips against the SCL's, per pixel."""
    print("\n== cloud libraries alone on the chips (no rules), against SCL clouds (8, 9)")
    for chip in chips(data):
        reference = np.isin(chip["scl"], (8, 9))
        index = [SEN2R_TOA_BANDS.index(b if b != "B8A" else "B08") for b in S2CLOUDLESS_BANDS]
        spectra = chip["toa"][index].reshape(len(index), -1).T
        mask = (predict(spectra) >= 0.4).reshape(reference.shape)
        report(chip["date"], "s2cloudless (0.4, per pixel, 20 m)", reference, mask)
        try:
            from ukis_csmask.mask import CSmask
        except ImportError:
            print("  ukis-csmask not installed: skipped")
            continue
        order = [SEN2R_TOA_BANDS.index(b) for b in ("B02", "B03", "B04", "B08", "B11", "B12")]
        image = np.ascontiguousarray(np.moveaxis(np.nan_to_num(chip["toa10"][order]), 0, -1))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            masked = CSmask(image, ["blue", "green", "red", "nir", "swir16", "swir22"],
                            product_level="l1c", intra_op_num_threads=2).csm[..., 0]  # fmt: skip
        cloud = masked.reshape(reference.shape[0], 2, reference.shape[1], 2) == 1
        shadow = masked.reshape(reference.shape[0], 2, reference.shape[1], 2) == 2
        report(chip["date"], "ukis-csmask clouds (10 m, majority)", reference,
               cloud.mean(axis=(1, 3)) >= 0.5)  # fmt: skip
        report(chip["date"], "ukis-csmask shadows vs SCL 3", chip["scl"] == 3,
               shadow.mean(axis=(1, 3)) >= 0.5)  # fmt: skip


def report(date: str, what: str, reference: np.ndarray, mask: np.ndarray) -> None:
    both, either = int((reference & mask).sum()), int((reference | mask).sum())
    iou = f"{both / either:.2f}" if either else "-"
    print(f"  {date} {what}: reference {int(reference.sum())}, detected {int(mask.sum())}, "
          f"both {both}, IoU {iou}, agreement {np.mean(reference == mask):.1%}")  # fmt: skip


def tiled_scenes(data: Path, size: int, resolution: float) -> dict[str, tuple]:
    out = {}
    for key, name in (("clear", "38D_378R_2_3"), ("clear fields", "637U_59R_1_3"),
                      ("cloudy", "282D_485L_3_3")):  # fmt: skip
        pair = []
        for level in ("L1C", "L2A"):
            with rasterio.open(data / "pairs" / "terramind" / level / f"{name}.tif") as source:
                values = source.read().astype(np.float32) / 10000
            reps = (1, -(-size // values.shape[1]), -(-size // values.shape[2]))
            pair.append(np.tile(values, reps)[:, :size, :size])
        out[key] = tuple(pair)
    return out


def speed(data: Path) -> None:
    print(f"\n== speed ({os.cpu_count()} cores; wall and CPU seconds, one run each)")
    geometry = Geometry(40.0, 5.0, 90.0)
    for size, resolution in ((1830, 60.0), (5490, 20.0)):
        for key, (toa, boa) in tiled_scenes(data, size, resolution).items():
            wall, cpu = time.perf_counter(), time.process_time()
            result = classify(toa, boa, L1C_BANDS, resolution, geometry, sun_azimuth=150.0)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            clouds = np.isin(result.scl, (8, 9)).mean()
            print(
                f"  {size}² at {resolution:.0f} m, {key:<13}: {wall:6.2f} s wall, {cpu:6.2f} s "
                f"CPU; clouds {clouds:.0%}, s2cloudless block {result.detection_block}"
            )
            del result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--libraries", action="store_true")
    args = parser.parse_args()
    if not (args.data / "pairs" / "sen2r").is_dir():
        print(f"no sen2r chips under {args.data}", file=sys.stderr)
        return 2
    agreement(args.data)
    if args.libraries:
        libraries(args.data)
    if args.speed:
        speed(args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
