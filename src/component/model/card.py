"""The model card: the single source of truth for bands, normalization, tiling and weights.

Everything a model-specific number would otherwise hard-code (band lists, clip range, tile size,
overlap, weights and look-up table files with their checksums, the grid the atmosphere is
estimated on) lives in ``models/model_card.json``, so a model can be replaced by replacing the
card and its files, without touching code. The card uses the STAC Machine Learning Model (MLM)
extension field names where they fit, so a catalogue can index it as is.

Two band lists matter and they differ: the network's input channels (``mlm:input``: the 13 L1C
bands, then geometry channels) and its outputs (``mlm:output``: the atmosphere, AOT and water
vapour), against the product's bands (``atmosphere.output_bands``: the 12 L2A bands, which the
physics inversion produces from the network's atmosphere and the 6S table).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from component.errors import ModelError

CARD_FILE = "model_card.json"
_FALLBACK_MODELS_DIR = Path("/delta/models")


def models_dir() -> Path:
    """Where the shipped card and weights live.

    ``COMPONENT_MODELS_DIR`` wins so a deployment can swap models; otherwise the repository's
    ``models/`` next to ``src/`` (a source checkout or editable install); otherwise the path the
    DeltaTwin image copies them to.
    """
    env = os.environ.get("COMPONENT_MODELS_DIR")
    if env:
        return Path(env)
    repo_models = Path(__file__).resolve().parents[3] / "models"
    if (repo_models / CARD_FILE).is_file():
        return repo_models
    return _FALLBACK_MODELS_DIR


@dataclass(frozen=True)
class ModelCard:
    """The parsed card; ``raw`` keeps the full JSON for writers of derived metadata."""

    name: str
    version: str
    architecture: str
    encoder: str
    input_bands: tuple[str, ...]
    output_bands: tuple[str, ...]
    tile_size: int
    tile_overlap: int
    weights_path: Path | None
    weights_sha256: str | None
    network_outputs: tuple[str, ...] = ()
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    """The U-Net decoder's widths, one per encoder stage (smp's default when absent)."""
    context_channels: tuple[str, ...] = ()
    atmosphere_grid_m: int = 60
    adjacency_sigma_m: float = 0.0
    smoothing_m: float = 0.0
    lut_path: Path | None = None
    lut_sha256: str | None = None
    clip_min: float = 0.0
    clip_max: float = 1.5
    nodata_fill: float = 0.0
    batch_size: int = 4
    card_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def in_channels(self) -> int:
        """Network input channels: the spectral bands, then the context channels."""
        return len(self.input_bands) + len(self.context_channels)

    @property
    def out_channels(self) -> int:
        """Network output channels (the atmosphere), or the bands of a direct network."""
        return len(self.network_outputs or self.output_bands)


def _bands(entry: dict[str, Any], what: str) -> tuple[str, ...]:
    bands = entry.get("bands")
    if not bands:
        raise ModelError(f"model card: {what} has no 'bands'; fix the card")
    return tuple(b["name"] if isinstance(b, dict) else str(b) for b in bands)


def _spectral(names: tuple[str, ...]) -> tuple[str, ...]:
    """Sentinel-2 band names (``B01``..``B12``, ``B8A``) among channel names."""
    return tuple(n for n in names if len(n) == 3 and n[0] == "B")


def _clip_range(entry: dict[str, Any]) -> tuple[float, float]:
    for scaling in entry.get("value_scaling") or []:
        if scaling.get("type") == "clip":
            return float(scaling["minimum"]), float(scaling["maximum"])
    return 0.0, 1.5


def card_from_dict(data: dict[str, Any], card_path: Path | None = None) -> ModelCard:
    """Build a :class:`ModelCard` from the JSON object; weights path is relative to the card."""
    try:
        inp = data["mlm:input"][0]
        out = data["mlm:output"][0]
        weights = data.get("weights") or {}
        tiling = data["tiling"]
        atmosphere = data.get("atmosphere") or {}
        lut = atmosphere.get("lut") or {}
        base = card_path.parent if card_path else models_dir()
        clip_min, clip_max = _clip_range(inp)
        channels = _bands(inp, "mlm:input")
        outputs = _bands(out, "mlm:output")
        product_bands = tuple(atmosphere.get("output_bands") or ())
        return ModelCard(
            name=str(data["mlm:name"]),
            version=str(data["version"]),
            architecture=str(data.get("mlm:architecture", "U-Net")),
            encoder=str(data.get("encoder", "timm-efficientnet-b2")),
            decoder_channels=tuple(
                int(c) for c in data.get("decoder_channels", (256, 128, 64, 32, 16))
            ),
            input_bands=_spectral(channels),
            context_channels=tuple(c for c in channels if c not in _spectral(channels)),
            output_bands=product_bands or outputs,
            network_outputs=outputs if product_bands else (),
            atmosphere_grid_m=int(atmosphere.get("grid_m", 60)),
            adjacency_sigma_m=float(atmosphere.get("adjacency_sigma_m", 0.0)),
            smoothing_m=float(atmosphere.get("smoothing_m", 0.0)),
            lut_path=base / str(lut["file"]) if lut.get("file") else None,
            lut_sha256=lut.get("sha256"),
            tile_size=int(tiling["tile_size"]),
            tile_overlap=int(tiling["overlap"]),
            weights_path=base / str(weights["file"]) if weights.get("file") else None,
            weights_sha256=weights.get("sha256"),
            clip_min=clip_min,
            clip_max=clip_max,
            nodata_fill=float(inp.get("nodata_fill_value", 0.0)),
            batch_size=int(data.get("mlm:batch_size_suggestion", 4)),
            card_path=card_path,
            raw=data,
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ModelError(f"model card {card_path} is incomplete ({exc!r}); restore it") from exc


def load_card(path: str | Path | None = None) -> ModelCard:
    """Read the card at ``path`` (default ``<models dir>/model_card.json``)."""
    card_path = Path(path) if path else models_dir() / CARD_FILE
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(
            f"model card not found at {card_path}; set COMPONENT_MODELS_DIR to the models folder"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {card_path} is unreadable ({exc}); restore it") from exc
    return card_from_dict(data, card_path)
