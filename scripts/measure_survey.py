"""What the survey's 60 m classification changes in the atmosphere, on the real pairs.

The pipeline keeps clouds, their shadows and snow out of the atmosphere estimate with the
scene classification of its 60 m survey (:mod:`component.engine.decode`), whatever
``--resolution`` is; before the survey, a 10 m or 20 m product took them from its 20 m SCL.
For each real pair of ``../shared/data/pairs`` (bands resampled to 10 m), this estimates the
atmosphere three ways, the TOA of the coarse grid being the same block means each time:

* ``none``: nothing kept out (what ``evaluate`` and ``scripts/score_pairs.py`` do);
* ``20 m``: the clouds of a classification on the 20 m grid (the earlier 10 m product);
* ``60 m``: the clouds of a classification on the 60 m grid (the survey's).

It prints each scene's share of coarse cells kept out, the mean AOT and water vapour, the
largest per-cell differences of ``60 m`` from ``20 m``, and PSNR and SAM against Sen2Cor's
L2A of the same acquisition. No choice is made from these figures (the split of
``scripts/score_pairs.py`` stands): they say what the survey costs or gains.

    .venv/bin/python scripts/measure_survey.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.core.blocks import block_mean
from component.core.grid import Grid
from component.engine.scene import classify_scene
from component.model.card import load_card
from component.model.engines import build_scene_corrector
from component.training import metrics
from component.training.pairs import shared_pairs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLIT = {
    "282D_485L_3_3": "selection",
    "637U_59R_1_3": "selection",
    "38D_378R_2_3": "test",
    "sen2r_20170703": "test",
    "sen2r_20190723": "test",
}


def _grid(resolution: float, shape: tuple[int, ...]) -> Grid:
    return Grid(None, Affine(resolution, 0, 0, 0, -resolution, 0), shape[-1], shape[-2])


def main() -> None:
    card = load_card()
    corrector = build_scene_corrector(card)[0]
    coarse_m = card.atmosphere_grid_m
    pairs = shared_pairs(DATA, L1C_BANDS, L2A_BANDS)
    print(
        f"{'scene':16s}{'set':>10s}{'policy':>7s}{'kept out':>9s}{'AOT':>7s}{'WV cm':>7s}"
        f"{'PSNR':>7s}{'SAM':>7s}{'max dAOT':>9s}{'max dWV':>8s}"
    )
    for name, pair in pairs.items():
        toa, boa = pair.toa, pair.boa
        fine = _grid(10, toa.shape)
        coarse_toa = block_mean(toa, round(coarse_m / 10))
        coarse = _grid(coarse_m, coarse_toa.shape)
        present = tuple(b for i, b in enumerate(L1C_BANDS) if np.isfinite(toa[i]).any())
        states = {}
        for policy, scene_m in (("none", None), ("20 m", 20), ("60 m", 60)):
            exclude = None
            if scene_m is not None:
                stack = block_mean(toa, scene_m // 10)
                scene = classify_scene(stack, _grid(scene_m, stack.shape), coarse, None,
                                       "B10" in present)  # fmt: skip
                exclude = scene.exclude
            state = corrector.estimate(coarse_toa, coarse, None, exclude)
            states[policy] = state
            bands = [
                b for b in L2A_BANDS if b in present and np.isfinite(boa[L2A_BANDS.index(b)]).any()
            ]
            predicted = np.stack(
                [corrector.correct(b, toa[L1C_BANDS.index(b)], fine, state) for b in bands]
            )
            reference = np.stack([boa[L2A_BANDS.index(b)] for b in bands])
            mask = metrics.valid_mask(predicted, reference)
            psnr = np.mean(
                [metrics.psnr(p, r, mask) for p, r in zip(predicted, reference, strict=True)]
            )
            sam = metrics.sam(predicted, reference, mask)
            kept_out = 0.0 if exclude is None else float(exclude.mean())
            line = (
                f"{name:16s}{SPLIT.get(name, '?'):>10s}{policy:>7s}{kept_out:9.2f}"
                f"{np.nanmean(state.aot):7.3f}{np.nanmean(state.water):7.2f}{psnr:7.2f}{sam:7.4f}"
            )
            if policy == "60 m":
                d_aot = np.nanmax(np.abs(state.aot - states["20 m"].aot))
                d_water = np.nanmax(np.abs(state.water - states["20 m"].water))
                line += f"{d_aot:9.4f}{d_water:8.3f}"
            print(line)


if __name__ == "__main__":
    main()
