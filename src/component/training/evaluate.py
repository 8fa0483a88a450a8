"""``python -m component evaluate``: score the model against a reference L2A, with baselines.

The model runs through :class:`component.model.inference.Corrector`, the same loading, normalization
and tiling code as the production pipeline, so the numbers describe what users get. Identity
(no correction) and dark-object subtraction are scored on exactly the same valid pixels, which
is what makes the model's numbers meaningful.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from component.errors import InvalidParameterError, OutputError
from component.model.card import ModelCard, load_card
from component.model.inference import Corrector
from component.training import baselines, metrics
from component.training.pairs import RasterSpec, parse_band_list, read_reflectance


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m component evaluate``."""
    parser.add_argument("--l1c", type=Path, required=True, help="L1C GeoTIFF (TOA)")
    parser.add_argument("--l2a", type=Path, required=True, help="reference L2A GeoTIFF (BOA)")
    parser.add_argument("--l1c-bands", required=True, help="1-based bands in card order: 2,3,4")
    parser.add_argument("--l2a-bands", required=True, help="1-based bands in card order: 2,3,4")
    for side in ("l1c", "l2a"):
        parser.add_argument(f"--{side}-scale", type=float, default=10000.0,
                            help="reflectance = (DN + offset) / scale")  # fmt: skip
        parser.add_argument(f"--{side}-offset", type=float, default=0.0)
        parser.add_argument(f"--{side}-nodata", type=float, default=None,
                            help="nodata DN (default: the file's)")  # fmt: skip
    parser.add_argument("--card", type=Path, default=None, help="model card (default: shipped)")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help=".safetensors or ESA-style .pth state_dict (not checksum-verified)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--save-prediction", type=Path, default=None, metavar="OUT.tif")
    parser.add_argument(
        "--prediction-dtype",
        choices=("float32", "uint16"),
        default="float32",
        help="uint16: DN = reflectance*10000 + 1000, GDAL scale/offset set",
    )
    parser.add_argument("--json", action="store_true", help="print metrics as JSON")
    parser.add_argument("--figure", type=Path, default=None, metavar="OUT.png")  # fmt: skip


def score(
    toa: np.ndarray, boa: np.ndarray, pred: np.ndarray, bands: tuple[str, ...]
) -> dict[str, dict]:
    """Model, identity and DOS metrics on the pixels valid in all of them and the reference."""
    candidates = {
        "model": pred,
        "identity": baselines.identity(toa),
        "dos": baselines.dark_object_subtraction(toa),
    }
    mask = metrics.valid_mask(boa, *candidates.values())
    return {name: metrics.compare(arr, boa, mask, bands) for name, arr in candidates.items()}


def _check_bands(card: ModelCard, l1c: tuple[int, ...], l2a: tuple[int, ...]) -> None:
    if len(l1c) != card.in_channels or len(l2a) != card.out_channels:
        raise InvalidParameterError(
            f"the model takes {list(card.input_bands)} and returns {list(card.output_bands)}: "
            f"give {card.in_channels} L1C and {card.out_channels} L2A band indices in that order"
        )


def save_prediction(pred: np.ndarray, profile: dict, path: Path, dtype: str) -> None:
    """The prediction on the L1C grid as GeoTIFF (float32 reflectance or scaled uint16)."""
    import rasterio

    out = {k: profile[k] for k in ("crs", "transform", "width", "height") if k in profile}
    out.update(driver="GTiff", count=pred.shape[0], compress="deflate")
    if dtype == "uint16":
        dn = np.where(np.isfinite(pred), np.round(np.nan_to_num(pred) * 10000) + 1000, 0)
        data, nodata = np.clip(dn, 0, 65535).astype(np.uint16), 0
    else:
        data, nodata = pred.astype(np.float32), float("nan")
    out.update(dtype=data.dtype.name, nodata=nodata)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", **out) as dst:
            dst.write(data)
            if dtype == "uint16":
                dst.scales = [0.0001] * data.shape[0]
                dst.offsets = [-0.1] * data.shape[0]
    except Exception as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc


def _rgb(a: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    order = [bands.index(b) for b in ("B04", "B03", "B02") if b in bands] or [0, 0, 0]
    rgb = np.nan_to_num(np.moveaxis(a[order], 0, -1), nan=0.0)
    return np.clip(rgb / 0.3, 0, 1) if rgb.shape[-1] == 3 else np.clip(rgb[..., 0] / 0.3, 0, 1)


def save_figure(toa, pred, boa, bands: tuple[str, ...], path: Path) -> None:
    """L1C | model | reference | absolute error (mean over bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, img, title in zip(
        axes[:3], (toa, pred, boa), ("L1C (TOA)", "model", "reference L2A"), strict=True
    ):
        ax.imshow(_rgb(img, bands))
        ax.set_title(title)
    err = np.nanmean(np.abs(pred - boa), axis=0)
    im = axes[3].imshow(err, cmap="magma", vmin=0, vmax=max(0.02, float(np.nanpercentile(err, 99))))
    axes[3].set_title("|model - reference|")
    fig.colorbar(im, ax=axes[3], fraction=0.046)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _print_table(result: dict, file=sys.stdout) -> None:
    print(f"{'':10s}{'RMSE':>9s}{'PSNR dB':>9s}{'SSIM':>8s}{'SAM rad':>9s}", file=file)
    for name in ("model", "identity", "dos"):
        o = result[name]["overall"]
        line = f"{o['rmse']:9.4f}{o['psnr']:9.2f}{o['ssim']:8.4f}{o['sam']:9.4f}"
        print(f"{name:10s}{line}", file=file)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m component evaluate``."""
    card = load_card(args.card)
    l1c_bands, l2a_bands = parse_band_list(args.l1c_bands), parse_band_list(args.l2a_bands)
    _check_bands(card, l1c_bands, l2a_bands)
    toa, profile = read_reflectance(
        RasterSpec(args.l1c, l1c_bands, args.l1c_scale, args.l1c_offset, args.l1c_nodata)
    )
    boa, _ = read_reflectance(
        RasterSpec(args.l2a, l2a_bands, args.l2a_scale, args.l2a_offset, args.l2a_nodata)
    )
    if toa.shape[1:] != boa.shape[1:]:
        raise InvalidParameterError(f"L1C {toa.shape[1:]} and L2A {boa.shape[1:]} grids differ")
    pred = Corrector.from_card(card, args.weights, args.device).correct(toa)
    result = {
        "model_card": {"name": card.name, "version": card.version},
        "weights": str(args.weights) if args.weights else card.weights_path.name,
        **score(toa, boa, pred, card.output_bands),
    }
    if args.save_prediction:
        save_prediction(pred, profile, args.save_prediction, args.prediction_dtype)
    if args.figure:
        save_figure(toa, pred, boa, card.output_bands, args.figure)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m component.training.evaluate", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
