"""``python -m component run|train|evaluate``: a thin layer over the pipeline.

Every flag accepts an empty string as "not given", because DeltaTwin substitutes optional
inputs that a user left blank as empty strings. Failures a user can cause print one line
(``error: ...``) and exit with the code of their class (README, "Exit codes"); the run
summary JSON goes to stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from component import __version__
from component.core.settings import Settings
from component.errors import ComponentError, InvalidParameterError
from component.params import (
    DEFAULT_COLLECTION,
    DEFAULT_STAC_URL,
    RunParams,
    SearchParams,
    check_super_resolve,
    parse_bbox,
    parse_cloud_cover,
    parse_datetime,
    parse_elevation,
    parse_limit,
    parse_resolution,
    parse_switch,
    parse_tile,
)

T = TypeVar("T")
log = logging.getLogger("component")


def _optional(value: str | None, parse: Callable[[str], T]) -> T | None:
    if value is None or not value.strip():
        return None
    return parse(value.strip())


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    inputs = parser.add_argument_group("inputs (none given: the embedded sample)")
    inputs.add_argument(
        "--item",
        action="append",
        default=[],
        metavar="PATH_OR_URL",
        help="an L1C STAC Item, saved search results (FeatureCollection), a SAFE product "
        "(.SAFE folder or .zip) or an EOPF Zarr product (.zarr path or s3:// URL); repeatable; "
        "takes precedence over a search",
    )
    inputs.add_argument(
        "--catalog",
        metavar="DIR",
        help="a folder holding a STAC catalog.json of L1C items (OGC application package input)",
    )
    inputs.add_argument("--stac-url", default=DEFAULT_STAC_URL, help="STAC API root")
    inputs.add_argument("--collection", default=DEFAULT_COLLECTION, help="L1C collection id")
    inputs.add_argument("--bbox", help="W,S,E,N in degrees: search area and output window")
    inputs.add_argument(
        "--datetime", help="ISO interval (2024-01-01/2024-01-31) or duration back from now (P1D)"
    )
    inputs.add_argument("--max-cloud-cover", help="maximum eo:cloud_cover, percent")
    inputs.add_argument("--tile", help="MGRS tile, e.g. 31TCJ")
    inputs.add_argument("--limit", help="at most this many items")
    parser.add_argument(
        "--resolution",
        default="60",
        help="finest output grid, 10, 20 or 60 m: each band at max(this, its native resolution)",
    )
    parser.add_argument("--output", default="output", help="output catalog folder")
    parser.add_argument("--archive", help="also write a .tar.gz of the whole output catalog")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--engine", default="auto", help="auto (onnx on CPU, torch on GPU), torch or onnx"
    )
    parser.add_argument("--weights", help="other weights: .safetensors or ESA-format .pth")
    parser.add_argument(
        "--dem",
        metavar="PATH_OR_URL",
        help="elevation raster (GeoTIFF, VRT, COG URL, s3://) for the terrain's air; default: "
        "the Copernicus DEM of the CDSE STAC (with S3 keys), else an offline 5 arc-minute map",
    )
    parser.add_argument(
        "--elevation",
        default="auto",
        metavar="SOURCE",
        help="where the elevation comes from without --dem: auto (the Copernicus DEM with S3 "
        "keys, else the offline map), copernicus-90, copernicus-30 (the CDSE STAC's DEM; a "
        "failure stops the item), offline (the 5 arc-minute map, no network) or sea-level",
    )
    parser.add_argument(
        "--cirrus-correction",
        nargs="?",
        const="true",
        default="",
        metavar="true|false",
        help="take thin cirrus (B10) out of every band; default: flagged in SCL and kept out of "
        "the aerosol estimate only, as Sen2Cor's default configuration does",
    )
    parser.add_argument(
        "--super-resolve",
        nargs="?",
        const="true",
        default="",
        metavar="true|false",
        help="also write B01, B05-B07, B8A, B09, B11 and B12 sharpened onto the 10 m grid "
        "(<band>_10m, each 10 m block averaging back to the native pixel); needs --resolution 10",
    )
    parser.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="spread items over this Dask cluster (default: a local one for several items)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display and only warnings and errors on stderr (the JSON summary "
        "still goes to stdout)",
    )
    secrets = parser.add_argument_group(
        "CDSE S3 credentials (default: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    )
    secrets.add_argument("--s3-access-key-id", help=argparse.SUPPRESS)
    secrets.add_argument("--s3-secret-access-key", help=argparse.SUPPRESS)


def run_params(args: argparse.Namespace) -> RunParams:
    """Validate everything before any work starts, so a typo costs nothing."""
    resolution = parse_resolution((args.resolution or "").strip() or "60")
    super_resolve = bool(
        _optional(args.super_resolve, lambda t: parse_switch(t, "--super-resolve"))
    )
    check_super_resolve(super_resolve, resolution)
    bbox = _optional(args.bbox, parse_bbox)
    datetime = _optional(args.datetime, parse_datetime)
    cloud = _optional(args.max_cloud_cover, parse_cloud_cover)
    tile = _optional(args.tile, parse_tile)
    limit = _optional(args.limit, parse_limit)
    items = tuple(i.strip() for i in args.item if i and i.strip())
    catalog = _optional(args.catalog, str)
    if catalog is not None:
        from component.io.catalog_input import catalog_items

        items += tuple(catalog_items(catalog))
    search = None
    if not items and any(v is not None for v in (bbox, datetime, tile)):
        search = SearchParams(
            stac_url=(args.stac_url or "").strip() or DEFAULT_STAC_URL,
            collection=(args.collection or "").strip() or DEFAULT_COLLECTION,
            bbox=bbox,
            datetime=datetime,
            max_cloud_cover=cloud,
            tile=tile,
            limit=limit,
        )
    device = (args.device or "").strip() or "auto"
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidParameterError(f"unsupported --device {device!r}: choose auto, cpu or cuda")
    engine = (args.engine or "").strip() or "auto"
    if engine not in ("auto", "torch", "onnx"):
        raise InvalidParameterError(f"unsupported --engine {engine!r}: choose auto, torch or onnx")
    dem = _optional(args.dem, str)
    local = dem is not None and "://" not in dem and not dem.startswith("/vsi")
    if local and not Path(str(dem)).exists():
        raise InvalidParameterError(f"--dem {dem} does not exist: give an elevation raster")
    weights = _optional(args.weights, Path)
    if weights is not None and not weights.is_file():
        raise InvalidParameterError(f"--weights {weights} does not exist: give a weights file")
    return RunParams(
        output=Path((args.output or "").strip() or "output"),
        items=items,
        search=search,
        resolution=resolution,
        bbox=bbox,
        max_cloud_cover=cloud,
        device=device,
        engine=engine,
        weights=weights,
        cirrus_correction=bool(
            _optional(args.cirrus_correction, lambda t: parse_switch(t, "--cirrus-correction"))
        ),
        super_resolve=super_resolve,
        dem=dem,
        elevation=parse_elevation(args.elevation or ""),
        archive=_optional(args.archive, Path),
        dask_scheduler=_optional(args.dask_scheduler, str),
        progress="off" if getattr(args, "quiet", False) else "auto",
        settings=_settings(args),
    )


def _settings(args: argparse.Namespace) -> Settings:
    """The run's settings: the environment's, read here once, with the secret inputs' keys."""
    from component.io import zarr_product

    settings = Settings.from_environ().with_keys(
        (args.s3_access_key_id or "").strip(), (args.s3_secret_access_key or "").strip()
    )
    zarr_product.install_stac_io(settings)  # a .zarr --item, or an item with a Zarr product
    return settings


def _run(args: argparse.Namespace) -> int:
    params = run_params(args)  # before the heavy imports: a typo costs nothing
    from component.pipeline import run

    summary = run(params)
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


COMMANDS = ("run", "train", "evaluate")


def build_parser(wanted: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser; ``train`` and ``evaluate`` (torch-heavy imports) only when *wanted*."""
    parser = argparse.ArgumentParser(
        prog="python -m component",
        description="Sentinel-2 L1C -> L2A surface reflectance, every band on its native grid; "
        "STAC in, STAC out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="correct L1C items into an L2A STAC catalog")
    add_run_arguments(run_parser)
    run_parser.set_defaults(handler=_run)

    if "train" not in wanted and "evaluate" not in wanted:
        return parser
    try:
        from component.training import evaluate, train
    except ModuleNotFoundError as error:  # a lean install (no `train` extra): `run` still works
        missing = (
            f"needs the train extra ({error.name} is not installed): pip install -e '.[train]' "
            "(scripts/setup.sh --test installs it)"
        )
        for name in ("train", "evaluate"):
            # No options of its own (prefix "\0"): whatever follows is taken, then refused.
            stub = commands.add_parser(name, help=missing, prefix_chars="\0")
            stub.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
            stub.set_defaults(handler=_unavailable(f"{name} {missing}"))
        return parser

    train_parser = commands.add_parser("train", help="train the network")
    train.add_arguments(train_parser)
    train_parser.set_defaults(handler=train.run)
    evaluate_parser = commands.add_parser("evaluate", help="score the network on an L1C/L2A pair")
    evaluate.add_arguments(evaluate_parser)
    evaluate_parser.set_defaults(handler=evaluate.run)
    return parser


def _unavailable(message: str) -> Callable[[argparse.Namespace], int]:
    """The handler of a command whose extra is not installed: one line, exit 2."""

    def handler(args: argparse.Namespace) -> int:
        raise InvalidParameterError(message)

    return handler


DASH_VALUE_OPTIONS = ("--bbox",)
"""Options whose value may start with '-' (a western or southern bbox: ``-60,-30,-59,-29``)."""


def _attach_dash_values(arguments: list[str]) -> list[str]:
    """``--bbox -60,...`` -> ``--bbox=-60,...``: argparse would take the value for an option."""
    out: list[str] = []
    index = 0
    while index < len(arguments):
        current = arguments[index]
        following = arguments[index + 1] if index + 1 < len(arguments) else None
        if current in DASH_VALUE_OPTIONS and following and following.startswith("-"):
            out.append(f"{current}={following}")
            index += 2
            continue
        out.append(current)
        index += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _attach_dash_values(list(sys.argv[1:] if argv is None else argv))
    command = next((a for a in arguments if not a.startswith("-")), None)
    # A run validates its inputs before importing anything heavy, so a typo costs nothing.
    parser = build_parser(("run",) if command == "run" else COMMANDS)
    args = parser.parse_args(arguments)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("rasterio", "urllib3", "distributed", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except ComponentError as error:
        if error.summary is not None:  # a run that failed some items still reports them all
            print(json.dumps(error.summary, indent=2))
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def entry() -> NoReturn:
    """The command line's process: :func:`main`, then exit without tearing the libraries down.

    When :func:`main` returns, every output file is closed and renamed into place and the
    summary printed; what an ordinary interpreter exit still does is finalize the modules of
    GDAL, ONNX Runtime, LightGBM, scipy... (0.3 s of a run, measured from outside), which a
    process about to end does not need. Logs and the standard streams are flushed first.
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
