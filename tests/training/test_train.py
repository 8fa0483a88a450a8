"""Training on simulated scenes: a tiny run lowers the loss, writes a verified card, resumes.

The surfaces are synthetic per-band L2A GeoTIFFs in the layout of ../shared/data/surfaces (one
file per band at its native resolution), so these tests run in a fresh clone too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter

from component.core.bands import L2A_BANDS, NATIVE_RESOLUTION
from component.model.card import load_card
from component.training import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``surfaces/scene`` with 12 band files at native resolution over 1.92 km."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "surfaces" / "scene"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    land = gaussian_filter(rng.uniform(0, 1, (192, 192)), 4)
    land = (land - land.min()) / (land.max() - land.min())
    for i, band in enumerate(L2A_BANDS):
        res = NATIVE_RESOLUTION[band]
        size = 1920 // res
        step = res // 10
        reflectance = (0.04 + 0.02 * i) * (0.5 + land[::step, ::step][:size, :size])
        profile = {
            "driver": "GTiff",
            "count": 1,
            "height": size,
            "width": size,
            "dtype": "uint16",
            "crs": "EPSG:32632",
            "transform": from_origin(500000, 5100000, res, res),
        }
        with rasterio.open(folder / f"S2X_{band}.tif", "w", **profile) as dst:
            dst.write(np.round(reflectance * 10000).astype(np.uint16)[None])
    return root


def _args(data_root: Path, out: Path, **overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    argv = [
        "--data-root",
        str(data_root),
        "--output",
        str(out),
        "--patch",
        "32",
        "--batch",
        "2",
        "--threads",
        "1",
        "--no-progress",
    ]
    args = parser.parse_args(argv)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_tiny_run_lowers_the_loss_and_writes_a_verified_card(
    data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w.safetensors"
    args = _args(data_root, out, steps=60, lr=3e-3, encoder="resnet18")
    assert train.run(args) == 0
    card_data = json.loads(out.with_suffix(".card.json").read_text())
    summary = card_data["training"]
    assert summary["loss_last_50_mean"] < summary["loss_first_50_mean"]
    assert summary["device"] == "cpu" and summary["steps"] == 60
    assert summary["surfaces"] == ["scene@120m", "scene@20m", "scene@60m"]
    assert card_data["encoder"] == "resnet18"
    card = load_card(out.with_suffix(".card.json"))
    from component.model.network import load_model

    load_model(card)  # the written weights match the written card's sha256 and architecture


def test_resume_continues_from_checkpoint(data_root: Path, tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    first = _args(
        data_root,
        tmp_path / "a.safetensors",
        steps=2,
        checkpoint_dir=ck,
        checkpoint_every=2,
        encoder="resnet18",
    )
    train.run(first)
    state = torch.load(ck / "last.pt", weights_only=False)
    assert state["step"] == 2
    resumed = _args(
        data_root,
        tmp_path / "b.safetensors",
        steps=3,
        checkpoint_dir=ck,
        checkpoint_every=1,
        resume=True,
        encoder="resnet18",
    )
    train.run(resumed)
    assert len(torch.load(ck / "last.pt", weights_only=False)["losses"]) == 3


def test_no_surfaces_is_a_clear_error(tmp_path: Path) -> None:
    from component.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="surfaces"):
        train.run(_args(tmp_path, tmp_path / "x.safetensors"))


def test_widened_weights_compute_what_the_narrower_network_did() -> None:
    """Weights trained on fewer context channels start a card with more: the new channels'
    first-layer weights are zero, so the outputs are unchanged whatever those channels say."""
    from dataclasses import replace

    from component.model.network import build_model

    card = replace(load_card(), encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8))
    narrow = build_model(card).eval()
    wide_card = replace(card, context_channels=(*card.context_channels, "elevation_km"))
    wide = build_model(wide_card).eval()
    wide.unet.load_state_dict(train.widened(narrow.unet.state_dict(), wide.unet))
    x = torch.rand(1, card.in_channels, 64, 64)
    extra = torch.rand(1, 1, 64, 64) * 4
    with torch.inference_mode():
        np.testing.assert_allclose(
            wide(torch.cat([x, extra], 1)).numpy(), narrow(x).numpy(), atol=1e-6
        )


def test_context_channels_are_appended_to_the_card(data_root: Path, tmp_path: Path) -> None:
    from component.errors import InvalidParameterError

    args = _args(data_root, tmp_path / "c.safetensors", context_channels="elevation_km,aot_prior")
    card = train.resolved_card(args)
    assert card.context_channels[-2:] == ("elevation_km", "aot_prior")
    assert card.raw["mlm:input"][0]["input"]["shape"][1] == card.in_channels
    args.context_channels = "moon_phase"
    with pytest.raises(InvalidParameterError, match="moon_phase"):
        train.resolved_card(args)
