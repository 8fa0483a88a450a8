"""Which runtime executes the network: chosen by measurement, per device.

Measured on the 2-core CPU machines this project is developed on (``benchmarks/pipeline.py``,
README "Performance"): ONNX Runtime fp32 computes a full 60 m tile's four tiles in 4.1 s where
PyTorch eager fp32 with channels_last needs 7.3 s for one pass over the same 1830² grid, with
outputs equal within 1e-6. So on CPU the default engine is ONNX Runtime; on a CUDA GPU it is
PyTorch (cuDNN), with the card's batch of tiles.

The ONNX graph is exported from the very weights the card names. The shipped one lives in
``models/`` with its own sha256 and the sha256 of the weights it came from; for other
weights (``--weights``) it is exported once into a cache folder keyed by their checksum
(about 10 s), so a changed weights file can never run through a stale graph.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import numpy as np
import torch

from component.errors import InvalidParameterError, ModelError
from component.model.card import ModelCard
from component.model.inference import Corrector, Engine, TorchEngine
from component.model.network import load_model, read_state_dict, sha256_file

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
ONNX_OPSET = 17


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("--device cuda but no CUDA GPU is visible: use auto or cpu")
    return device


class OnnxEngine:
    """ONNX Runtime on CPU, all graph optimizations, one intra-op thread per core given."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # COMPONENT_ENGINE_THREADS: set by the Dask path so workers share the cores.
        configured = int(os.environ.get("COMPONENT_ENGINE_THREADS", "0") or 0)
        options.intra_op_num_threads = threads or configured or (os.cpu_count() or 1)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelError(
                f"cannot load the ONNX graph {path} ({type(error).__name__}): delete it to have "
                "it exported again"
            ) from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        return self.session.run(None, feed)[0]


def export_onnx(model: torch.nn.Module, path: Path, in_channels: int) -> Path:
    """Export with dynamic batch and spatial axes; written beside *path*, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    example = torch.zeros(1, in_channels, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.inference_mode():
        torch.onnx.export(
            model.eval(),
            (example,),
            str(temporary),
            input_names=["toa"],
            output_names=["boa"],
            dynamic_axes={"toa": axes, "boa": axes},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    temporary.replace(path)
    return path


def cache_dir() -> Path:
    base = os.environ.get("COMPONENT_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "s2-l1c2l2a" if base else Path.home() / ".cache" / "s2-l1c2l2a"


def onnx_graph(card: ModelCard, weights: Path | None) -> Path:
    """The ONNX graph for these weights: the shipped one when it matches, else a cached export."""
    shipped = card.raw.get("onnx") or {}
    if weights is None and shipped.get("file") and card.weights_path:
        path = card.weights_path.parent / shipped["file"]
        if (
            path.is_file()
            and shipped.get("weights_sha256") == card.weights_sha256
            and shipped.get("sha256") == sha256_file(path)
        ):
            return path
        log.warning("shipped ONNX graph missing or stale: exporting one from the weights")
    source_sha = sha256_file(Path(weights)) if weights is not None else card.weights_sha256
    path = cache_dir() / f"{card.name}-{source_sha}.onnx"
    if not path.is_file():
        log.info("exporting the network to ONNX (once for these weights): %s", path)
        export_onnx(load_model(card, weights), path, card.in_channels)
    return path


def make_engine(
    card: ModelCard, weights: Path | None, device: str, engine: str = "auto"
) -> tuple[Engine, str]:
    """The engine for *device*, and its name for logs and lineage."""
    if engine not in ENGINES:
        raise InvalidParameterError(f"unsupported --engine {engine!r}: choose auto, torch or onnx")
    device = resolve_device(device)
    if engine == "auto":
        engine = "onnx" if device == "cpu" else "torch"
    if engine == "onnx":
        if device != "cpu":
            raise InvalidParameterError("--engine onnx runs on the CPU: use --device cpu")
        if weights is None:
            # The shipped weights are verified (and a tampered file refused) even though the
            # graph runs: the graph is trusted only as the export of exactly these weights.
            if not card.weights_sha256:
                raise ModelError(f"model card {card.card_path} has no weights sha256; fix the card")
            read_state_dict(card.weights_path, card.weights_sha256)
        return OnnxEngine(onnx_graph(card, weights)), "onnxruntime-cpu"
    return TorchEngine(load_model(card, weights), device), f"torch-{device}"


def build_corrector(
    card: ModelCard, weights: Path | None = None, device: str = "auto", engine: str = "auto"
) -> tuple[Corrector, str]:
    """The corrector the pipeline runs: the card's tiling around the chosen engine."""
    runtime, name = make_engine(card, weights, device, engine)
    # On a CPU a batch of tiles is no faster than one tile after another (the convolutions
    # already use every core) and costs a batch of activations: one tile at a time. A GPU
    # gets the card's batch suggestion.
    batch = 1 if name.endswith("-cpu") else card.batch_size
    corrector = Corrector.for_card(runtime, card, batch_size=batch)
    return corrector, name
