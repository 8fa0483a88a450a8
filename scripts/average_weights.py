"""Average the weights of runs that share a pre-training (WiSE-FT style interpolation).

Averaging the physics pre-trained weights with their fine-tuned descendant keeps the robustness
of the physics model to atmospheres the two real training chips do not show, while taking in
what fine-tuning learned about the Sen2Cor reference (Wortsman et al., "Robust fine-tuning of
zero-shot models", 2022).

Usage: .venv/bin/python scripts/average_weights.py OUT.safetensors A.safetensors B.safetensors
The card of the last input is copied next to OUT with the new sha256 and the list of inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from component.model.network import sha256_file


def main(out: str, *sources: str) -> int:
    paths = [Path(p) for p in sources]
    states = [load_file(str(p)) for p in paths]
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            averaged[key] = (sum(s[key].double() for s in states) / len(states)).to(first.dtype)
        else:  # counters such as num_batches_tracked
            averaged[key] = first
    target = Path(out)
    save_file(averaged, str(target))
    card = json.loads(paths[-1].with_suffix(".card.json").read_text())
    card["weights"] = {"file": target.name, "sha256": sha256_file(target), "format": "safetensors"}
    card["training"]["weight_average_of"] = [p.name for p in paths]
    target.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
