"""Training: the masked loss ignores nodata, a tiny run lowers the loss, --resume continues."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from component.model.card import load_card
from component.training import train

SHIPPED_CARD = Path(__file__).resolve().parents[1] / "models" / "model_card.json"


def test_masked_loss_ignores_nodata() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 3, 8, 8)
    pred = target + 0.1
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    mask[:, :, :4] = False
    base = train.masked_loss(pred, target, mask)
    target[:, :, :4] = float("nan")
    wild = pred.clone().requires_grad_(True)
    with torch.no_grad():
        wild[:, :, :4] = 50.0
    loss = train.masked_loss(wild, target, mask)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(base.item(), rel=1e-5)
    loss.backward()
    assert torch.all(wild.grad[:, :, :4] == 0)


def _write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "count": data.shape[0], "height": data.shape[1],
        "width": data.shape[2], "dtype": "int16", "crs": "EPSG:32632",
        "transform": from_origin(500000, 5100000, 10, 10),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.int16))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A terramind-shaped folder with two synthetic pairs (13-band L1C, 12-band L2A)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        yy, xx = np.mgrid[0:48, 0:48]
        surface = 800 + 600 * np.sin(xx / 7.0) * np.cos(yy / 5.0) + rng.normal(0, 50, (48, 48))
        boa = np.stack([surface * (1 + 0.1 * b) for b in range(12)])
        toa = np.concatenate([boa[:10] * 0.8 + 900, np.full((1, 48, 48), 50), boa[10:]])
        _write(root / "pairs" / "terramind" / "L1C" / f"{name}.tif", toa)
        _write(root / "pairs" / "terramind" / "L2A" / f"{name}.tif", boa)
    return root


def _args(data_root: Path, out: Path, **overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    argv = ["--data-root", str(data_root), "--output", str(out), "--holdout", "b",
            "--patch", "32", "--batch", "2", "--threads", "1", "--no-progress"]  # fmt: skip
    args = parser.parse_args(argv)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_tiny_run_lowers_the_loss_and_writes_a_verified_card(
    data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w.safetensors"
    args = _args(data_root, out, physics_steps=4, real_steps=16, lr=3e-3, pseudo_surfaces=True,
                 freeze_bn=True)  # fmt: skip
    assert train.run(args) == 0
    card_data = json.loads(out.with_suffix(".card.json").read_text())
    summary = card_data["training"]
    assert summary["loss_last_10_mean"] < summary["loss_first_10_mean"]
    assert summary["train_pairs"] == ["a"] and summary["holdout_pairs"] == ["b"]
    assert summary["trained_on"] == "CPU"
    card = load_card(out.with_suffix(".card.json"))
    from component.model.network import load_model

    model = load_model(card)  # sha256 of the written weights matches the written card
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.all(bn.running_mean == 0) and summary["freeze_bn"]  # statistics stayed fixed


def test_resume_continues_from_checkpoint(data_root: Path, tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    first = _args(data_root, tmp_path / "a.safetensors", real_steps=2, checkpoint_dir=ck,
                  checkpoint_every=2)  # fmt: skip
    train.run(first)
    state = torch.load(ck / "last.pt", weights_only=True)
    assert state["step"] == 2
    resumed = _args(data_root, tmp_path / "b.safetensors", real_steps=3, checkpoint_dir=ck,
                    checkpoint_every=1, resume=True)  # fmt: skip
    train.run(resumed)
    assert len(torch.load(ck / "last.pt", weights_only=True)["losses"]) == 3
