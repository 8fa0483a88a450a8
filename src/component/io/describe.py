"""The STAC 1.1 Item of an L2A product, in the forms CDSE's own L2A items use.

Asset keys carry the resolution (``B02_10m``, ``B05_20m``, ``TCI_60m``, ``AOT_60m``) as in
CDSE's ``sentinel-2-l2a`` collection, and so do the roles (``sampling:original`` or
``downsampled``, ``gsd:20m``). Bands live on different grids, so every raster asset states its
own projection (``proj:code``, ``proj:shape``, ``proj:transform``, ``proj:bbox``) and ``gsd``;
each states ``bands`` (with ``eo:common_name``, centre wavelength and width for reflectance),
``raster:scale`` / ``raster:offset``, ``nodata`` and ``data_type`` such that
``DN * scale + offset`` is the physical value, and a ``file:checksum`` (sha2-256 multihash)
with ``file:size``. AOT and WVP state Sen2Cor's quantification (scale 0.001, offset 0, WVP in
cm), which is how they are written: CDSE's items declare 0.0001 / -0.1 there, which does not
describe Sen2Cor's files. The scene classification ``SCL_<g>m`` declares its classes with the
classification extension (value, name, description, colour, ``nodata`` on 0) as CDSE's items
do, and ``CLD_<g>m`` the cloud probability in percent. ``eo:cloud_cover``, ``eo:snow_cover``
and ``statistics`` (each class's share) are computed on the product's own SCL, never copied
from the L1C (whose cover is the whole tile's, and made by another classifier). Hrefs are
relative, so the product folder can be moved or archived as a whole.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pystac
from rasterio.warp import transform_geom

from component import __version__
from component.core.bands import NATIVE_RESOLUTION
from component.core.files import multihash_sha256
from component.core.grid import Grid
from component.io.write import ATMOSPHERE_SCALE, CLOUD_NODATA, NODATA, OFFSET, SCALE, WrittenAsset
from component.model.scene_classification import stac_classes

SOFTWARE_NAME = "s2-l1c2l2a-component"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"
"""Declared when the product has an SCL asset (``classification:classes``), as CDSE does."""
OPTIONAL_EXTENSIONS = {
    "grid:": "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "sat:": "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
    "view:": "https://stac-extensions.github.io/view/v1.1.0/schema.json",
}
CARRIED_PROPERTIES = (
    "datetime",
    "start_datetime",
    "end_datetime",
    "platform",
    "constellation",
    "instruments",
    "eo:cloud_cover",
    "grid:code",
    "sat:relative_orbit",
    "sat:absolute_orbit",
    "sat:orbit_state",
    "view:sun_azimuth",
    "view:sun_elevation",
    "view:incidence_angle",
    "view:azimuth",
)
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

# Sentinel-2A/B MSI band centres and widths (micrometres), as CDSE's items state them.
BAND_INFO: dict[str, tuple[str, float, float]] = {
    "B01": ("coastal", 0.443, 0.027),
    "B02": ("blue", 0.493, 0.098),
    "B03": ("green", 0.56, 0.045),
    "B04": ("red", 0.665, 0.038),
    "B05": ("rededge071", 0.704, 0.019),
    "B06": ("rededge075", 0.74, 0.018),
    "B07": ("rededge078", 0.783, 0.028),
    "B08": ("nir", 0.842, 0.145),
    "B8A": ("nir08", 0.865, 0.033),
    "B09": ("nir09", 0.945, 0.026),
    "B11": ("swir16", 1.61, 0.143),
    "B12": ("swir22", 2.19, 0.242),
}


def output_id(input_id: str, model_name: str, model_version: str) -> str:
    """Deterministic: the same input and model version always give the same id."""
    return f"{input_id.replace('_MSIL1C_', '_MSIL2A_')}_{model_name}-{model_version}"


def _band_entry(band: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": band}
    if band in BAND_INFO:
        common, centre, width = BAND_INFO[band]
        entry |= {
            "eo:common_name": common,
            "eo:center_wavelength": centre,
            "eo:full_width_half_max": width,
        }
    return entry


def _projection(grid: Grid) -> dict[str, Any]:
    t = grid.transform
    return {
        "proj:code": f"EPSG:{grid.epsg}",
        "proj:shape": [grid.height, grid.width],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "proj:bbox": list(grid.bounds),
    }


ATMOSPHERE_BANDS = {
    "aot": ("AOT", "Aerosol optical thickness at 550 nm", None),
    "wvp": ("WVP", "Water vapour column", "cm"),
}


def _gsd(grid: Grid) -> int | float:
    value = float(grid.resolution)
    return int(value) if value.is_integer() else value


def _asset(written: WrittenAsset) -> pystac.Asset:
    """One asset with its own projection, raster fields and CDSE-style roles."""
    fields: dict[str, Any] = {
        "file:size": written.path.stat().st_size,
        # Computed by the writer as each file was finished (in its threads, while other
        # rasters were still being made); only a file written elsewhere is read again here.
        "file:checksum": written.checksum or multihash_sha256(written.path),
    }
    if written.kind == "thumbnail" or written.grid is None:
        return pystac.Asset(
            href=f"./{written.path.name}",
            media_type="image/png",
            roles=["thumbnail"],
            title="Thumbnail (true colour)",
            extra_fields=fields,
        )
    grid = written.grid
    gsd = _gsd(grid)
    fields |= _projection(grid)
    fields["gsd"] = gsd
    sampling = [f"sampling:{written.sampling}", f"gsd:{gsd}m"]
    if written.kind == "reflectance":
        fields["bands"] = [_band_entry(band) for band in written.bands]
        fields |= {
            "data_type": "uint16",
            "nodata": NODATA,
            "raster:scale": SCALE,
            "raster:offset": OFFSET,
            "raster:spatial_resolution": gsd,
        }
        title = f"{written.bands[0]} BOA reflectance ({gsd} m)"
        roles = ["data", "reflectance", *sampling]
        if written.method:
            from component.model.super_resolution import BANDS_20M, BANDS_60M, GUIDE_BANDS

            band = written.bands[0]
            native = NATIVE_RESOLUTION[band]
            title = f"{band} BOA reflectance sharpened to {gsd} m ({written.method})"
            fields["description"] = (
                f"{band} bottom-of-atmosphere reflectance sharpened from its native {native} m "
                f"to {gsd} m by the {written.method} super-resolution method, guided by the "
                f"{gsd} m bands {', '.join(GUIDE_BANDS)}"
                + (f" and the sharpened {', '.join(BANDS_20M)}" if band in BANDS_60M else "")
                + f"; each {native // gsd}x{native // gsd} block of pixels averages back to the "
                f"{band}_{native}m pixel it lies in."
            )
    elif written.kind in ATMOSPHERE_BANDS:
        name, description, unit = ATMOSPHERE_BANDS[written.kind]
        band: dict[str, Any] = {"name": name, "description": description}
        fields |= {
            "data_type": "uint16",
            "nodata": NODATA,
            # Sen2Cor's quantification (1000), which these files follow: value = DN / 1000.
            "raster:scale": ATMOSPHERE_SCALE,
            "raster:offset": 0.0,
            "raster:spatial_resolution": gsd,
        }
        if unit:
            band["unit"] = unit
            fields["unit"] = unit
        fields["bands"] = [band]
        title = f"{description} ({gsd} m)"
        roles = ["data", *sampling]
    elif written.kind == "scl":
        fields |= {
            "data_type": "uint8",
            "nodata": NODATA,
            "raster:spatial_resolution": gsd,
            "bands": [{"name": "SCL", "description": "Scene classification (Sen2Cor classes)"}],
            "classification:classes": stac_classes(),
        }
        title = f"Scene classification map (SCL, {gsd} m)"
        roles = ["data", *sampling]
    elif written.kind == "cld":
        fields |= {
            "data_type": "uint8",
            "nodata": CLOUD_NODATA,
            "unit": "%",
            "raster:spatial_resolution": gsd,
            "bands": [{"name": "CLD", "description": "Cloud probability", "unit": "%"}],
        }
        title = f"Cloud probability (CLD, {gsd} m)"
        roles = ["data", *sampling]
    else:
        fields["bands"] = [_band_entry(band) for band in written.bands]
        fields |= {"data_type": "uint8", "nodata": 0, "raster:spatial_resolution": gsd}
        title = f"True colour image ({gsd} m)"
        roles = ["visual", *sampling]
    return pystac.Asset(
        href=f"./{written.path.name}",
        media_type=COG_MEDIA_TYPE,
        roles=roles,
        title=title,
        extra_fields=fields,
    )


def footprint(grid: Grid) -> dict[str, Any]:
    """The grid's outline in WGS84, densified so UTM curvature is kept."""
    left, bottom, right, top = grid.bounds
    steps = 8
    ring = (
        [(left + (right - left) * i / steps, bottom) for i in range(steps)]
        + [(right, bottom + (top - bottom) * i / steps) for i in range(steps)]
        + [(right - (right - left) * i / steps, top) for i in range(steps)]
        + [(left, top - (top - bottom) * i / steps) for i in range(steps)]
    )
    ring.append(ring[0])
    geometry = {"type": "Polygon", "coordinates": [ring]}
    return transform_geom(f"EPSG:{grid.epsg}", "EPSG:4326", geometry, precision=7)


def _bbox_of(geometry: dict[str, Any]) -> list[float]:
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _datetime(value: str | None) -> datetime | None:
    return pystac.utils.str_to_datetime(value) if value else None


def lineage(
    *,
    l1c_id: str,
    model_name: str,
    model_version: str,
    model_files: dict[str, str],
    runtime: str,
    resolution: int,
    coarse_m: int,
    geometry_source: str | None,
    notes: list[str],
    scene_m: int | None = None,
    cirrus_correction: bool = False,
    elevation: str | None = None,
    meteorology: str | None = None,
    super_resolution: str | None = None,
) -> str:
    """``processing:lineage``: what was done, with what, and every fallback taken."""
    files = "; ".join(f"{name} sha256 {digest}" for name, digest in model_files.items())
    text = (
        f"Bottom-of-atmosphere reflectance, aerosol optical thickness and water vapour from "
        f"Sentinel-2 L1C product {l1c_id} by the {model_name} {model_version} model "
        f"({runtime}{'; ' + files if files else ''}): the atmosphere estimated on a "
        f"{coarse_m} m grid from the 13 L1C bands, then each band inverted on its own grid at "
        f"max({resolution} m, its native resolution), on the L1C's own grid. Geometry: "
        f"{geometry_source or 'unknown'}."
    )
    if scene_m is not None:
        text += (
            f" Scene classification on a {scene_m} m grid from TOA reflectance, with Sen2Cor's "
            "rules and s2cloudless cloud probabilities; clouds, their shadows, thin cirrus and "
            "snow kept out of the atmosphere estimate."
        )
    if elevation is not None:
        text += (
            f" The air above each cell follows the terrain's elevation, {elevation}; no terrain"
            " illumination (slope, aspect) correction."
        )
    if meteorology is not None:
        text += (
            f" Meteorology: {meteorology}; its ozone and sea-level pressure enter the physics,"
            " its water vapour sets the level of the scene's estimate (physics and WVP; the"
            " estimate's detail within the forecast's 14 km kept), its aerosol forecast (if"
            " any) bounds the guard against an excessive aerosol estimate."
        )
    if cirrus_correction:
        text += (
            " Thin cirrus taken out of every band: its reflectance (B10's excess over the "
            "clear sky) and its two-way dimming."
        )
    else:
        text += (
            " Thin cirrus not subtracted (Sen2Cor's default): flagged in SCL, class 10, and "
            "kept out of the atmosphere estimate."
        )
    if super_resolution is not None:
        from component.model.super_resolution import BANDS_60M, GUIDE_BANDS, SHARPENED_BANDS

        text += (
            f" Bands {', '.join(SHARPENED_BANDS)} also sharpened onto the 10 m grid "
            f"(<band>_10m) by the {super_resolution} super-resolution method, guided by "
            f"{', '.join(GUIDE_BANDS)} (and, for {' and '.join(BANDS_60M)}, the sharpened 20 m "
            "bands), then adjusted so that every 10 m block averages back to the native pixel."
        )
    if notes:
        text += " Fallbacks: " + "; ".join(notes) + "."
    return text


def describe(
    *,
    l1c: dict[str, Any],
    l1c_href: str | None,
    item_id: str,
    footprint_grid: Grid,
    assets: list[WrittenAsset],
    model_name: str,
    model_version: str,
    lineage_text: str,
    clipped: bool,
    view: dict[str, float] | None = None,
    scene: dict[str, Any] | None = None,
) -> pystac.Item:
    """The L2A Item; *clipped* says whether the grids are a bbox window of the tile.

    *view* holds the scene means of the geometry the correction used (``view:*``); without it
    the L1C's own ``view:*`` properties are carried, if any. *scene* holds the properties
    computed on the product's SCL (``statistics``, ``eo:cloud_cover``, ``eo:snow_cover``);
    with it the L1C's ``eo:cloud_cover`` is not carried, even where the SCL has no data.
    """
    geometry = footprint(footprint_grid) if clipped or not l1c.get("geometry") else l1c["geometry"]
    source = l1c.get("properties", {})
    properties = {key: source[key] for key in CARRIED_PROPERTIES if key in source}
    properties |= view or {}
    if scene is not None:
        properties.pop("eo:cloud_cover", None)
        properties |= scene
    properties |= {
        "processing:level": "L2",
        "processing:version": __version__,
        "processing:datetime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "processing:software": {SOFTWARE_NAME: __version__, model_name: model_version},
        "processing:lineage": lineage_text,
    }
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=_bbox_of(geometry),
        datetime=_datetime(properties.pop("datetime", None)),
        properties=properties,
        stac_extensions=[
            *EXTENSIONS,
            *(
                url
                for prefix, url in OPTIONAL_EXTENSIONS.items()
                if any(key.startswith(prefix) for key in properties)
            ),
            *([CLASSIFICATION_EXTENSION] if any(a.kind == "scl" for a in assets) else []),
        ],
    )
    for written in assets:
        item.add_asset(written.key, _asset(written))
    if l1c_href:
        from component.io import safe_product

        # A SAFE product (folder or .zip) is named as itself, not as an item document.
        is_safe = safe_product.is_safe_source(l1c_href)
        item.add_link(
            pystac.Link(
                rel="derived_from",
                target=l1c_href,
                media_type=safe_product.media_type(l1c_href) if is_safe else "application/geo+json",
                title=f"Sentinel-2 L1C input {l1c.get('id')}",
            )
        )
    return item
