"""Score a model card on the real L1C/L2A pairs of ../shared/data, split into selection and test.

The five real pairs are split once, here, and nothing else decides which is which:

* ``selection``: TerraMind ``282D_485L_3_3`` (thick cirrus) and ``637U_59R_1_3`` (dark, hazy).
  Design choices (estimator, adjacency, smoothing, training variants) are compared on these.
* ``test``: TerraMind ``38D_378R_2_3`` and both sen2r Lago Barbellino chips (2017-07-03,
  2019-07-23; Alps at 1.9 km, lake, snow, clouds). Scored once the design is fixed; no choice
  is made on them. Training never uses any pair (it simulates over other scenes).

Every scene goes through ``python -m component evaluate``'s code with the file layouts below
(1-based band indices in the card's order, 0 where the file lacks the band).

    .venv/bin/python scripts/score_pairs.py --set selection [--card CARD.json] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from component.model import atmosphere
from component.training.evaluate import METHODS, evaluate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pairs"
TERRAMIND = {
    "l1c_bands": "1,2,3,4,5,6,7,8,9,10,11,12,13",
    "l2a_bands": "1,2,3,4,5,6,7,8,9,10,11,12",
}
SEN2R = {"l1c_bands": "1,2,3,4,5,6,7,8,0,9,10,11,12", "l2a_bands": "1,2,3,4,5,6,7,8,0,9,10,11"}
SETS = {
    "selection": ["282D_485L_3_3", "637U_59R_1_3"],
    "test": ["38D_378R_2_3", "sen2r_20170703", "sen2r_20190723"],
}


def scene_args(
    scene: str,
    card: Path | None,
    weights: Path | None,
    cirrus_correction: bool = False,
    elevation_m: float | None = None,
) -> argparse.Namespace:
    """The evaluate flags for one shared scene."""
    if scene.startswith("sen2r_"):
        date = scene.split("_")[1]
        l1c = DATA / "sen2r" / f"S2A1C_{date}_022_Barbellino_TOA_10.tif"
        l2a = DATA / "sen2r" / f"S2A2A_{date}_022_Barbellino_BOA_10.tif"
        layout, nodata = SEN2R, 65535.0
    else:
        l1c = DATA / "terramind" / "L1C" / f"{scene}.tif"
        l2a = DATA / "terramind" / "L2A" / f"{scene}.tif"
        layout, nodata = TERRAMIND, None
    return argparse.Namespace(
        l1c=l1c,
        l2a=l2a,
        **layout,
        l1c_scale=10000.0,
        l1c_offset=0.0,
        l1c_nodata=nodata,
        l2a_scale=10000.0,
        l2a_offset=0.0,
        l2a_nodata=nodata,
        sun_zenith=None,
        sun_azimuth=None,
        view_zenith=None,
        view_azimuth=None,
        card=card,
        weights=weights,
        cirrus_correction=cirrus_correction,
        elevation_m=elevation_m,
        dem=None,
        device="cpu",
        engine="auto",
        save_prediction=None,
        prediction_dtype="float32",
        figure=None,
    )


def row(result: dict, method: str) -> dict[str, float]:
    r = result[method]
    return {
        "psnr_all": r["all"]["psnr"],
        "sam_all": r["all"]["sam"],
        "psnr_rgb": r["rgb"]["psnr"],
        "sam_rgb": r["rgb"]["sam"],
        "ndvi_mae": r["ndvi"]["mae"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=[*SETS, "all"], default="selection")
    parser.add_argument("--card", type=Path, default=None)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every report here")
    parser.add_argument(
        "--cirrus-correction", action="store_true", help="as evaluate's (default: flag only)"
    )
    parser.add_argument(
        "--cirrus-dimming",
        type=float,
        default=None,
        metavar="K",
        help="measure another k of the cirrus layer's dimming (1 - k c)^2 than the shipped one",
    )
    parser.add_argument(
        "--sea-level",
        action="store_true",
        help="score every chip at sea level (default: its elevation from the offline map)",
    )
    args = parser.parse_args()
    if args.cirrus_dimming is not None:  # a measurement of the constant, not a run setting
        atmosphere.CIRRUS_DIMMING = args.cirrus_dimming
    scenes = [s for name, group in SETS.items() if args.set in (name, "all") for s in group]
    reports = {
        scene: evaluate(
            scene_args(
                scene,
                args.card,
                args.weights,
                args.cirrus_correction,
                0.0 if args.sea_level else None,
            )
        )
        for scene in scenes
    }
    print(
        f"{'scene':16s}{'method':9s}{'PSNR all':>9s}{'SAM all':>9s}{'PSNR rgb':>9s}"
        f"{'SAM rgb':>9s}{'NDVI MAE':>9s}   atmosphere (model)"
    )
    scored = [m for m in METHODS if all(m in report for report in reports.values())]
    for scene, report in reports.items():
        atm = report["atmosphere"]
        for method in scored:
            r = row(report, method)
            extra = (
                (
                    f"   AOT {atm['aot550_mean']:.2f} WV {atm['water_vapour_cm_mean']:.2f} "
                    f"cirrus {atm['cirrus_mean']:.3f} z {report['elevation_m']:.0f} m"
                )
                if method == "model"
                else ""
            )
            print(
                f"{scene:16s}{method:9s}{r['psnr_all']:9.2f}{r['sam_all']:9.4f}"
                f"{r['psnr_rgb']:9.2f}{r['sam_rgb']:9.4f}{r['ndvi_mae']:9.4f}{extra}"
            )
    for method in scored:
        rows = [row(r, method) for r in reports.values()]
        means = {k: float(np.mean([x[k] for x in rows])) for k in rows[0]}
        print(
            f"{'mean':16s}{method:9s}{means['psnr_all']:9.2f}{means['sam_all']:9.4f}"
            f"{means['psnr_rgb']:9.2f}{means['sam_rgb']:9.4f}{means['ndvi_mae']:9.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1, default=float))


if __name__ == "__main__":
    main()
