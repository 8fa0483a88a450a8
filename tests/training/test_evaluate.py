"""``evaluate``: metrics JSON, baselines on the same pixels, prediction raster, figure."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from component.errors import InvalidParameterError
from component.model.card import load_card
from component.model.network import build_model, save_weights
from component.training import evaluate

SHIPPED_CARD = Path(__file__).resolve().parents[1] / "models" / "model_card.json"
TRANSFORM = from_origin(500000, 5100000, 10, 10)


def _write(path: Path, data: np.ndarray, nodata: float | None) -> Path:
    profile = {
        "driver": "GTiff", "count": data.shape[0], "height": data.shape[1],
        "width": data.shape[2], "dtype": "uint16", "crs": "EPSG:32632",
        "transform": TRANSFORM, "nodata": nodata,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint16))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic 12-band TOA (offset +1000 DN, nodata 65535), 11-band BOA, and a seeded card."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    boa = rng.uniform(300, 3000, (11, 40, 70))
    toa = np.concatenate([boa[:9] * 0.9 + 800 + 1000, np.full((1, 40, 70), 1050), boa[9:] + 1000])
    toa[:, 3, 4] = 65535
    data = json.loads(SHIPPED_CARD.read_text())
    torch.manual_seed(0)
    sha = save_weights(build_model(load_card(SHIPPED_CARD)), root / "w.safetensors")
    data["weights"] = {"file": "w.safetensors", "sha256": sha, "format": "safetensors"}
    data["tiling"] = {"tile_size": 64, "overlap": 16}
    (root / "model_card.json").write_text(json.dumps(data))
    return {
        "l1c": _write(root / "toa.tif", toa, 65535),
        "l2a": _write(root / "boa.tif", boa, None),
        "card": root / "model_card.json",
        "root": root,
    }


def _args(inputs: dict[str, Path], *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(
        ["--l1c", str(inputs["l1c"]), "--l2a", str(inputs["l2a"]), "--l1c-bands", "2,3,4",
         "--l2a-bands", "2,3,4", "--l1c-offset", "-1000", "--card", str(inputs["card"]),
         "--device", "cpu", *extra]
    )  # fmt: skip


def test_json_metrics_and_float_prediction(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = inputs["root"] / "pred.tif"
    fig = inputs["root"] / "fig.png"
    assert (
        evaluate.run(_args(inputs, "--json", "--save-prediction", str(out), "--figure", str(fig)))
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    for method in ("model", "identity", "dos"):
        overall = result[method]["overall"]
        assert overall["valid_pixels"] == 40 * 70 - 1
        assert set(result[method]["per_band"]) == {"B02", "B03", "B04"}
        assert np.isfinite(
            [overall["rmse"], overall["psnr"], overall["ssim"], overall["sam"]]
        ).all()
    # identity error is the known synthetic offset: TOA = 0.9 BOA + 0.08
    assert result["identity"]["overall"]["rmse"] > 0.01
    with rasterio.open(out) as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (3, 40, 70, "float32")
        assert src.transform == TRANSFORM
        pred = src.read()
    assert np.isnan(pred[:, 3, 4]).all() and np.isfinite(pred[:, 0, 0]).all()
    assert fig.stat().st_size > 1000


def test_uint16_prediction_has_scale_and_offset(inputs: dict[str, Path]) -> None:
    out = inputs["root"] / "pred16.tif"
    evaluate.run(_args(inputs, "--save-prediction", str(out), "--prediction-dtype", "uint16"))
    with rasterio.open(out) as src:
        assert src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.scales == (0.0001,) * 3 and src.offsets == (-0.1,) * 3
        assert src.read(1)[3, 4] == 0


def test_band_count_must_match_the_card(inputs: dict[str, Path]) -> None:
    args = _args(inputs)
    args.l1c_bands = "2,3"
    with pytest.raises(InvalidParameterError, match="B02"):
        evaluate.run(args)
