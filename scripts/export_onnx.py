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

from component.core.bands import L1C_BANDS
from component.core.files import sha256_file
from component.model.atmosphere import Geometry
from component.model.card import ModelCard, load_card
from component.model.engines import ONNX_OPSET, OnnxEngine, TorchEngine, export_onnx
from component.model.estimator import Context, network_input
from component.model.network import load_model

# TOA reflectance of a vegetated field and of bare soil, B01..B12 with B10 (a clear sky)
VEGETATION = [0.12, 0.10, 0.09, 0.07, 0.11, 0.20, 0.24, 0.26, 0.27, 0.09, 0.004, 0.17, 0.09]
SOIL = [0.16, 0.15, 0.16, 0.19, 0.22, 0.25, 0.27, 0.28, 0.29, 0.10, 0.005, 0.33, 0.27]
CONTEXT = Context(Geometry(45.6, 8.1, 90.0), elevation_m=300.0, water_prior_cm=1.5, aot_prior=0.15)
"""A known geometry (cosines 0.7, 0.99, 0), a low plain, and forecasts of both priors."""


def plausible_batch(card: ModelCard) -> np.ndarray:
    """Two 128 x 96 scenes, vegetation and soil, varying smoothly by up to 20 %, with the
    card's context channels as :data:`CONTEXT` gives them.

    Noise in every channel (a thick cirrus in B10, spectra no surface has) is far outside what
    the network saw: there even torch in float32 and float64 disagree by 0.06 in AOT, so such
    a check measures the network's conditioning, not the export.
    """
    rows, cols = np.mgrid[0:128, 0:96]
    variation = 0.9 + 0.2 * (rows / 128.0 + cols / 96.0) / 2.0
    scenes = []
    for spectrum in (VEGETATION, SOIL):
        toa = (np.asarray(spectrum)[:, None, None] * variation).astype(np.float32)
        scenes.append(network_input(toa, L1C_BANDS, CONTEXT, card))
    return np.stack(scenes).astype(np.float32)


def main() -> None:
    card = load_card()
    if card.card_path is None or card.weights_path is None:
        raise SystemExit("no model card with weights found")
    model = load_model(card)
    target = card.weights_path.with_suffix(".onnx")
    export_onnx(model, target, card.in_channels)
    batch = plausible_batch(card)
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
