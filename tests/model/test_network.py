"""The network and its weights: card fields, checksum refusal, ESA-style .pth state_dicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from component.core.files import sha256_file
from component.errors import ModelError
from component.model.card import load_card
from component.model.network import build_model, load_model, save_weights

SHIPPED_CARD = Path(__file__).resolve().parents[2] / "models" / "model_card.json"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Freshly initialised weights, built once (building the U-Net takes a second or two)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "w.safetensors"
    return path, save_weights(build_model(load_card(SHIPPED_CARD)), path)


def make_card(tmp_path: Path, weights: tuple[Path, str]) -> Path:
    """A copy of the shipped card pointing at a private copy of ``weights`` in ``tmp_path``."""
    data = json.loads(SHIPPED_CARD.read_text())
    source, sha = weights
    weights_path = tmp_path / "w.safetensors"
    shutil.copyfile(source, weights_path)
    data["weights"] = {"file": weights_path.name, "sha256": sha, "format": "safetensors"}
    lut = data["atmosphere"]["lut"]["file"]
    shutil.copyfile(SHIPPED_CARD.parent / lut, tmp_path / lut)
    path = tmp_path / "model_card.json"
    path.write_text(json.dumps(data))
    return path


def test_shipped_card_fields() -> None:
    """The card is the single source of truth for bands, channels, the table and the grid."""
    card = load_card(SHIPPED_CARD)
    assert len(card.input_bands) == 13 and "B10" in card.input_bands
    assert len(card.output_bands) == 12 and "B10" not in card.output_bands
    assert card.network_outputs == ("aot550", "water_vapour")
    assert card.in_channels == 13 + len(card.context_channels)
    assert card.tile_size % 32 == 0 and 0 <= card.tile_overlap < card.tile_size
    assert card.lut_path is not None and card.lut_path.parent == SHIPPED_CARD.parent
    assert card.lut_sha256 and card.atmosphere_grid_m >= 60
    if card.weights_path is not None:
        assert card.weights_path.parent == SHIPPED_CARD.parent


def test_outputs_are_bounded_to_the_table(weights_file: tuple[Path, str], tmp_path: Path) -> None:
    card = load_card(make_card(tmp_path, weights_file))
    model = load_model(card)
    with torch.inference_mode():
        out = model(torch.randn(2, card.in_channels, 64, 64) * 10)
    assert out.shape == (2, 2, 64, 64)
    assert float(out[:, 0].min()) >= 0 and float(out[:, 0].max()) <= 1.2
    assert float(out[:, 1].min()) >= 0 and float(out[:, 1].max()) <= 6.5


def test_models_dir_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights_file: tuple[Path, str]
) -> None:
    card_path = make_card(tmp_path, weights_file)
    monkeypatch.setenv("COMPONENT_MODELS_DIR", str(tmp_path))
    card = load_card()
    assert card.card_path == card_path
    assert card.weights_path == tmp_path / "w.safetensors"
    monkeypatch.setenv("COMPONENT_MODELS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="COMPONENT_MODELS_DIR"):
        load_card()


def test_verified_load_and_tampered_refusal(tmp_path: Path, weights_file: tuple[Path, str]) -> None:
    card = load_card(make_card(tmp_path, weights_file))
    assert not load_model(card).training
    data = bytearray(card.weights_path.read_bytes())
    data[-10] ^= 0xFF
    card.weights_path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the model card") as err:
        load_model(card)
    assert "\n" not in str(err.value)


def test_esa_pth_round_trip_with_module_prefix(
    tmp_path: Path, weights_file: tuple[Path, str]
) -> None:
    card = load_card(make_card(tmp_path, weights_file))
    source = load_model(card)
    pth = tmp_path / "esa.pth"
    torch.save({f"module.{k}": v for k, v in source.unet.state_dict().items()}, pth)
    loaded = load_model(card, pth)  # user file: structure-checked, no card sha to verify
    x = torch.rand(1, card.in_channels, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), source(x))


def test_pickled_code_is_refused(tmp_path: Path, weights_file: tuple[Path, str]) -> None:
    card = load_card(make_card(tmp_path, weights_file))
    pth = tmp_path / "evil.pth"
    torch.save({"weights": torch.nn.Linear(2, 2)}, pth)  # a full module pickle, not tensors
    with pytest.raises(ModelError):
        load_model(card, pth)


def test_incompatible_and_corrupt_weights(tmp_path: Path, weights_file: tuple[Path, str]) -> None:
    card = load_card(make_card(tmp_path, weights_file))
    wrong = tmp_path / "wrong.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ModelError, match="do not fit"):
        load_model(card, wrong)
    # ESA AI-Sen2Cor's checkpoint layout: the same U-Net family with 3 bands in and out
    from component.model.network import build_unet

    rgb = tmp_path / "esa_rgb.pth"
    torch.save({f"module.{k}": v for k, v in build_unet(3, 3).state_dict().items()}, rgb)
    with pytest.raises(ModelError, match=r"17->2 bands") as err:
        load_model(card, rgb)
    assert "\n" not in str(err.value)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupt"):
        load_model(card, junk)
    onnx = tmp_path / "x.onnx"
    onnx.write_bytes(b"\0")
    with pytest.raises(ModelError, match="unknown weights format"):
        load_model(card, onnx)
    assert len(sha256_file(junk)) == 64
