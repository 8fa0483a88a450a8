"""Build the network from the card and load its weights, refusing anything unverified or broken.

The network is a U-Net (segmentation-models-pytorch, EfficientNet-B2 encoder, no hub weights)
that estimates the atmosphere, AOT at 550 nm and water vapour, on a coarse grid
(:class:`AtmosphereNet`); a direct reflectance network (:class:`ReflectanceNet`, the layout of
ESA AI-Sen2Cor's RGB model) is built when a card declares no atmosphere outputs.

Two weight formats are accepted: the project's ``.safetensors`` (verified against the card's
sha256, so a tampered or truncated file never runs) and ``.pth`` PyTorch ``state_dict`` files as
ESA AI-Sen2Cor ships them (``module.`` prefixes allowed), read with
``torch.load(weights_only=True)`` so no pickled code can run. Both hold the bare U-Net's
``state_dict``: the output heads below have no parameters.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from component.core.files import sha256_file
from component.errors import ModelError
from component.model.card import ModelCard

_STRIP_PREFIXES = ("module.", "model.", "net.", "unet.")


def build_unet(
    in_channels: int,
    out_channels: int,
    encoder: str = "timm-efficientnet-b2",
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
):
    """The bare U-Net whose ``state_dict`` is what weight files contain (no wrapper prefix).

    smp flags ``timm-`` encoders as deprecated in favour of ``tu-`` ones, but their parameter
    names differ and ESA AI-Sen2Cor checkpoints use the ``timm-`` layout, so it is kept and the
    warning silenced.
    """
    import segmentation_models_pytorch as smp

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*encoders are deprecated", category=DeprecationWarning
        )
        return smp.Unet(
            encoder_name=encoder,
            encoder_weights=None,
            encoder_depth=len(decoder_channels),
            decoder_channels=decoder_channels,
            in_channels=in_channels,
            classes=out_channels,
        )


class ReflectanceNet(nn.Module):
    """U-Net followed by a ReLU: surface reflectance is never negative."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.unet(x))


ATMOSPHERE_LIMITS = {"aot550": 1.2, "water_vapour": 6.5}
"""Upper bounds of the outputs (the 6S table's range): AOT at 550 nm, water vapour in cm."""


class AtmosphereNet(nn.Module):
    """U-Net whose channels are squashed into the table's range: ``limit * sigmoid(x)``.

    The bounds keep every estimate inside the 6S table (no extrapolation at run time) and make
    the heads part of the exported graph, so ONNX Runtime and PyTorch give the same numbers.
    """

    def __init__(self, unet: nn.Module, limits: tuple[float, ...]) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("limits", torch.tensor(limits).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.unet(x)) * self.limits


def build_model(card: ModelCard) -> nn.Module:
    """The network the card describes, with random weights."""
    unet = build_unet(card.in_channels, card.out_channels, card.encoder, card.decoder_channels)
    if card.network_outputs:
        try:
            limits = tuple(ATMOSPHERE_LIMITS[name] for name in card.network_outputs)
        except KeyError as missing:
            raise ModelError(
                f"model card output {missing} is unknown; outputs are {list(ATMOSPHERE_LIMITS)}"
            ) from None
        return AtmosphereNet(unet, limits)
    return ReflectanceNet(unet)


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DataParallel/wrapper prefixes so ESA-style checkpoints fit the bare U-Net."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _STRIP_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        out[key] = value
    return out


def read_state_dict(path: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Read weights by suffix; verify the checksum when one is known (the card's own file)."""
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}; restore it or pass --weights FILE")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256.lower():
            raise ModelError(
                f"weights {path.name} sha256 {actual[:12]}… does not match the model card "
                f"({expected_sha256[:12]}…); restore the shipped file or update the card"
            )
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif suffix in (".pth", ".pt"):
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
        else:
            raise ModelError(f"unknown weights format {path.suffix!r}; use .safetensors or .pth")
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"weights {path.name} are corrupt or not a state_dict ({type(exc).__name__}); "
            "use a .safetensors or a weights-only .pth state_dict"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"weights {path.name} are not a tensor state_dict; use a state_dict file")
    return _strip(state)


def load_model(card: ModelCard, weights: str | Path | None = None) -> nn.Module:
    """Build the card's network and load its weights in eval mode.

    ``weights`` overrides the card's file; a user-given file has no card checksum to verify
    against, so only its structure (keys and shapes) is checked.
    """
    if weights is None:
        path, sha = card.weights_path, card.weights_sha256
        if path is None or not sha:
            raise ModelError(f"model card {card.card_path} names no weights with a sha256; fix it")
    else:
        path, sha = Path(weights), None
    state = read_state_dict(path, sha)
    model = build_model(card)
    try:
        model.unet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise ModelError(
            f"weights {path.name} do not fit the card's {card.architecture}/{card.encoder} with "
            f"{card.in_channels}->{card.out_channels} bands ({first}); use matching weights"
        ) from exc
    return model.eval()


def save_weights(model: nn.Module, path: Path) -> str:
    """Save the bare U-Net state_dict as safetensors and return its sha256."""
    from safetensors.torch import save_file

    unet = model.unet if isinstance(model, (ReflectanceNet, AtmosphereNet)) else model
    state = {k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return sha256_file(path)
