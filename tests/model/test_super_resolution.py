"""The super-resolution contract: shapes, NaN, and consistency with the native band."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from component.core.blocks import block_mean
from component.errors import ModelError
from component.model.card import load_card, models_dir
from component.model.super_resolution import (
    Bicubic,
    GuidedHighPass,
    NetworkResolver,
    consistent,
    load_super_resolver,
    upsampled,
)


def test_upsampled_keeps_shapes_nan_and_smooth_fields() -> None:
    rows, cols = np.mgrid[0:12, 0:18]
    coarse = np.stack([0.1 + 0.01 * rows + 0.002 * cols]).astype(np.float32)
    coarse[0, 3, 4] = np.nan
    fine = upsampled(coarse, 2)
    assert fine.shape == (1, 24, 36) and fine.dtype == np.float32
    assert np.isnan(fine[0, 6:8, 8:10]).all() and np.isfinite(fine[0, :6]).all()
    # a linear ramp stays a ramp (cubic splines on pixel areas: no shift of half a pixel)
    means = block_mean(fine, 2)
    inside = np.isfinite(means) & np.isfinite(coarse)
    np.testing.assert_allclose(means[inside][:20], coarse[inside][:20], atol=2e-3)


def test_consistent_blocks_average_back_to_the_coarse_pixels() -> None:
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0.0, 0.5, (2, 5, 7)).astype(np.float32)
    fine = (upsampled(coarse, 6) + rng.normal(0, 0.02, (2, 30, 42))).astype(np.float32)
    assert np.abs(block_mean(fine, 6) - coarse).max() > 1e-3
    fixed = consistent(fine, coarse, 6)
    np.testing.assert_allclose(block_mean(fixed, 6), coarse, atol=1e-6)
    # the detail within each block is the input's
    np.testing.assert_allclose(np.diff(fixed[0, :6, 0]), np.diff(fine[0, :6, 0]), atol=1e-6)


def test_bicubic_masks_where_the_guide_is_invalid() -> None:
    guide = np.full((4, 8, 8), 0.1, np.float32)
    guide[2, 0, 0] = np.nan
    out = Bicubic()(guide, np.full((1, 4, 4), 0.2, np.float32), 2)
    assert np.isnan(out[0, 0, 0]) and np.allclose(out[0, 1:, 1:], 0.2, atol=1e-5)


# ---- the methods: guided high-pass and the network ------------------------------------------


def _scene(seed: int = 0, size: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 10 m guide (4 bands) and 20 m bands that are mixtures of it."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.uniform(0, 1, (4, size, size)), (0, 2, 2))
    guide = (0.05 + 0.3 * field).astype(np.float32)
    mixing = rng.uniform(0.1, 0.6, (6, 4)).astype(np.float32)
    fine = np.tensordot(mixing, guide, axes=1) + 0.02
    return guide, fine.astype(np.float32)


def test_upsampled_is_scipys_cubic_zoom() -> None:
    coarse = np.random.default_rng(1).uniform(0, 0.5, (2, 13, 17)).astype(np.float32)
    for factor in (2, 6):
        reference = np.stack(
            [ndimage.zoom(b, factor, order=3, grid_mode=True, mode="grid-mirror") for b in coarse]
        )
        np.testing.assert_allclose(upsampled(coarse, factor), reference, atol=1e-6)


def test_guided_high_pass_restores_bands_that_follow_the_guide() -> None:
    guide, fine = _scene()
    coarse = block_mean(fine, 2)
    out = GuidedHighPass()(guide, coarse, 2)
    assert out.shape == fine.shape and out.dtype == np.float32
    bicubic = np.abs(Bicubic()(guide, coarse, 2) - fine).mean()
    assert np.abs(out - fine).mean() < 0.2 * bicubic


@pytest.mark.parametrize("factor", [2, 6])
def test_guided_high_pass_keeps_nan(factor: int) -> None:
    guide, fine = _scene(size=60)
    coarse = block_mean(fine, factor)
    coarse[1, 2, 3] = np.nan
    guide[0, 0, 0] = np.nan
    out = GuidedHighPass()(guide, coarse, factor)
    f = factor
    assert np.isnan(out[1, 2 * f : 3 * f, 3 * f : 4 * f]).all()
    assert np.isnan(out[:, 0, 0]).all() and np.isfinite(out[0, 1:, 1:]).all()
    np.testing.assert_allclose(
        block_mean(consistent(out, coarse, f), f)[0], coarse[0], atol=1e-5, equal_nan=True
    )


def _tiny_graph(tmp_path: Path, factor: int, shuffle: int) -> Path:
    torch = pytest.importorskip("torch")
    from component.training.super_resolution import SuperResolutionNet, save

    torch.manual_seed(0)
    channels = (10, 6) if factor == 2 else (12, 2)
    model = SuperResolutionNet(*channels, features=8, layers=3, shuffle=shuffle)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, 0, 0.1)
    _, graph, difference = save(model, tmp_path / f"tiny_x{factor}")
    assert difference < 1e-5
    return graph


@pytest.mark.parametrize(("factor", "shuffle"), [(2, 2), (6, 3)])
def test_network_resolver_contract_and_tiling(tmp_path: Path, factor: int, shuffle: int) -> None:
    from component.model.engines import OnnxEngine

    engine = OnnxEngine(_tiny_graph(tmp_path, factor, shuffle), threads=1)
    rng = np.random.default_rng(2)
    k, n = (4, 6) if factor == 2 else (10, 2)
    h, w = 14, 11
    guide = rng.uniform(0, 0.4, (k, h * factor, w * factor)).astype(np.float32)
    coarse = rng.uniform(0, 0.4, (n, h, w)).astype(np.float32)
    coarse[0, 5, 5] = np.nan
    guide[1, 3, 4] = np.nan
    multiple = {factor: int(np.lcm(shuffle, factor))}
    tiled = NetworkResolver({factor: engine}, multiple, tile=48, overlap=12)(guide, coarse, factor)
    whole = NetworkResolver({factor: engine}, multiple, tile=4096)(guide, coarse, factor)
    assert tiled.shape == (n, h * factor, w * factor) and tiled.dtype == np.float32
    f = factor
    assert np.isnan(tiled[0, 5 * f : 6 * f, 5 * f : 6 * f]).all()
    assert np.isnan(tiled[:, 3, 4]).all()
    # away from the NaN pixels (given 0 inside the network) tiling changes nothing
    far = np.ones(tiled.shape[1:], bool)
    far[: 6 * f + 12, : 6 * f + 12] = False
    np.testing.assert_allclose(tiled[:, far], whole[:, far], atol=1e-5)
    assert np.abs(tiled - upsampled(coarse, factor))[:, far].max() > 1e-3  # the network acts
    fixed = consistent(tiled, coarse, factor)
    means = block_mean(fixed, factor)
    np.testing.assert_allclose(means[1], coarse[1], atol=1e-5)


def test_a_card_without_super_resolution_gives_guided_high_pass(tmp_path: Path) -> None:
    data = json.loads((models_dir() / "model_card.json").read_text())
    data.pop("super_resolution", None)
    (tmp_path / "model_card.json").write_text(json.dumps(data))
    assert isinstance(load_super_resolver(load_card(tmp_path / "model_card.json")), GuidedHighPass)


def _shipped_networks() -> list[dict]:
    entry = load_card().raw.get("super_resolution") or {}
    methods = entry.get("methods") or {}
    return [n for n in entry.get("networks", []) if methods.get(str(n["factor"])) == "network"]


def test_the_shipped_resolver_follows_the_contract() -> None:
    resolver = load_super_resolver()
    guide, fine = _scene(size=48)
    out20 = resolver(guide, block_mean(fine, 2), 2)
    assert out20.shape == fine.shape and np.isfinite(out20).all()
    guide60 = np.concatenate([guide, out20])
    coarse60 = block_mean(fine[:2], 6)
    out60 = resolver(guide60, coarse60, 6)
    assert out60.shape == (2, 48, 48)
    np.testing.assert_allclose(block_mean(consistent(out60, coarse60, 6), 6), coarse60, atol=1e-5)


@pytest.mark.parametrize("what", ["weights", "onnx"])
@pytest.mark.parametrize("damage", ["missing", "tampered"])
def test_missing_or_tampered_super_resolution_files_stop_with_exit_8(
    tmp_path: Path, what: str, damage: str
) -> None:
    networks = _shipped_networks()
    if not networks:
        pytest.skip("the shipped method has no weights (guided high-pass)")
    source = models_dir()
    shutil.copy(source / "model_card.json", tmp_path / "model_card.json")
    for network in networks:
        for key in ("weights", "onnx"):
            shutil.copy(source / network[key]["file"], tmp_path / network[key]["file"])
    target = tmp_path / networks[0][what]["file"]
    if damage == "missing":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ModelError) as error:
        load_super_resolver(load_card(tmp_path / "model_card.json"))
    assert error.value.exit_code == 8
    assert "\n" not in str(error.value) and target.name in str(error.value)


def test_the_shipped_graphs_equal_their_torch_weights() -> None:
    networks = _shipped_networks()
    if not networks:
        pytest.skip("the shipped method has no weights (guided high-pass)")
    torch = pytest.importorskip("torch")
    from component.model.engines import OnnxEngine
    from component.training.super_resolution import SuperResolutionNet

    safetensors = pytest.importorskip("safetensors.torch")
    for network in networks:
        channels = (10, 6) if network["factor"] == 2 else (12, 2)
        model = SuperResolutionNet(*channels, network["features"], network["layers"],
                                   network["shuffle"])  # fmt: skip
        model.load_state_dict(safetensors.load_file(str(models_dir() / network["weights"]["file"])))
        x = np.random.default_rng(3).uniform(0, 0.5, (1, channels[0], 36, 36)).astype(np.float32)
        with torch.inference_mode():
            reference = model.eval()(torch.from_numpy(x)).numpy()
        onnx = OnnxEngine(models_dir() / network["onnx"]["file"], threads=1)(x)
        np.testing.assert_allclose(onnx, reference, atol=1e-5)
