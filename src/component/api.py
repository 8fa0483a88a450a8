"""The Python API: ``load_l1c`` (an L1C item -> lazy TOA reflectance) and ``correct`` (TOA ->
lazy BOA reflectance, AOT and WVP), xarray in and xarray out, no files written.

Both are lazy (dask): nothing is read or computed until ``.compute()``/``.values``. They run the
command line's own steps, so the values are the CLI product's (to one DN):

* :func:`load_l1c` lays out the CLI's ``--resolution`` grid (the tile's own UTM grid, a bbox
  snapped outward onto it) and reads each band with the CLI's reader (JPEG 2000
  reduced-resolution levels for coarser grids, nodata-aware averaging), in the CLI's strips;
  DN become TOA reflectance with the baseline's offset, nodata and saturated pixels NaN.
* :func:`correct` needs two things of the whole scene before any pixel can be corrected, as
  the CLI does: the 13 bands averaged onto the atmosphere's coarse grid (the card's, 120 m)
  and the scene classification (on the SCL grid) whose clouds, shadows and snow are kept out
  of the estimate. Both are dask reductions of the input; one task then classifies and
  estimates the atmosphere; every band is then inverted block by block (per pixel, so blocks
  are independent) with the same :class:`~component.model.correction.SceneCorrector`.

The input of :func:`correct` may be any xarray of TOA reflectance with a ``band`` coordinate
(stackstac, odc-stac, an EOPF reader, or :func:`load_l1c`) on a regular north-up grid with a
CRS; a ``time`` dimension of length one is dropped. Without the item (which
:func:`load_l1c` attaches) the sun/view geometry is read from stackstac-style ``view:*``
coordinates when present, else default angles are assumed.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from component.core.bands import L2A_BANDS
from component.core.blocks import block_mean
from component.core.grid import Grid, snapped
from component.core.settings import Settings
from component.errors import InvalidItemError, InvalidParameterError

if TYPE_CHECKING:
    import xarray as xr

    from component.model.correction import AtmosphereState, SceneCorrector

ITEM_ATTR = "stac_item"
"""Attribute of :func:`load_l1c`'s array holding its item (JSON text): geometry and tile origin."""
COMMON_NAMES = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge": "B05",
    "rededge071": "B05",
    "rededge075": "B06",
    "rededge078": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
}
_BAND_NAME = re.compile(r"^B(0?[1-9]|1[0-2]|8A)(_\d+M)?$")


def _item_dict(item: Any, settings: Settings) -> tuple[dict[str, Any], str | None]:
    """An item as a dict with absolute hrefs, and where it came from, from a dict, a pystac
    Item or a path/URL."""
    from component.io import search, trust, zarr_product

    if isinstance(item, (str, Path)):
        zarr_product.install_stac_io(settings)
        found = search.read_item(str(item))
        return found.data, found.href
    href = None
    if hasattr(item, "to_dict") and hasattr(item, "make_asset_hrefs_absolute"):
        clone = item.clone()
        href = clone.get_self_href()
        if href:
            clone.make_asset_hrefs_absolute()
        item = clone.to_dict(include_self_link=False, transform_hrefs=False)
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise InvalidItemError("load_l1c: give a STAC Item (dict, pystac.Item, path or URL)")
    trust.check_item(item, href, settings.local_href_roots)  # remote: remote data only
    return search.require_l1c(zarr_product.expand(item, settings, href)), href


def band_name(name: Any) -> str:
    """``B02``, ``b02``, ``B02_10m`` or ``blue`` -> ``B02``."""
    text = str(name).strip()
    if text.lower() in COMMON_NAMES:
        return COMMON_NAMES[text.lower()]
    match = _BAND_NAME.match(text.upper())
    if not match:
        raise InvalidParameterError(f"unknown band {name!r}: use B01..B12, B8A or common names")
    number = match[1]
    return f"B{number.zfill(2)}" if number != "8A" else "B8A"


def load_l1c(
    item: Any,
    bands: Sequence[str] | None = None,
    resolution: int = 60,
    bbox: Sequence[float] | None = None,
) -> xr.DataArray:
    """Lazy TOA reflectance ``(band, y, x)`` of an L1C item on the CLI's grid.

    *item*: a STAC Item (dict, ``pystac.Item``, path or URL) of a SAFE product, or an EOPF
    Zarr product (a ``.zarr`` path/URL, or an item whose ``product`` asset is one). *bands*:
    default every L1C band the item has (13, or 12 without B10). *resolution*: 10, 20 or 60:
    every band on that grid (the CLI writes a band at ``max(resolution, native)``; at 60 m the
    two are the same). *bbox*: ``(W, S, E, N)`` in degrees: only that window, snapped outward.
    NaN marks nodata and saturated pixels. The CRS is set with rioxarray; the item is kept
    in ``attrs["stac_item"]`` for :func:`correct`.
    """
    import dask
    import dask.array as da
    import xarray as xr

    from component.engine.decode import read_toa
    from component.io import l1c, load
    from component.params import parse_bbox, parse_resolution

    settings = Settings.from_environ()
    data, href = _item_dict(item, settings)
    product = l1c.from_item(data, href)
    res = parse_resolution(str(resolution))
    window = None
    if bbox is not None:
        window = parse_bbox(",".join(str(float(v)) for v in bbox))
    wanted = tuple(band_name(b) for b in bands) if bands is not None else product.inputs
    l1c.require_bands(data, wanted)
    load.check_credentials(product, wanted, settings)
    grid = load.output_grid(product, "B02", res, window)
    stacked = []
    for band in wanted:
        strips = [
            da.from_delayed(
                dask.delayed(read_toa, pure=True)(
                    product, band, grid, y0, min(grid.height, y0 + load.STRIP_ROWS), settings
                ),
                shape=(min(grid.height, y0 + load.STRIP_ROWS) - y0, grid.width),
                dtype=np.float32,
            )
            for y0 in range(0, grid.height, load.STRIP_ROWS)
        ]
        stacked.append(da.concatenate(strips, axis=0))
    t = grid.transform
    array = xr.DataArray(
        da.stack(stacked),
        dims=("band", "y", "x"),
        coords={
            "band": list(wanted),
            "x": t.c + (np.arange(grid.width) + 0.5) * t.a,
            "y": t.f + (np.arange(grid.height) + 0.5) * t.e,
        },
        name="toa_reflectance",
        attrs={ITEM_ATTR: json.dumps(data), "long_name": "L1C TOA reflectance"},
    )
    return _with_crs(array, grid.epsg)


def _with_crs(obj: Any, epsg: int) -> Any:
    import rioxarray  # noqa: F401 (registers the .rio accessor)

    return obj.rio.write_crs(f"EPSG:{epsg}")


# --- correct -----------------------------------------------------------------------------

_META = np.empty((0, 0), np.float32)
"""Given to dask, so it never calls a block function to guess the output (which would build
the model when the graph is only being made)."""
_correctors: dict[tuple[Any, ...], SceneCorrector] = {}
_lock = threading.Lock()


Model = tuple[str | None, str, str, bool]
"""What builds a corrector: weights, device, engine, cirrus correction."""


def _corrector(
    weights: str | None, device: str, engine: str, cirrus_correction: bool = False
) -> SceneCorrector:
    """The CLI's corrector, built once per process (blocks run in threads or on workers)."""
    from component.model.card import load_card, models_dir
    from component.model.engines import build_scene_corrector

    key = (weights, device, engine, cirrus_correction, str(models_dir()))
    with _lock:
        if key not in _correctors:
            path = Path(weights) if weights else None
            threads = Settings.from_environ().engine_threads
            card = load_card()
            corrector, _ = build_scene_corrector(
                card, path, device, engine, threads, cirrus_correction
            )
            _correctors[key] = corrector
        return _correctors[key]


def _normalized(l1c: Any) -> xr.DataArray:
    """Any TOA xarray -> a float32 dask DataArray ``(band, y, x)`` with L1C band names."""
    import dask.array as da
    import xarray as xr

    if isinstance(l1c, xr.Dataset):
        l1c = l1c.to_dataarray("band") if hasattr(l1c, "to_dataarray") else l1c.to_array("band")
    if not isinstance(l1c, xr.DataArray):
        raise InvalidParameterError("correct: give an xarray DataArray or Dataset of TOA")
    # odc-stac names a geographic grid's dimensions latitude/longitude.
    renamed = {a: b for a, b in (("latitude", "y"), ("longitude", "x")) if a in l1c.dims}
    if renamed:
        l1c = l1c.rename(renamed)
    if "time" in l1c.dims:
        if l1c.sizes["time"] != 1:
            raise InvalidParameterError(
                f"correct: {l1c.sizes['time']} times given: correct one scene at a time "
                "(select it with .isel(time=i))"
            )
        l1c = l1c.isel(time=0)
    missing = {"band", "y", "x"} - set(l1c.dims)
    if missing or l1c.ndim != 3:
        raise InvalidParameterError(
            f"correct: dimensions {l1c.dims} lack {sorted(missing)}: give (band, y, x)"
        )
    if not np.issubdtype(l1c.dtype, np.floating):
        raise InvalidParameterError(
            "correct: integer values are DN, not reflectance: load with component.load_l1c, or "
            "scale them to TOA reflectance first (DN / 10000, minus 0.1 from baseline 04.00)"
        )
    l1c = l1c.transpose("band", "y", "x")
    names = [band_name(b) for b in l1c["band"].values]
    l1c = l1c.assign_coords(band=names)
    data = l1c.data if isinstance(l1c.data, da.Array) else da.from_array(l1c.data)
    return l1c.copy(data=data.astype(np.float32))


def _grid_of(array: xr.DataArray, epsg: int) -> Grid:
    """The north-up grid of *array* from its pixel-centre coordinates."""
    from affine import Affine

    x, y = array["x"].values.astype(float), array["y"].values.astype(float)
    if len(x) < 2 or len(y) < 2:
        raise InvalidParameterError("correct: the array needs at least 2 x 2 pixels")
    dx, dy = x[1] - x[0], y[1] - y[0]
    regular = np.allclose(np.diff(x), dx, rtol=1e-6) and np.allclose(np.diff(y), dy, rtol=1e-6)
    if not regular or dx <= 0 or dy >= 0 or not math.isclose(dx, -dy, rel_tol=1e-6):
        raise InvalidParameterError(
            "correct: x/y must be a regular north-up grid of square pixels (x up, y down)"
        )
    transform = Affine(dx, 0.0, x[0] - dx / 2, 0.0, dy, y[0] - dy / 2)
    return Grid(epsg=epsg, transform=transform, width=len(x), height=len(y))


def _epsg_of(array: xr.DataArray) -> int:
    import rioxarray  # noqa: F401

    crs = None
    try:
        crs = array.rio.crs
    except Exception:  # any malformed CRS is the same as none
        crs = None
    if crs is None and "epsg" in array.coords:
        return int(np.asarray(array["epsg"].values).ravel()[0])
    epsg = crs.to_epsg() if crs is not None else None
    if epsg is None:
        raise InvalidParameterError(
            "correct: the array has no EPSG CRS: set one with .rio.write_crs('EPSG:...')"
        )
    if crs.is_geographic:
        # The atmosphere's grid, the scene grid and every smoothing scale are in metres.
        raise InvalidParameterError(
            f"correct: the array is in a geographic CRS (EPSG:{epsg}), whose cells are degrees:"
            " load it on its UTM grid (e.g. odc.stac.load(..., crs='utm')) or reproject it "
            "with .rio.reproject('EPSG:326zz')"
        )
    return int(epsg)


def _aligned_chunks(grid: Grid, coarse: Grid, rows: int) -> tuple[int, ...]:
    """Row chunks whose inner boundaries fall on the coarse grid's row boundaries, so each
    chunk's coarse (and scene) pixels are whole: their means need no other chunk."""
    k = round(coarse.resolution / grid.resolution)
    offset = round((coarse.transform.f - grid.transform.f) / grid.resolution)
    step = max(k, rows // k * k)
    first = (k - offset) % k or k
    first += (step - first) // k * k
    chunks, start = [], 0
    size = first
    while start < grid.height:
        size = min(size, grid.height - start)
        chunks.append(size)
        start += size
        size = step
    return tuple(chunks)


def _means_of(band: Any, grid: Grid, target: Grid, chunks: tuple[int, ...]) -> Any:
    """A band's dask means on *target* (a coarser grid of the same anchoring)."""
    import dask.array as da

    k = round(target.resolution / grid.resolution)
    row0 = round((target.transform.f - grid.transform.f) / grid.resolution)
    col0 = round((grid.transform.c - target.transform.c) / grid.resolution)
    if k == 1:
        return band
    out_rows, start = [], 0
    for size in chunks:
        first = (row0 + start) // k
        last = -(-(row0 + start + size) // k)
        out_rows.append(last - first)
        start += size

    def block(values: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        y0 = block_info[0]["array-location"][0][0] if block_info else 0
        return block_mean(values, k, (row0 + y0) % k, col0)

    return da.map_blocks(
        block, band, chunks=(tuple(out_rows), (target.width,)), dtype=np.float32, meta=_META
    )


def _estimate(
    coarse_toa: np.ndarray,
    scene_toa: np.ndarray,
    bands: tuple[str, ...],
    coarse: Grid,
    scene: Grid,
    item_text: str | None,
    coords: dict[str, Any],
    model: Model,
    dem: str | None = None,
    elevation_source: str = "auto",
) -> AtmosphereState:
    """The whole-scene step, as the CLI's: classification (clouds out), then the atmosphere
    for the air above the terrain (one task)."""
    from component.engine.decode import scene_stack
    from component.engine.scene import classify_scene, estimate_atmosphere
    from component.io import elevation, geometry, l1c, meteorology

    settings = Settings.from_environ()
    corrector = _corrector(*model)
    forecast = None
    if item_text:
        product = l1c.from_item(json.loads(item_text))
        angles = geometry.resolve(product, coarse, settings)[0]
        forecast = meteorology.resolve(product, coarse, settings)[0]
    else:
        angles = geometry.from_properties(coords)
    stack = scene_stack({b: scene_toa[i] for i, b in enumerate(bands)}, scene.shape)
    classified = classify_scene(
        stack, scene, coarse, angles, "B10" in bands, settings.engine_threads
    )
    del stack
    means = {b: coarse_toa[i] for i, b in enumerate(bands)}
    heights, _ = elevation.resolve(dem, coarse, settings, elevation_source)
    return estimate_atmosphere(corrector, means, coarse, angles, classified, heights, forecast)


def _output_block(
    toa: np.ndarray,
    state: AtmosphereState,
    name: str,
    grid: Grid,
    model: Model,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """A dask block of the output variable *name*: an L2A band's BOA reflectance from its TOA
    block, or the ``aot``/``water`` field of *state*, NaN where *toa* is."""
    from component.engine.correct import correct_window, field_window

    y0 = block_info[0]["array-location"][0][0] if block_info else 0
    if name in L2A_BANDS:
        return correct_window(_corrector(*model), state, name, grid, y0, toa)
    return field_window(state, name, grid, y0, ~np.isfinite(toa), quantize=False)


def correct(
    l1c: Any,
    *,
    weights: str | None = None,
    device: str = "auto",
    engine: str = "auto",
    cirrus_correction: bool = False,
    dem: str | None = None,
    elevation: str = "auto",
) -> xr.Dataset:
    """Lazy L2A of *l1c*: BOA reflectance of each L2A band it has, plus ``AOT`` (550 nm) and
    ``WVP`` (cm), on *l1c*'s grid, with its coordinates and CRS.

    Nothing is computed until the result (or a variable of it) is: then the scene's coarse
    means and classification are reduced from the input, the atmosphere is estimated once,
    and the bands are inverted block by block, as ``python -m component run`` does.
    *weights*, *device*, *engine*, *cirrus_correction*, *dem*, *elevation*: as the CLI's
    ``--weights``, ``--device``, ``--engine``, ``--cirrus-correction``, ``--dem``,
    ``--elevation``.
    """
    import dask
    import dask.array as da
    import xarray as xr

    from component.io.load import STRIP_ROWS
    from component.model.card import load_card

    if device not in ("auto", "cpu", "cuda") or engine not in ("auto", "torch", "onnx"):
        raise InvalidParameterError("correct: device is auto|cpu|cuda, engine auto|torch|onnx")
    from component.params import check_elevation, parse_elevation

    elevation = parse_elevation(elevation)
    check_elevation(elevation, dem, Settings.from_environ())
    model: Model = (str(weights) if weights else None, device, engine, bool(cirrus_correction))
    array = _normalized(l1c)
    epsg = _epsg_of(array)
    grid = _grid_of(array, epsg)
    item_text = array.attrs.get(ITEM_ATTR) or getattr(l1c, "attrs", {}).get(ITEM_ATTR)
    item = json.loads(item_text) if item_text else None
    origin = (grid.transform.c, grid.transform.f)
    if item is not None and "B02" in item.get("assets", {}):
        from component.io import l1c

        origin = l1c.from_item(item).origin  # the tile's: the CLI's coarse and scene grids
    card = load_card()
    coarse = snapped(grid.bounds, float(card.atmosphere_grid_m), origin, epsg)
    scene = snapped(grid.bounds, max(grid.resolution, 20.0), origin, epsg)
    bands = tuple(str(b) for b in array["band"].values)
    chunks = _aligned_chunks(grid, coarse, STRIP_ROWS)
    data = array.data.rechunk({0: 1, 1: chunks, 2: -1})
    coarse_toa = da.stack([_means_of(data[i], grid, coarse, chunks) for i in range(len(bands))])
    scene_toa = da.stack([_means_of(data[i], grid, scene, chunks) for i in range(len(bands))])
    coords = {
        str(k): np.asarray(v.values).ravel()[0].item()
        for k, v in array.coords.items()
        if str(k).startswith("view:") and np.asarray(v.values).size >= 1
    }
    state = dask.delayed(_estimate, pure=True)(
        coarse_toa, scene_toa, bands, coarse, scene, item_text, coords, model, dem, elevation
    )
    variables: dict[str, Any] = {}
    for band in L2A_BANDS:
        if band not in bands:
            continue
        boa = da.map_blocks(
            _output_block, data[bands.index(band)], state, band, grid, model, meta=_META
        )
        variables[band] = (("y", "x"), boa, {"long_name": f"{band} BOA reflectance"})
    reference = data[bands.index("B02") if "B02" in bands else 0]
    for key, name, long_name, unit in (
        ("AOT", "aot", "aerosol optical thickness at 550 nm", "1"),
        ("WVP", "water", "water vapour column", "cm"),
    ):
        values = da.map_blocks(_output_block, reference, state, name, grid, model, meta=_META)
        variables[key] = (("y", "x"), values, {"long_name": long_name, "units": unit})
    if not any(band in bands for band in L2A_BANDS):
        raise InvalidParameterError("correct: the array holds no L2A band (B01..B12 but B10)")
    coords_out = {"x": array["x"], "y": array["y"]}
    dataset = xr.Dataset(variables, coords=coords_out, attrs={"processing:level": "L2"})
    if item is not None:
        dataset.attrs["derived_from"] = str(item.get("id"))
    return _with_crs(dataset, epsg)


def super_resolve(bands: Mapping[str, Any], *, rows: int = 600) -> xr.Dataset:
    """Lazy: all twelve L2A bands on the 10 m grid, from *bands* (band name -> 2-D DataArray or
    array of surface reflectance, NaN where invalid) on their native grids aligned as in the
    product (one top-left corner; 10 m, 20 m and 60 m pixels): the four 10 m bands as given,
    the eight others sharpened with the shipped method and made consistent with their native
    pixels, by the kernel ``--super-resolve`` runs (:func:`component.engine.sharpen.
    sharpen_strip`: the six 20 m bands come back quantized to the product's DN step, 1e-4),
    strip by strip (*rows* rows at 10 m, a multiple of 6, and the product's halo).
    Coordinates and CRS are those of ``B02``. A missing band or a grid that does not fit the
    10 m one is a one-line :class:`~component.errors.InvalidParameterError`.
    """
    import dask
    import dask.array as da
    import xarray as xr

    from component.engine.sharpen import HALO
    from component.model.super_resolution import (
        BANDS_20M,
        BANDS_60M,
        FACTORS,
        GUIDE_BANDS,
        load_super_resolver,
    )

    missing = [b for b in (*GUIDE_BANDS, *BANDS_20M, *BANDS_60M) if b not in bands]
    if missing:
        raise InvalidParameterError(f"super_resolve: bands {', '.join(missing)} are missing")
    if rows <= 0 or rows % 6:
        raise InvalidParameterError("super_resolve: rows must be a positive multiple of 6")
    reference = bands["B02"]
    height, width = (int(n) for n in np.shape(reference)[-2:])
    arrays = {}
    for band in (*GUIDE_BANDS, *BANDS_20M, *BANDS_60M):
        factor = FACTORS.get(band, 1)
        expected = (-(-height // factor), -(-width // factor))
        value = bands[band]
        data = value.data if isinstance(value, xr.DataArray) else value
        data = da.asarray(data).squeeze()
        if tuple(data.shape) != expected:
            raise InvalidParameterError(
                f"super_resolve: {band} is {tuple(data.shape)} pixels, not {expected}: give "
                "each band on its native grid, with B02's top-left corner"
            )
        arrays[band] = data.astype(np.float32)
    resolver = load_super_resolver(threads=1)  # dask runs strips in parallel, one core each
    strips = []
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        window = (max(0, start - HALO), min(-(-height // 6) * 6, stop + HALO))
        inputs = {
            band: _padded_rows(arrays[band], FACTORS.get(band, 1), window, height, width)
            for band in arrays
        }
        strip = dask.delayed(_sharpened_strip)(
            inputs, resolver, start - window[0], stop - window[0], width
        )
        strips.append(da.from_delayed(strip, (8, stop - start, width), dtype=np.float32))
    sharp = da.concatenate(strips, axis=1)
    names = (*BANDS_20M, *BANDS_60M)
    variables = {band: arrays[band] for band in GUIDE_BANDS}
    variables |= {band: sharp[i] for i, band in enumerate(names)}
    ordered = {
        band: (("y", "x"), variables[band], {"long_name": f"{band} BOA reflectance at 10 m"})
        for band in L2A_BANDS
    }
    coords = {}
    if isinstance(reference, xr.DataArray):
        coords = {k: reference[k] for k in ("x", "y") if k in reference.coords}
    dataset = xr.Dataset(ordered, coords=coords, attrs={"super_resolution": resolver.name})
    if isinstance(reference, xr.DataArray) and reference.rio.crs is not None:
        dataset = dataset.rio.write_crs(reference.rio.crs)
    return dataset


def _padded_rows(data: Any, factor: int, window: tuple[int, int], height: int, width: int) -> Any:
    """The rows of *data* (a band at *factor* times 10 m) under the 10 m rows *window*, and
    every column, with the edge pixels repeated where the 60 m lattice reaches past the band
    (as the product's jobs do)."""
    lattice_width = -(-width // 6) * 6  # whole 60 m pixels; the window's rows are too
    rows = np.clip(np.arange(window[0] // factor, window[1] // factor), 0, data.shape[0] - 1)
    columns = np.clip(np.arange(lattice_width // factor), 0, data.shape[1] - 1)
    return data[rows][:, columns]


def _sharpened_strip(
    inputs: dict[str, np.ndarray], resolver: Any, top: int, bottom: int, width: int
) -> np.ndarray:
    """(8, bottom - top, width): one strip's *inputs* sharpened by the product's kernel."""
    from component.engine.sharpen import band_sets, sharpen_strip

    guide, twenty, sixty = (
        np.stack([np.asarray(inputs[b], np.float32) for b in group]) for group in band_sets()
    )
    return sharpen_strip(resolver, guide, twenty, sixty)[:, top:bottom, :width]
