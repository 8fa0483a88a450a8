"""Export the shipped weights to ONNX beside them and record the graph in the model card.

The CPU engine runs this graph (see ``component.model.engines``). The card records the graph's
sha256 and the sha256 of the weights it was exported from, so the component uses it only
while it matches the weights, and otherwise exports a fresh one into its cache.

    .venv/bin/python scripts/export_onnx.py            # after training updated the weights
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import torch

from component.model.card import load_card
from component.model.engines import ONNX_OPSET, OnnxEngine, TorchEngine, export_onnx
from component.model.network import load_model, sha256_file


def main() -> None:
    card = load_card()
    if card.card_path is None or card.weights_path is None:
        raise SystemExit("no model card with weights found")
    model = load_model(card)
    target = card.weights_path.with_suffix(".onnx")
    export_onnx(model, target, card.in_channels)
    batch = np.random.default_rng(0).uniform(0, 0.5, (2, card.in_channels, 128, 96))
    batch = batch.astype(np.float32)
    difference = float(np.abs(OnnxEngine(target)(batch) - TorchEngine(model, "cpu")(batch)).max())
    data = json.loads(card.card_path.read_text())
    data["onnx"] = {
        "file": target.name,
        "sha256": sha256_file(target),
        "weights_sha256": card.weights_sha256,
        "opset": ONNX_OPSET,
        "exported_with": f"torch {torch.__version__}",
        "checked_with": f"onnxruntime {onnxruntime.__version__}",
        "max_abs_difference_vs_torch_fp32": difference,
    }
    card.card_path.write_text(json.dumps(data, indent=2) + "\n")
    size_mb = target.stat().st_size / 1e6
    print(f"wrote {target} ({size_mb:.1f} MB), max |onnx - torch| {difference:.2e}")


if __name__ == "__main__":
    main()
