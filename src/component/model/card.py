"""The model card: the single source of truth for bands, normalization, tiling and weights.

Everything a model-specific number would otherwise hard-code (band list, clip range, tile size,
overlap, weights file and checksum) lives in ``models/model_card.json`` so that a model with other
bands can be shipped by replacing the card and the weights, without touching code. The card uses
the STAC Machine Learning Model (MLM) extension field names where they fit, so a catalogue can
index it as is.
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
    weights_path: Path
    weights_sha256: str | None
    clip_min: float = 0.0
    clip_max: float = 1.5
    nodata_fill: float = 0.0
    batch_size: int = 4
    detail_sigma: float = 0.0
    detail_gain: float = 1.0
    card_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def in_channels(self) -> int:
        """Network input channels, derived from the band list."""
        return len(self.input_bands)

    @property
    def out_channels(self) -> int:
        """Network output channels, derived from the band list."""
        return len(self.output_bands)


def _bands(entry: dict[str, Any], what: str) -> tuple[str, ...]:
    bands = entry.get("bands")
    if not bands:
        raise ModelError(f"model card: {what} has no 'bands'; fix the card")
    return tuple(b["name"] if isinstance(b, dict) else str(b) for b in bands)


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
        weights = data["weights"]
        tiling = data["tiling"]
        base = card_path.parent if card_path else models_dir()
        clip_min, clip_max = _clip_range(inp)
        return ModelCard(
            name=str(data["mlm:name"]),
            version=str(data["version"]),
            architecture=str(data.get("mlm:architecture", "U-Net")),
            encoder=str(data.get("encoder", "timm-efficientnet-b2")),
            input_bands=_bands(inp, "mlm:input"),
            output_bands=_bands(out, "mlm:output"),
            tile_size=int(tiling["tile_size"]),
            tile_overlap=int(tiling["overlap"]),
            weights_path=base / str(weights["file"]),
            weights_sha256=weights.get("sha256"),
            clip_min=clip_min,
            clip_max=clip_max,
            nodata_fill=float(inp.get("nodata_fill_value", 0.0)),
            batch_size=int(data.get("mlm:batch_size_suggestion", 4)),
            detail_sigma=float(data.get("detail_transfer", {}).get("sigma_px", 0.0)),
            detail_gain=float(data.get("detail_transfer", {}).get("gain", 1.0)),
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
