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
from typing import TYPE_CHECKING

import numpy as np

from component.core.files import sha256_file
from component.errors import InvalidParameterError, ModelError
from component.model.atmosphere import Atmosphere
from component.model.card import ModelCard
from component.model.correction import (
    Estimator,
    SceneCorrector,
    StandardAtmosphere,
)
from component.model.estimator import NetworkEstimator
from component.model.inference import Engine, TiledNetwork, TorchEngine

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
ONNX_OPSET = 17


def gpu_may_be_present() -> bool:
    """Whether an NVIDIA GPU could be visible, asked without importing torch (2 s).

    The driver creates ``/dev/nvidiactl`` (and ``/proc/driver/nvidia``) on any machine with an
    NVIDIA GPU, containers given one included; ``CUDA_VISIBLE_DEVICES`` set empty or to -1
    hides them all. Only when this says yes does ``auto`` pay for torch's own check.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``. Torch is imported only when a
    GPU may be asked for: the CPU path (ONNX Runtime) never loads it."""
    if device == "cpu" or (device == "auto" and not gpu_may_be_present()):
        return "cpu"
    try:
        import torch
    except ModuleNotFoundError:
        if device == "auto":  # a lean install on a GPU machine: the CPU path needs no torch
            log.warning(
                "an NVIDIA driver is present but PyTorch is not installed: running on the CPU "
                "(ONNX Runtime); pip install -e '.[gpu]' to use the GPU"
            )
            return "cpu"
        raise InvalidParameterError(
            "--device cuda needs PyTorch, which is not installed: run scripts/setup.sh on a "
            "machine with an NVIDIA driver, or pip install -e '.[gpu]'"
        ) from None

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
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
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


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    in_channels: int,
    names: tuple[str, str] = ("toa", "atmosphere"),
    example_side: int = 64,
) -> Path:
    """Export with dynamic batch and spatial axes and the input and output *names*, traced on
    an *example_side*² input (a size the network accepts); written beside *path*, then
    renamed."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    example = torch.zeros(1, in_channels, example_side, example_side)
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.inference_mode():
        torch.onnx.export(
            model.eval(),
            (example,),
            str(temporary),
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_axes={names[0]: axes, names[1]: axes},
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
        try:
            from component.model.network import load_model

            export_onnx(load_model(card, weights), path, card.in_channels)
        except ModuleNotFoundError as error:
            missing = f"needs PyTorch ({error.name} is not installed): pip install -e '.[gpu]'"
            if weights is not None:
                raise InvalidParameterError(
                    f"--weights FILE runs as an ONNX graph exported from it, which {missing}"
                ) from None
            raise ModelError(
                f"the shipped ONNX graph is missing or stale (restore models/), and an export "
                f"{missing}"
            ) from None
    return path


def make_engine(
    card: ModelCard, weights: Path | None, device: str, engine: str = "auto", threads: int = 0
) -> tuple[Engine, str]:
    """The engine for *device* on *threads* CPU threads (0: the cores), and its name for logs
    and lineage."""
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
            verify_weights(card)
        return OnnxEngine(onnx_graph(card, weights), threads), "onnxruntime-cpu"
    try:
        from component.model.network import load_model

        model = load_model(card, weights)
    except ModuleNotFoundError as error:
        raise InvalidParameterError(
            f"--engine torch needs PyTorch ({error.name} is not installed): run scripts/setup.sh "
            "on a machine with an NVIDIA driver, or pip install -e '.[gpu]'"
        ) from None
    return TorchEngine(model, device, threads), f"torch-{device}"


def verify_weights(card: ModelCard) -> None:
    """The card's weights file exists and matches its sha256 (checked without torch)."""
    path, expected = card.weights_path, card.weights_sha256
    if path is None or not expected:
        raise ModelError(f"model card {card.card_path} names no weights with a sha256; fix it")
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}; restore it or pass --weights FILE")
    if sha256_file(path) != expected.lower():
        raise ModelError(
            f"weights {path.name} do not match the model card's sha256; restore the shipped "
            "file or update the card"
        )


def build_scene_corrector(
    card: ModelCard,
    weights: Path | None = None,
    device: str = "auto",
    engine: str = "auto",
    threads: int = 0,
    cirrus_correction: bool = False,
) -> tuple[SceneCorrector, str]:
    """What the pipeline runs: the card's 6S table and its atmosphere estimator; thin cirrus
    taken out of every band only with *cirrus_correction*.

    A card without weights is the physics-only model (a standard atmosphere); otherwise the
    network estimates the atmosphere through the chosen engine. Returns the corrector and the
    runtime's name for logs and lineage.
    """
    if card.lut_path is None:
        raise ModelError(f"model card {card.card_path} names no atmosphere table; fix the card")
    atmosphere = Atmosphere.load(card.lut_path, card.lut_sha256, card.output_bands)
    cirrus_atmosphere = Atmosphere.load(card.lut_path, None, ("B10",))
    if weights is None and card.weights_path is None:
        estimator: Estimator = StandardAtmosphere()
        name = "standard-atmosphere"
    else:
        runtime, name = make_engine(card, weights, device, engine, threads)
        # On a CPU a batch of tiles is no faster than one tile after another (the convolutions
        # already use every core) and costs a batch of activations; a GPU gets the card's batch.
        batch = 1 if name.endswith("-cpu") else card.batch_size
        network = TiledNetwork(
            runtime,
            out_channels=card.out_channels,
            tile_size=card.tile_size,
            tile_overlap=card.tile_overlap,
            batch_size=batch,
        )
        estimator = NetworkEstimator(network, card)
    corrector = SceneCorrector(
        atmosphere,
        estimator,
        input_bands=card.input_bands,
        adjacency_sigma_m=card.adjacency_sigma_m,
        smoothing_m=card.smoothing_m,
        cirrus_atmosphere=cirrus_atmosphere,
        grid_m=card.atmosphere_grid_m,
        cirrus_correction=cirrus_correction,
    )
    return corrector, name
