"""``python -m component evaluate``: score the model against a reference L2A, with baselines.

The model runs through the same :class:`component.model.correction.SceneCorrector` as the
production pipeline (atmosphere estimated on the card's coarse grid, every band inverted on the
file's grid), so the numbers describe what users get. Three baselines are scored on exactly the
same valid pixels:

* ``identity``: no correction (L1C as L2A), the size of the atmospheric signal;
* ``dos``: dark-object subtraction (per band, the 1st percentile), the classic scene-based fix;
* ``physics``: the same 6S table, cirrus and adjacency correction under a fixed standard
  atmosphere (AOT 0.1, water vapour 1.5 cm): what the network's estimate of the atmosphere adds.
* ``aux`` (with ``--aux-aot`` and ``--aux-water``): the same physics under the atmosphere the
  product's own forecasts give (CAMS AOD at 550 nm, ECMWF total column water vapour): the
  aux-only atmosphere, with no estimate from the scene.

Band lists are 1-based indices into the files, in the card's input order (13 L1C bands, B01..B12
with B8A after B08 and B10 before B11) and output order (12 L2A bands, no B10); ``0`` marks a
band the file does not have. A missing input band is substituted (the summary says how); a
missing reference band is not scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from component.errors import InvalidParameterError, OutputError
from component.model.atmosphere import DEFAULT_GEOMETRY, Geometry, relative_azimuth
from component.model.card import ModelCard, load_card
from component.model.correction import SceneCorrector, StandardAtmosphere
from component.training import baselines, metrics
from component.training.pairs import RasterSpec, parse_band_list, read_reflectance

METHODS = ("model", "physics", "aux", "identity", "dos")
"""Every method, in the tables' order; ``aux`` only where its values are given."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m component evaluate``."""
    parser.add_argument("--l1c", type=Path, required=True, help="L1C GeoTIFF (TOA)")
    parser.add_argument("--l2a", type=Path, required=True, help="reference L2A GeoTIFF (BOA)")
    parser.add_argument(
        "--l1c-bands",
        required=True,
        help="13 1-based band indices of the L1C file in the card's input order "
        "(B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B10,B11,B12); 0 = not in the file",
    )
    parser.add_argument(
        "--l2a-bands",
        required=True,
        help="12 1-based band indices of the L2A file in the card's output order "
        "(B01,...,B8A,B09,B11,B12); 0 = not in the file (that band is not scored)",
    )
    for side in ("l1c", "l2a"):
        parser.add_argument(
            f"--{side}-scale",
            type=float,
            default=10000.0,
            help="reflectance = (DN + offset) / scale",
        )
        parser.add_argument(
            f"--{side}-offset",
            type=float,
            default=0.0,
            help="-1000 for processing baseline >= 04.00 DN",
        )
        parser.add_argument(
            f"--{side}-nodata", type=float, default=None, help="nodata DN (default: the file's)"
        )
    parser.add_argument("--sun-zenith", type=float, default=None, help="degrees")
    parser.add_argument("--sun-azimuth", type=float, default=None, help="degrees")
    parser.add_argument("--view-zenith", type=float, default=None, help="degrees")
    parser.add_argument("--view-azimuth", type=float, default=None, help="degrees")
    elevation = parser.add_mutually_exclusive_group()
    elevation.add_argument(
        "--elevation-m",
        type=float,
        default=None,
        help="the chip's elevation, metres (default: from --dem, else the offline map)",
    )
    elevation.add_argument(
        "--dem", default=None, metavar="PATH_OR_URL", help="elevation raster (its chip mean)"
    )
    parser.add_argument(
        "--aux-aot",
        type=float,
        default=None,
        help="the chip's CAMS AOD at 550 nm: adds the aux-only baseline (with --aux-water)",
    )
    parser.add_argument(
        "--aux-water",
        type=float,
        default=None,
        help="the chip's ECMWF total column water vapour, cm (with --aux-aot)",
    )
    parser.add_argument("--card", type=Path, default=None, help="model card (default: shipped)")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help=".safetensors or .pth state_dict (not checksum-verified)",
    )
    cirrus = parser.add_mutually_exclusive_group()
    cirrus.add_argument(
        "--cirrus-correction",
        dest="cirrus_correction",
        action="store_true",
        help="take thin cirrus (B10) out of every band, as run --cirrus-correction does",
    )
    cirrus.add_argument(
        "--no-cirrus",
        dest="cirrus_correction",
        action="store_false",
        help="flag cirrus only, do not subtract it (the default, as run's and Sen2Cor's)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--engine", default="auto", help="auto, onnx or torch")
    parser.add_argument(
        "--save-prediction",
        type=Path,
        default=None,
        metavar="OUT.tif",
        help="the card's 12 output bands, float32 reflectance, described B01..",
    )
    parser.add_argument(
        "--prediction-dtype",
        choices=("float32", "uint16"),
        default="float32",
        help="uint16: DN = reflectance*10000 + 1000, GDAL scale/offset set",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--figure", type=Path, default=None, metavar="OUT.png")


def geometry_from(args: argparse.Namespace) -> Geometry | None:
    """The angles given on the command line; None when none are (defaults then stand in)."""
    given = [args.sun_zenith, args.sun_azimuth, args.view_zenith, args.view_azimuth]
    if all(v is None for v in given):
        return None
    if args.sun_zenith is None:
        raise InvalidParameterError("give --sun-zenith with the other angles (degrees)")
    if not 0 <= args.sun_zenith < 90:
        raise InvalidParameterError(f"--sun-zenith {args.sun_zenith} must lie in [0, 90)")
    view = DEFAULT_GEOMETRY.view_zenith if args.view_zenith is None else args.view_zenith
    azimuth = DEFAULT_GEOMETRY.relative_azimuth
    if args.sun_azimuth is not None and args.view_azimuth is not None:
        azimuth = relative_azimuth(args.sun_azimuth, args.view_azimuth)
    return Geometry(float(args.sun_zenith), float(view), float(azimuth), known=True)


def aux_atmosphere(args: argparse.Namespace) -> StandardAtmosphere | None:
    """The fixed atmosphere of ``--aux-aot`` and ``--aux-water`` (None without them); one
    without the other, or a value outside the table's range, is a parameter error."""
    aot, water = getattr(args, "aux_aot", None), getattr(args, "aux_water", None)
    if aot is None and water is None:
        return None
    if aot is None or water is None:
        raise InvalidParameterError("give --aux-aot and --aux-water together (CAMS AOD, cm)")
    if not (0.0 <= aot <= 5.0 and 0.0 <= water <= 10.0):
        raise InvalidParameterError(
            f"--aux-aot {aot:g} must lie in [0, 5] and --aux-water {water:g} in [0, 10] cm"
        )
    return StandardAtmosphere(aot=float(aot), water=float(water))


def score(
    toa: np.ndarray,
    boa: np.ndarray,
    predictions: dict[str, np.ndarray],
    out_bands: tuple[str, ...],
    in_bands: tuple[str, ...],
) -> dict[str, Any]:
    """Every method's metrics on the pixels valid in all of them and in the reference.

    Bands absent from the reference (all NaN) are left out of every score.
    """
    scored = tuple(b for i, b in enumerate(out_bands) if np.isfinite(boa[i]).any())
    index = [out_bands.index(b) for b in scored]
    toa_out = toa[[in_bands.index(b) for b in out_bands]]
    candidates = {
        **predictions,
        "identity": baselines.identity(toa_out),
        "dos": baselines.dark_object_subtraction(toa_out),
    }
    ref = boa[index]
    mask = metrics.valid_mask(ref, *(c[index] for c in candidates.values()))
    return {
        "bands": list(scored),
        **{name: metrics.compare(c[index], ref, mask, scored) for name, c in candidates.items()},
    }


def chip_elevation(
    args: argparse.Namespace, profile: dict[str, Any], shape: tuple[int, int]
) -> tuple[float, str]:
    """The chip's elevation (metres) and its source: ``--elevation-m``, else the mean of
    ``--dem`` over the chip, else of the offline map when the chip is georeferenced, else sea
    level."""
    from component.core.grid import Grid
    from component.core.settings import Settings
    from component.io import elevation

    given = getattr(args, "elevation_m", None)
    if given is not None:
        return float(given), "--elevation-m"
    crs, transform = profile.get("crs"), profile.get("transform")
    dem = getattr(args, "dem", None)
    if crs is None or transform is None or crs.to_epsg() is None:
        if dem:
            raise InvalidParameterError("--dem needs a georeferenced chip: give --elevation-m")
        return 0.0, "sea level (the chip has no CRS)"
    grid = Grid(int(crs.to_epsg()), transform, shape[1], shape[0])
    settings = Settings.from_environ()
    if dem:
        heights, _ = elevation.resolve(dem, grid, settings)
    else:
        heights, _ = elevation.resolve(None, grid, settings)
    return float(np.mean(heights.metres)), heights.source


EQUATOR_M_PER_DEGREE = 111_320.0
"""Metres per degree of longitude at the equator (WGS84), and roughly of latitude anywhere."""


def cell_size_m(profile: dict[str, Any], height: int) -> float:
    """The chip's pixel size in metres, from its CRS: the transform's in a projected CRS; in
    a geographic one (exported chips often are EPSG:4326) the geometric mean of the cell's
    east-west and north-south sizes at the chip's centre latitude."""
    transform = profile.get("transform")
    if transform is None:
        return 10.0
    crs = profile.get("crs")
    if crs is None or not crs.is_geographic:
        factor = 1.0
        if crs is not None:
            try:
                factor = float(crs.linear_units_factor[1])
            except Exception:  # a CRS without linear units stated: metres
                factor = 1.0
        return abs(float(transform.a)) * factor
    latitude = float(transform.f + transform.e * height / 2.0)
    if not -90.0 <= latitude <= 90.0:
        raise InvalidParameterError(
            f"the chip's geographic grid puts its centre at latitude {latitude:g}: check its CRS"
        )
    east = abs(float(transform.a)) * EQUATOR_M_PER_DEGREE * np.cos(np.radians(latitude))
    north = abs(float(transform.e)) * EQUATOR_M_PER_DEGREE
    return float(np.sqrt(east * north))


def _check_bands(card: ModelCard, l1c: tuple[int, ...], l2a: tuple[int, ...]) -> None:
    if len(l1c) != len(card.input_bands) or len(l2a) != len(card.output_bands):
        raise InvalidParameterError(
            f"the model takes {len(card.input_bands)} L1C bands {list(card.input_bands)} and "
            f"returns {len(card.output_bands)} {list(card.output_bands)}: give that many indices "
            "in that order (0 for a band the file lacks)"
        )


def save_prediction(
    pred: np.ndarray, bands: tuple[str, ...], profile: dict, path: Path, dtype: str
) -> None:
    """The prediction on the L1C grid, one band per output band, described by its name."""
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
            for i, band in enumerate(bands, start=1):
                dst.set_band_description(i, band)
            if dtype == "uint16":
                dst.scales = [0.0001] * data.shape[0]
                dst.offsets = [-0.1] * data.shape[0]
    except Exception as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc


def _rgb(a: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    order = [bands.index(b) for b in ("B04", "B03", "B02")]
    return np.clip(np.nan_to_num(np.moveaxis(a[order], 0, -1), nan=0.0) / 0.3, 0, 1)


def save_figure(toa_out, pred, boa, bands: tuple[str, ...], path: Path) -> None:  # type: ignore[no-untyped-def]
    """L1C | model | reference | absolute error (mean over bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    titles = ("L1C (TOA)", "model", "reference L2A")
    for ax, img, title in zip(axes[:3], (toa_out, pred, boa), titles, strict=True):
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


def _print_table(result: dict[str, Any], file: Any = None) -> None:
    file = file or sys.stdout
    bands = result["bands"]
    print(
        f"scene {result['scene']}  ({result['model']['all']['valid_pixels']} valid pixels)",
        file=file,
    )
    for note in result["notes"]:
        print(f"note: {note}", file=file)
    header = f"{'':9s}" + "".join(f"{b:>8s}" for b in bands)
    for metric, fmt in (("rmse", "8.4f"), ("bias", "+8.4f"), ("psnr", "8.2f")):
        print(f"\nper-band {metric.upper()}\n{header}", file=file)
        for name in (m for m in METHODS if m in result):
            row = result[name]["per_band"]
            print(f"{name:9s}" + "".join(format(row[b][metric], fmt) for b in bands), file=file)
    print(
        f"\n{'':9s}{'PSNR all':>9s}{'SAM all':>9s}{'SSIM':>7s}{'PSNR rgb':>9s}{'SAM rgb':>9s}"
        f"{'NDVI MAE':>9s}",
        file=file,
    )
    for name in (m for m in METHODS if m in result):
        r = result[name]
        rgb = r.get("rgb", {"psnr": float("nan"), "sam": float("nan")})
        print(
            f"{name:9s}{r['all']['psnr']:9.2f}{r['all']['sam']:9.4f}{r['all']['ssim']:7.3f}"
            f"{rgb['psnr']:9.2f}{rgb['sam']:9.4f}{r['ndvi'].get('mae', float('nan')):9.4f}",
            file=file,
        )


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Read the pair, run the model and the baselines, return the report."""
    from component.model.engines import build_scene_corrector

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
    resolution = cell_size_m(profile, toa.shape[1])
    geometry = geometry_from(args)
    cirrus = bool(getattr(args, "cirrus_correction", False))
    elevation_m, elevation_source = chip_elevation(args, profile, toa.shape[1:])
    corrector, runtime = build_scene_corrector(
        card, args.weights, args.device, args.engine, cirrus_correction=cirrus
    )
    prediction, state = corrector.correct_array(toa, resolution, geometry, elevation_m=elevation_m)

    def under(fixed: StandardAtmosphere) -> np.ndarray:
        """The same physics (table, cirrus, adjacency) under a fixed atmosphere."""
        baseline = SceneCorrector(
            corrector.atmosphere,
            fixed,
            corrector.input_bands,
            corrector.adjacency_sigma_m,
            0.0,
            corrector.cirrus_atmosphere,
            corrector.grid_m,
            cirrus_correction=cirrus,
        )
        return baseline.correct_array(toa, resolution, geometry, elevation_m=elevation_m)[0]

    predictions = {"model": prediction, "physics": under(StandardAtmosphere())}
    aux = aux_atmosphere(args)
    if aux is not None:
        predictions["aux"] = under(aux)
    result = {
        "scene": args.l1c.stem,
        "model_card": {"name": card.name, "version": card.version, "runtime": runtime},
        "weights": str(args.weights) if args.weights else str(card.weights_path),
        "geometry": "given" if geometry is not None else "unknown (defaults)",
        "cell_size_m": round(resolution, 3),
        "cirrus_correction": cirrus,
        "elevation_m": round(elevation_m, 1),
        "elevation_source": elevation_source,
        "atmosphere": {
            "aot550_mean": float(np.nanmean(state.aot)),
            "water_vapour_cm_mean": float(np.nanmean(state.water)),
            "cirrus_mean": float(np.nanmean(state.cirrus)),
        },
        "notes": state.notes,
        **score(
            toa,
            boa,
            predictions,
            card.output_bands,
            card.input_bands,
        ),
    }
    if args.save_prediction:
        save_prediction(
            prediction, card.output_bands, profile, args.save_prediction, args.prediction_dtype
        )
    if args.figure:
        toa_out = toa[[card.input_bands.index(b) for b in card.output_bands]]
        save_figure(toa_out, prediction, boa, card.output_bands, args.figure)
    return result


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m component evaluate``."""
    result = evaluate(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m component evaluate", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
