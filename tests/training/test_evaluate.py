"""``evaluate``: the report's structure, band skipping, geometry flags, the prediction raster.

The chips are simulated with the 6S table itself under the standard atmosphere, so the
physics-only correction must recover the surface almost exactly: that checks the whole path
(reading, scaling, band order, coarse grid, inversion, scoring) against a known answer.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.errors import InvalidParameterError
from component.model.atmosphere import Atmosphere, Geometry, Terms
from component.model.card import load_card
from component.training import evaluate
from support.models import random_models_dir  # noqa: F401

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
TRANSFORM = from_origin(500000, 5100000, 10, 10)
GEOMETRY = Geometry(30.0, 5.0, 90.0)
ALL_L1C = ",".join(str(i) for i in range(1, 14))
ALL_L2A = ",".join(str(i) for i in range(1, 13))


def _write(path: Path, data: np.ndarray, nodata: float | None) -> Path:
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": "uint16",
        "crs": "EPSG:32632",
        "transform": TRANSFORM,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint16))
    return path


@pytest.fixture(scope="module")
def physics_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped card without weights (the physics-only model) and without adjacency."""
    folder = tmp_path_factory.mktemp("physics")
    data = json.loads((REPO_MODELS / "model_card.json").read_text())
    data["weights"] = None
    data.pop("onnx", None)
    data["atmosphere"]["adjacency_sigma_m"] = 0.0
    shutil.copyfile(
        REPO_MODELS / data["atmosphere"]["lut"]["file"], folder / data["atmosphere"]["lut"]["file"]
    )
    (folder / "model_card.json").write_text(json.dumps(data))
    return folder / "model_card.json"


@pytest.fixture(scope="module")
def chip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 13-band L1C chip (baseline >= 04.00 DN, +1000) simulated from a 12-band surface."""
    root = tmp_path_factory.mktemp("chip")
    card = load_card()
    assert card.lut_path is not None
    atmosphere = Atmosphere.load(card.lut_path)
    rng = np.random.default_rng(0)
    base = gaussian_filter(rng.uniform(0, 1, (60, 70)), 3)
    base = (base - base.min()) / (base.max() - base.min())
    spectrum = np.linspace(0.05, 0.35, len(L1C_BANDS))[:, None, None]
    surface = (spectrum * (0.6 + 0.8 * base)).astype(np.float32)  # (13, 60, 70)
    terms = atmosphere.terms(0.1, 1.5, GEOMETRY)  # the standard atmosphere
    shape = (len(L1C_BANDS), 1, 1)
    terms = Terms(
        *(t.reshape(shape) for t in (terms.path, terms.transmittance, terms.spherical_albedo))
    )
    toa = Atmosphere.forward(surface, terms)
    toa[L1C_BANDS.index("B10")] = 0.002  # no cirrus
    toa_dn = np.round(toa * 10000) + 1000
    toa_dn[:, 2, 3] = 65535  # saturated: nodata for every method
    boa = surface[[L1C_BANDS.index(b) for b in L2A_BANDS]]
    return {
        "l1c": _write(root / "toa.tif", toa_dn, 65535),
        "l2a": _write(root / "boa.tif", np.round(boa * 10000), 0),
        "root": root,
    }


AUTO = "--auto-elevation"
"""A marker for _args: leave the elevation to evaluate (the chips are simulated at sea level,
so every other test says so)."""


def _elevation(extra: tuple[str, ...]) -> tuple[str, ...]:
    return () if {"--elevation-m", "--dem", AUTO} & set(extra) else ("--elevation-m", "0")


def _args(chip: dict[str, Path], card: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(
        [
            "--l1c",
            str(chip["l1c"]),
            "--l2a",
            str(chip["l2a"]),
            "--l1c-bands",
            ALL_L1C,
            "--l2a-bands",
            ALL_L2A,
            "--l1c-offset",
            "-1000",
            "--card",
            str(card),
            "--device",
            "cpu",
            *_elevation(extra),
            *(e for e in extra if e != AUTO),
        ]
    )


def test_physics_recovers_a_surface_simulated_under_its_atmosphere(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    report = evaluate.evaluate(
        _args(chip, physics_card, "--sun-zenith", "30", "--view-zenith", "5")
    )
    assert report["geometry"] == "given"
    assert report["bands"] == list(L2A_BANDS)
    model, identity = report["model"], report["identity"]
    assert model["all"]["rmse"] < 0.002 and model["rgb"]["psnr"] > 50
    assert identity["all"]["rmse"] > 10 * model["all"]["rmse"]
    assert model["ndvi"]["mae"] < 0.005 < identity["ndvi"]["mae"]
    assert set(report) >= {"model", "physics", "identity", "dos", "atmosphere", "notes"}
    assert "aux" not in report, "no forecast values given"
    for method in ("model", "physics", "identity", "dos"):
        assert report[method]["all"]["valid_pixels"] == 60 * 70 - 1  # the saturated pixel
        assert set(report[method]["per_band"]["B04"]) == {"rmse", "bias", "psnr", "ssim"}


def test_the_aux_only_atmosphere_is_scored_from_the_forecast_values(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    """--aux-aot and --aux-water (CAMS AOD, ECMWF water vapour) add the aux-only baseline: the
    same physics under those values, on the same pixels. Under the simulation's own
    atmosphere it recovers the surface; under a wrong aerosol it does not."""
    angles = ("--sun-zenith", "30", "--view-zenith", "5")
    right = evaluate.evaluate(_args(chip, physics_card, *angles, "--aux-aot", "0.1",
                                    "--aux-water", "1.5"))  # fmt: skip
    wrong = evaluate.evaluate(_args(chip, physics_card, *angles, "--aux-aot", "0.5",
                                    "--aux-water", "1.5"))  # fmt: skip
    assert right["aux"]["all"]["valid_pixels"] == right["model"]["all"]["valid_pixels"]
    assert right["aux"]["all"]["rmse"] < 0.002
    assert wrong["aux"]["all"]["rmse"] > 5 * right["aux"]["all"]["rmse"]
    assert wrong["physics"] == right["physics"]
    with pytest.raises(InvalidParameterError, match="together"):
        evaluate.evaluate(_args(chip, physics_card, "--aux-aot", "0.1"))
    with pytest.raises(InvalidParameterError, match="must lie"):
        evaluate.evaluate(_args(chip, physics_card, "--aux-aot", "-1", "--aux-water", "1"))


def test_a_georeferenced_chip_gets_the_offline_elevation_by_default(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    """The chip lies in the Alps (UTM 32N, 46 N 9 E): without --elevation-m or --dem the
    offline map gives it its elevation, and the physics then expects less air above it than
    the sea-level simulation had (so it recovers the surface less well than at sea level)."""
    sea = evaluate.evaluate(_args(chip, physics_card, "--sun-zenith", "30", "--view-zenith", "5"))
    auto = evaluate.evaluate(
        _args(chip, physics_card, "--sun-zenith", "30", "--view-zenith", "5", AUTO)
    )
    assert sea["elevation_m"] == 0 and sea["elevation_source"] == "--elevation-m"
    assert auto["elevation_m"] > 500 and "offline" in auto["elevation_source"]
    assert auto["model"]["all"]["rmse"] > 2 * sea["model"]["all"]["rmse"]


def test_unknown_geometry_is_reported(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    report = evaluate.evaluate(_args(chip, physics_card))
    assert report["geometry"].startswith("unknown")
    assert any("geometry" in note for note in report["notes"])


def test_missing_bands_are_skipped_or_substituted(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    """B8A absent from both files (sen2r layout), B10 absent from the L1C."""
    l1c = ALL_L1C.split(",")
    l1c[L1C_BANDS.index("B8A")] = "0"
    l1c[L1C_BANDS.index("B10")] = "0"
    l2a = ALL_L2A.split(",")
    l2a[L2A_BANDS.index("B8A")] = "0"
    args = _args(chip, physics_card)
    args.l1c_bands, args.l2a_bands = ",".join(l1c), ",".join(l2a)
    report = evaluate.evaluate(args)
    assert "B8A" not in report["bands"] and len(report["bands"]) == 11
    assert any("B8A" in note for note in report["notes"])
    assert not any("B10" in note for note in report["notes"]), "cirrus is not corrected anyway"
    args.cirrus_correction = True
    report = evaluate.evaluate(args)
    assert report["cirrus_correction"] is True
    assert any("B10" in note for note in report["notes"])


def test_a_chip_without_the_bands_the_model_needs_is_an_input_error(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    """An RGB-only chip: exit 4 naming the bands, not the model's exit 8."""
    from component.errors import InvalidItemError

    rgb = ["0"] * len(L1C_BANDS)
    for band in ("B02", "B03", "B04"):
        rgb[L1C_BANDS.index(band)] = str(L1C_BANDS.index(band) + 1)
    args = _args(chip, physics_card)
    args.l1c_bands = ",".join(rgb)
    with pytest.raises(InvalidItemError, match="B05") as raised:
        evaluate.evaluate(args)
    assert raised.value.exit_code == 4


def test_a_chip_in_geographic_coordinates_is_scored_in_metres(chip, physics_card, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Chips exported in EPSG:4326 (cells in degrees) are scored as their UTM twins are: the
    cell size comes from the CRS, so the coarse grid is the same 120 m, not 120 degrees."""
    latitude = 46.0
    cell = 10.0 / evaluate.EQUATOR_M_PER_DEGREE
    geographic = from_origin(9.0, latitude, cell / np.cos(np.radians(latitude)), cell)
    paths = {}
    for side in ("l1c", "l2a"):
        with rasterio.open(chip[side]) as src:
            data, profile = src.read(), src.profile
        profile.update(crs="EPSG:4326", transform=geographic)
        paths[side] = tmp_path / f"{side}.tif"
        with rasterio.open(paths[side], "w", **profile) as dst:
            dst.write(data)
    args = _args({**chip, **paths}, physics_card, "--sun-zenith", "30", "--view-zenith", "5")
    report = evaluate.evaluate(args)
    assert report["cell_size_m"] == pytest.approx(10.0, rel=0.01)
    utm = evaluate.evaluate(_args(chip, physics_card, "--sun-zenith", "30", "--view-zenith", "5"))
    assert report["model"]["all"]["rmse"] == pytest.approx(utm["model"]["all"]["rmse"], rel=1e-3)


def test_save_prediction_writes_every_output_band_named(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    out = chip["root"] / "prediction.tif"
    evaluate.evaluate(_args(chip, physics_card, "--save-prediction", str(out)))
    with rasterio.open(out) as src:
        assert src.count == 12 and src.descriptions == L2A_BANDS
        assert src.transform == TRANSFORM and src.dtypes[0] == "float32"
        assert np.isnan(src.read(1)[2, 3])
    dn = chip["root"] / "prediction_dn.tif"
    evaluate.evaluate(
        _args(chip, physics_card, "--save-prediction", str(dn), "--prediction-dtype", "uint16")
    )
    with rasterio.open(dn) as src:
        assert src.scales == (0.0001,) * 12 and src.offsets == (-0.1,) * 12 and src.nodata == 0


def test_the_network_path_runs(chip, random_models_dir: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    report = evaluate.evaluate(_args(chip, random_models_dir / "model_card.json"))
    assert report["model_card"]["runtime"] == "onnxruntime-cpu"
    assert np.isfinite(report["model"]["all"]["psnr"])


def test_bad_band_lists_and_geometry(chip, physics_card) -> None:  # type: ignore[no-untyped-def]
    args = _args(chip, physics_card)
    args.l1c_bands = "2,3,4"
    with pytest.raises(InvalidParameterError, match="13 L1C bands"):
        evaluate.evaluate(args)
    args = _args(chip, physics_card, "--view-zenith", "5")
    with pytest.raises(InvalidParameterError, match="--sun-zenith"):
        evaluate.evaluate(args)
    args = _args(chip, physics_card)
    args.l2a_bands = "1,2,x"
    with pytest.raises(InvalidParameterError, match="integers"):
        evaluate.evaluate(args)


def test_cli_prints_a_table_and_json(chip, physics_card, capsys) -> None:  # type: ignore[no-untyped-def]
    args = _args(chip, physics_card)
    assert evaluate.run(args) == 0
    table = capsys.readouterr().out
    assert "per-band RMSE" in table and "NDVI MAE" in table and "physics" in table
    args.json = True
    evaluate.run(args)
    assert json.loads(capsys.readouterr().out)["bands"] == list(L2A_BANDS)
