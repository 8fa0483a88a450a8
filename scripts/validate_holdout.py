"""Validation table on the held-out real pairs: each trained variant vs identity vs DOS.

Usage: .venv/bin/python scripts/validate_holdout.py .scratch/fbn/{physics,real,finetune}.card.json
Prints a table (means over the held-out pairs of per-pair mean SAM and PSNR) and writes JSON
next to the first card. Uses Corrector, the production inference path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from component.model.card import load_card
from component.model.inference import Corrector
from component.training.evaluate import score
from component.training.pairs import shared_pairs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(cards: list[str]) -> int:
    results = {}
    for card_file in cards:
        card = load_card(card_file)
        holdout = card.raw["training"]["holdout_pairs"]
        pairs = shared_pairs(DATA, card.input_bands)
        corrector = Corrector.from_card(card, device="cpu")
        per_pair = {}
        for name in holdout:
            pair = pairs[name]
            pred = corrector.correct(pair.toa)
            per_pair[name] = score(pair.toa, pair.boa, pred, card.output_bands)
        summary = {}
        for method in ("model", "identity", "dos"):
            overall = [r[method]["overall"] for r in per_pair.values()]
            summary[method] = {
                "mean_sam_rad": float(np.mean([o["sam"] for o in overall])),
                "mean_psnr_db": float(np.mean([o["psnr"] for o in overall])),
            }
        results[Path(card_file).name.split(".")[0]] = {"summary": summary, "per_pair": per_pair}
    print(f"{'variant':16s}{'method':10s}{'mean SAM rad':>14s}{'mean PSNR dB':>14s}")
    for variant, res in results.items():
        for method, s in res["summary"].items():
            print(f"{variant:16s}{method:10s}{s['mean_sam_rad']:14.4f}{s['mean_psnr_db']:14.2f}")
    out = Path(cards[0]).parent / "holdout_metrics.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
