"""Sentinel-2 L1C SAFE products as input, read in place: a ``.SAFE`` folder or its ``.zip``.

A user holding a downloaded product (the ``.zip`` the Copernicus Browser and CDSE's OData API
deliver, or the ``.SAFE`` folder inside it), or naming one on CDSE's storage (``/eodata/...
/X.SAFE`` on a CDSE machine, ``s3://eodata/.../X.SAFE``), gives it to ``--item`` as it is.
:func:`item_from_safe` reads the product's two small metadata files and builds the item a
CDSE STAC API serves for it, which :func:`component.io.l1c.from_item` then reads as any other:

- ``MTD_MSIL1C.xml``: the product id (``PRODUCT_URI`` without ``.SAFE``), sensing start,
  ``PROCESSING_BASELINE``, the ``RADIO_ADD_OFFSET`` list (which must agree with the baseline's
  rule that the radiometry follows, :func:`component.io.l1c.radiometry`: -1000 DN from 04.00,
  none before), spacecraft, relative orbit, cloud cover, footprint and the granule's
  ``IMAGE_FILE`` list;
- the granule's ``MTD_TL.xml``: the CRS (``HORIZONTAL_CS_CODE``), each resolution's grid
  (``Geoposition`` ULX/ULY/XDIM/YDIM, ``Size`` NROWS/NCOLS) and the scene-mean angles. It is
  the item's ``granule_metadata`` asset, whose angle grids the geometry reads
  (:mod:`component.io.geometry`); ``AUX_DATA/AUX_ECMWFT`` beside it is the ``aux_ecmwft`` asset.

Nothing is extracted or copied. The item's hrefs are what GDAL opens: absolute paths in a
folder, ``/vsizip/`` paths into a zip (``/vsizip//abs/X.zip/X.SAFE/GRANULE/...``), and the
``s3://``/``https://`` URLs of a remote folder, as CDSE's own items carry them (rasterio reads
those through ``/vsis3/`` and ``/vsicurl/`` with :func:`component.io.load.gdal`'s settings and
keys, which are asked for up front, as for any ``s3://`` item). The metadata files are read by
:func:`component.io.geometry.read_text` (local files; S3 signed as GDAL signs it; HTTP) and,
inside a zip, through GDAL's virtual file systems (:mod:`component.io.vsi`, Linux), so a zip's
metadata and its bands are read by the same code, a zip on S3 or HTTP too (GDAL reads the
ranges it needs: the zip's directory, then each member).

A STAC item whose only data is the product itself, CDSE's ``Product`` asset (the OData zip)
in a catalog of downloaded products, is read the same way (:func:`product_asset`,
:func:`item_from_product`, dispatched where :func:`component.io.zarr_product.expand` expands an
item whose ``product`` is a Zarr): its zip or ``.SAFE`` is read in place, the item keeping its
own id. An href GDAL cannot read in place (an OData ``$value`` URL redirects and needs a
bearer token) is refused, asking for the zip to be downloaded.

Only the compact naming is read (products since December 2016, and every reprocessed one):
one granule, ``MTD_MSIL1C.xml`` and ``MTD_TL.xml``.

Why not ``stactools-sentinel2`` (0.8.0, checked from its PyPI wheel): it reads L1C and gives
baselines before 04.00 no offset, but it needs ``manifest.safe``, reads through fsspec (no zip
in place, S3 only with s3fs), pulls stactools, lxml, shapely and antimeridian, and names the
bands ``coastal``, ``blue``, ... where this component reads CDSE's ``B01``, ``B02``, ...:
translating its item would cost more than reading the two files here.
"""

from __future__ import annotations

import copy
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.settings import Settings
from component.errors import AssetReadError, CredentialsError, InvalidItemError
from component.io import vsi
from component.io.l1c import AUX_ECMWF, GRANULE_METADATA, QUANTIFICATION_VALUE, radiometry

SAFE_SUFFIX = ".SAFE"
ZIP_SUFFIX = ".zip"
PRODUCT_METADATA = "MTD_MSIL1C.xml"
TILE_METADATA = "MTD_TL.xml"
AUX_FILE = "AUX_DATA/AUX_ECMWFT"
SAFE_MEDIA_TYPE = "application/x-safe"
"""No media type is registered for a SAFE folder: a private (``x-``) one says what it is."""
ZIP_MEDIA_TYPE = "application/zip"
PRODUCT_ASSETS = ("Product", "product")
"""Keys of an item's asset holding the whole product: CDSE's items call the OData zip
``Product``; EOPF items call their Zarr ``product`` (:mod:`component.io.zarr_product`)."""
_PRODUCT_MEDIA_TYPES = (ZIP_MEDIA_TYPE, "application/x-zip-compressed", SAFE_MEDIA_TYPE)
STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.1.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/product/v1.0.0/schema.json",
]
VIEW_EXTENSION = "https://stac-extensions.github.io/view/v1.1.0/schema.json"
_TILE_IN_NAME = re.compile(r"_T(\d{2}[A-Z]{3})_")
_BASELINE = re.compile(r"\d{2}\.\d{2}")
_REMOTE = ("s3", "http", "https")


def is_safe_source(source: str) -> bool:
    """Whether *source* names a SAFE product rather than an item document.

    True for a path or ``s3://``/``https://`` URL ending in ``.SAFE`` (or ``.SAFE/``), for a
    local folder holding ``MTD_MSIL1C.xml``, and for any ``.zip``: a zip is never an item
    document, so one that holds no SAFE product is said so (:func:`item_from_safe`) rather
    than failing as unreadable JSON.
    """
    text = str(source).strip().rstrip("/")
    lowered = text.lower()
    if lowered.endswith(SAFE_SUFFIX.lower()) or lowered.endswith(ZIP_SUFFIX):
        return True
    if "://" in text or text.startswith("/vsi"):
        return False
    try:
        path = Path(text)
        return path.is_dir() and (path / PRODUCT_METADATA).is_file()
    except OSError:  # a name too long, a path we may not look into: not ours to judge
        return False


def media_type(source: str) -> str:
    """The media type of the SAFE product at *source*: a zip, or a SAFE folder."""
    return ZIP_MEDIA_TYPE if str(source).strip().lower().endswith(ZIP_SUFFIX) else SAFE_MEDIA_TYPE


@dataclass(frozen=True)
class SafeLocation:
    """Where one SAFE product's files are: *root* is its folder as GDAL names it (an absolute
    path, an ``s3://``/``https://`` URL, or a ``/vsizip/`` path into *archive*)."""

    source: str
    """The product as the user named it (for messages)."""
    root: str
    archive: str | None = None
    """The zip holding the product (a path, or a ``/vsis3/``/``/vsicurl/`` name), if any."""

    def href(self, relative: str) -> str:
        """The href of the file at *relative* (``GRANULE/.../MTD_TL.xml``) in the product."""
        return f"{self.root}/{relative}"

    @property
    def local(self) -> bool:
        return "://" not in self.root and not self.root.startswith("/vsi")

    def read(self, relative: str, settings: Settings) -> bytes:
        """The bytes of a small file of the product; ``FileNotFoundError`` when it is absent,
        another ``OSError`` (or ``ValueError``: no S3 keys) when it cannot be read."""
        href = self.href(relative)
        if href.startswith("/vsi"):
            return vsi.read(href, settings)
        from component.io.geometry import read_text

        try:
            return read_text(href, settings)
        except OSError as error:
            status = getattr(getattr(error, "response", None), "status_code", None)
            if status == 404 or "HTTP 404" in str(error):
                raise FileNotFoundError(href) from None
            raise

    def exists(self, relative: str, settings: Settings) -> bool:
        """Whether the product holds a file at *relative* (one request when remote)."""
        href = self.href(relative)
        if self.local:
            return Path(href).is_file()
        try:
            vsi.open_and(vsi.name(href), settings, lambda handle: b"")
        except OSError:
            return False
        return True


def item_from_safe(source: str, settings: Settings) -> dict[str, Any]:
    """The CDSE-shaped L1C item of the SAFE product at *source* (folder or ``.zip``; a local
    path, ``file://``, ``s3://`` or ``https://`` URL), its hrefs into the product as it lies.

    Raises :class:`~component.errors.InvalidItemError` (exit 4) for a missing path, a
    corrupt zip or one without a SAFE product, missing or malformed metadata and a product that
    is not single-tile L1C; :class:`~component.errors.CredentialsError` for ``s3://`` without
    keys and :class:`~component.errors.AssetReadError` when remote metadata cannot be read. A
    band file the metadata lists but the product lacks fails later, when the bands are opened
    (:func:`component.io.load.check_assets`, exit 5).
    """
    location = locate(source, settings)
    product = _xml(location, PRODUCT_METADATA, settings)
    files, granule = _band_files(product, location)
    tile_path = f"GRANULE/{granule}/{TILE_METADATA}"
    tile = _xml(location, tile_path, settings)
    epsg = _epsg(tile, location, tile_path)
    grids = _grids(tile, location, tile_path)
    item_id = _product_id(product, location)
    properties = _properties(product, tile, item_id, location)
    assets: dict[str, Any] = {}
    scale = 1.0 / _quantification(product, location)
    for band in L1C_BANDS:
        if band not in files:
            continue
        resolution = NATIVE_RESOLUTION[band]
        if resolution not in grids:
            raise InvalidItemError(
                f"{tile_path} of {location.source} gives no {resolution} m grid (Size and "
                f"Geoposition) for {band}: give a Sentinel-2 L1C SAFE product"
            )
        transform, shape = grids[resolution]
        assets[band] = {
            "href": location.href(files[band]),
            "type": "image/jp2",
            "title": f"{band} - {resolution}m",
            "roles": ["data", "reflectance"],
            "gsd": resolution,
            "nodata": 0,
            "data_type": "uint16",
            "raster:scale": scale,
            "proj:code": f"EPSG:{epsg}",
            "proj:shape": shape,
            "proj:transform": transform,
        }
    assets[GRANULE_METADATA] = _metadata_asset(location.href(tile_path), TILE_METADATA)
    assets["product_metadata"] = _metadata_asset(location.href(PRODUCT_METADATA), PRODUCT_METADATA)
    aux = f"GRANULE/{granule}/{AUX_FILE}"
    if location.exists(aux, settings):
        assets[AUX_ECMWF] = {
            "href": location.href(aux),
            "type": "application/x-grib",
            "title": "ECMWF forecasts (AUX_ECMWFT)",
            "roles": ["metadata"],
        }
    geometry = _footprint(product) or _tile_footprint(epsg, grids)
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": STAC_EXTENSIONS
        + ([VIEW_EXTENSION] if "view:azimuth" in properties else []),
        "id": item_id,
        "geometry": geometry,
        "bbox": _bbox(geometry),
        "properties": properties,
        "links": [],
        "assets": assets,
    }
    offset = _checked_offset(product, item, location)
    for band in L1C_BANDS:
        if band in assets:
            assets[band]["raster:offset"] = offset * scale
    return item


def _names_safe(href: str) -> bool:
    """Whether *href* (a path or URL) ends in ``.zip`` or ``.SAFE``: a product GDAL reads in
    place, as opposed to a download link (OData's ``.../Products(<uuid>)/$value``)."""
    return href.strip().rstrip("/").lower().endswith((ZIP_SUFFIX, SAFE_SUFFIX.lower()))


def _product_key(item: dict[str, Any]) -> str | None:
    """The key of *item*'s SAFE product asset (a zip or a SAFE folder), when it has one and
    no band assets (an item with bands is read by its bands)."""
    assets = item.get("assets")
    if not isinstance(assets, dict) or any(band in assets for band in L1C_BANDS):
        return None
    for key in PRODUCT_ASSETS:
        asset = assets.get(key)
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str) or not href.strip():
            continue
        media = str(asset.get("type", "")).split(";")[0].strip().lower()
        if media in _PRODUCT_MEDIA_TYPES or _names_safe(href):
            return key
    return None


def product_asset(item: dict[str, Any]) -> dict[str, Any] | None:
    """*item*'s ``Product`` asset when its data is a SAFE product (a ``.zip``, a ``.SAFE``, or
    an href typed ``application/zip``) and it has no band assets; else None."""
    key = _product_key(item)
    return item["assets"][key] if key is not None else None


def item_from_product(root: str, settings: Settings, base: dict[str, Any]) -> dict[str, Any]:
    """The item *base*, whose data is its SAFE ``Product`` asset at *root* (made absolute),
    read as that product: bands, grids, radiometry, footprint and scene-mean angles from the
    SAFE's metadata (:func:`item_from_safe`), the item's own id where it is a valid product id
    (else the SAFE's), its links and its other properties kept, the ``Product`` asset kept.

    An href GDAL cannot read in place (an OData ``$value`` download URL, which redirects and
    needs a bearer token; any URL not ending in ``.zip`` or ``.SAFE``) is refused
    (:class:`~component.errors.InvalidItemError`, exit 4), asking for the zip to be
    downloaded and given to ``--item``.
    """
    from component.io import trust

    key = _product_key(base) or PRODUCT_ASSETS[0]
    text = root.strip()
    local = "://" not in text or text.lower().startswith("file://")
    if "://" not in text and not text.startswith("/vsi"):
        text = str(Path(text).resolve())
    if not _names_safe(text) and not (local and is_safe_source(text)):
        why, fix = (
            ("is not a .zip or .SAFE", "name the product's .zip or .SAFE folder")
            if local
            else (
                "is not a .zip or .SAFE GDAL can read in place (a download link such as CDSE's "
                "OData $value redirects and needs a token)",
                "download the zip and pass it to --item",
            )
        )
        raise InvalidItemError(
            f"item {str(base.get('id'))[:80]!r}: its {key} asset {text[:120]!r} {why}: {fix}"
        )
    safe = item_from_safe(text, settings)
    try:
        item_id = trust.product_id(base.get("id"))
    except InvalidItemError:
        item_id = str(safe["id"])
    item = copy.deepcopy(base)
    # The item's own properties under the SAFE's; its view:* left out (the scene means are
    # the SAFE's MTD_TL.xml's, or none).
    properties = {
        k: v for k, v in (item.get("properties") or {}).items() if not k.startswith("view:")
    }
    original = (base.get("assets") or {}).get(key) or {}
    extensions = list(safe["stac_extensions"])
    extensions += [e for e in item.get("stac_extensions") or [] if e not in extensions]
    item.update(
        {
            "type": "Feature",
            "stac_version": safe["stac_version"],
            "stac_extensions": extensions,
            "id": item_id,
            "geometry": safe["geometry"],
            "bbox": safe["bbox"],
            "properties": properties | safe["properties"],
            "assets": safe["assets"]
            | {key: {**original, "href": text, "type": original.get("type", media_type(text))}},
        }
    )
    item.setdefault("links", [])
    return item


def locate(source: str, settings: Settings) -> SafeLocation:
    """Where the SAFE product named by *source* lies; raises as :func:`item_from_safe` does
    for a missing path, a corrupt zip, a zip without a product and ``s3://`` without keys."""
    text = str(source).strip()
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        text, scheme = unquote(parsed.path), ""
    elif len(scheme) == 1:  # a Windows drive letter
        scheme = ""
    if scheme and scheme not in _REMOTE:
        raise InvalidItemError(
            f"SAFE product {source}: {scheme}:// is not read: give a path, an s3:// or an "
            "https:// URL"
        )
    if scheme == "s3" and not settings.has_s3_keys:
        raise CredentialsError(
            f"SAFE product {source} is on S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(CDSE S3 keys) or pass the s3 key inputs"
        )
    text = text.rstrip("/")
    if text.lower().endswith(ZIP_SUFFIX):
        if scheme:  # read in place through /vsizip//vsis3/ (or /vsicurl/): ranges, no download
            archive = vsi.name(text)
        else:
            path = Path(text).resolve()
            if not path.is_file():
                raise InvalidItemError(
                    f"SAFE product {source} does not exist{' as a file' * path.exists()}: "
                    "check --item"
                )
            archive = str(path)
        return SafeLocation(source, _zip_root(archive, source, settings), archive)
    if scheme:
        return SafeLocation(source, text)
    path = Path(text).resolve()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise InvalidItemError(
            f"SAFE product {source} {what}: give a .SAFE folder or its .zip (check --item)"
        )
    return SafeLocation(source, str(path))


def _zip_root(archive: str, source: str, settings: Settings) -> str:
    """The ``/vsizip/`` name of the SAFE folder inside the zip *archive*: its one top-level
    ``X.SAFE`` entry (as ESA delivers it), or the zip's root when that holds the metadata."""
    entries = vsi.listdir(f"/vsizip/{archive}", settings)
    if entries is None:
        raise InvalidItemError(
            f"{source} is not a readable zip archive (a truncated or corrupt download?): "
            "download the product again"
        )
    products = sorted(e for e in entries if e.upper().endswith(SAFE_SUFFIX))
    if len(products) == 1:
        return f"/vsizip/{archive}/{products[0]}"
    if not products and PRODUCT_METADATA in entries:
        return f"/vsizip/{archive}"
    found = f"{len(products)} SAFE products" if products else "no SAFE product"
    raise InvalidItemError(
        f"{source} holds {found} (a top-level X.SAFE folder with {PRODUCT_METADATA}): give the "
        ".zip of one Sentinel-2 L1C SAFE product"
    )


def _xml(location: SafeLocation, relative: str, settings: Settings) -> ET.Element:
    """The parsed metadata file *relative* of the product, or the error saying what to do."""
    try:
        document = location.read(relative, settings)
    except FileNotFoundError:
        # Remote, an absent product and a folder without the file look the same (no listing).
        remote_folder = not location.local and location.archive is None
        maybe = " (or does not exist)" if remote_folder and "/" not in relative else ""
        raise InvalidItemError(
            f"{location.source} has no {relative}{maybe}: give a Sentinel-2 L1C SAFE product "
            "(compact naming, as produced since December 2016)"
        ) from None
    except ValueError as error:  # read_text: no S3 keys, or a scheme it does not read
        raise InvalidItemError(
            f"cannot read {relative} of {location.source} ({error}): check --item"
        ) from None
    except OSError as error:
        raise AssetReadError(
            f"cannot read {relative} of {location.source} ({_short(error)}): check the path, "
            "and for s3:// the keys and endpoint, or retry later if the server failed"
        ) from None
    try:
        return ET.fromstring(document)
    except ET.ParseError as error:
        raise InvalidItemError(
            f"{relative} of {location.source} is not XML ({error}): give a Sentinel-2 L1C SAFE "
            "product"
        ) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _elements(root: ET.Element, name: str) -> list[ET.Element]:
    """Every element named *name*, namespaces ignored (ESA's differ between baselines)."""
    return [element for element in root.iter() if _local(element.tag) == name]


def _text(root: ET.Element, name: str) -> str | None:
    for element in _elements(root, name):
        if element.text and element.text.strip():
            return element.text.strip()
    return None


def _number(root: ET.Element, name: str) -> float | None:
    text = _text(root, name)
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _band_files(product: ET.Element, location: SafeLocation) -> tuple[dict[str, str], str]:
    """``({band: path of its .jp2 in the product}, granule folder)`` from ``IMAGE_FILE``."""
    files: dict[str, str] = {}
    granules: set[str] = set()
    for element in _elements(product, "IMAGE_FILE"):
        relative = PurePosixPath((element.text or "").strip())
        parts = relative.parts
        if len(parts) < 3 or parts[0] != "GRANULE" or ".." in parts or relative.is_absolute():
            continue
        name = relative.name.removesuffix(".jp2")
        band = name.rsplit("_", 1)[-1]
        granules.add(parts[1])
        if band in L1C_BANDS:
            files[band] = f"{relative.with_name(name)}.jp2"
    if len(granules) != 1:
        found = f"{len(granules)} granules" if granules else "no granule image (IMAGE_FILE)"
        raise InvalidItemError(
            f"{PRODUCT_METADATA} of {location.source} lists {found}: give a single-tile "
            "Sentinel-2 L1C product (compact naming)"
        )
    return files, granules.pop()


def _epsg(tile: ET.Element, location: SafeLocation, tile_path: str) -> int:
    code = _text(tile, "HORIZONTAL_CS_CODE") or ""
    number = code.upper().removeprefix("EPSG:")
    if not number.isdigit():
        raise InvalidItemError(
            f"{tile_path} of {location.source} states no EPSG code (HORIZONTAL_CS_CODE "
            f"{code!r}): give a Sentinel-2 L1C SAFE product"
        )
    return int(number)


def _grids(
    tile: ET.Element, location: SafeLocation, tile_path: str
) -> dict[int, tuple[list[float], list[int]]]:
    """``{resolution: (proj:transform, proj:shape)}`` from ``Size`` and ``Geoposition``."""
    sizes: dict[int, list[int]] = {}
    positions: dict[int, list[float]] = {}
    try:
        for element in _elements(tile, "Size"):
            rows, cols = _number(element, "NROWS"), _number(element, "NCOLS")
            if rows is not None and cols is not None:
                sizes[int(element.get("resolution", ""))] = [int(rows), int(cols)]
        for element in _elements(tile, "Geoposition"):
            values = [_number(element, key) for key in ("ULX", "ULY", "XDIM", "YDIM")]
            if all(v is not None for v in values):
                ulx, uly, xdim, ydim = (float(v) for v in values)  # type: ignore[arg-type]
                positions[int(element.get("resolution", ""))] = [xdim, 0.0, ulx, 0.0, ydim, uly]
    except ValueError:
        raise InvalidItemError(
            f"{tile_path} of {location.source} has a Size or Geoposition without a numeric "
            "resolution: give a Sentinel-2 L1C SAFE product"
        ) from None
    grids = {r: (positions[r], sizes[r]) for r in sizes if r in positions}
    for transform, _ in grids.values():
        if transform[0] <= 0 or transform[4] >= 0:
            raise InvalidItemError(
                f"{tile_path} of {location.source} has no north-up grid (XDIM/YDIM): give a "
                "Sentinel-2 L1C SAFE product"
            )
    return grids


def _product_id(product: ET.Element, location: SafeLocation) -> str:
    uri = _text(product, "PRODUCT_URI")
    if not uri:
        name = PurePosixPath(urlparse(location.root).path).name
        uri = name if name.upper().endswith(SAFE_SUFFIX) else None
    if not uri:
        raise InvalidItemError(
            f"{PRODUCT_METADATA} of {location.source} states no PRODUCT_URI: give a Sentinel-2 "
            "L1C SAFE product"
        )
    return uri[: -len(SAFE_SUFFIX)] if uri.upper().endswith(SAFE_SUFFIX) else uri


def _properties(
    product: ET.Element, tile: ET.Element, item_id: str, location: SafeLocation
) -> dict[str, Any]:
    """The item's properties in CDSE's words (``processing:version``, ``sat:*``, ...)."""
    sensing = (
        _text(product, "PRODUCT_START_TIME")
        or _text(product, "DATATAKE_SENSING_START")
        or _text(tile, "SENSING_TIME")
    )
    if sensing is None:
        raise InvalidItemError(
            f"{PRODUCT_METADATA} of {location.source} states no sensing time "
            "(PRODUCT_START_TIME): give a Sentinel-2 L1C SAFE product"
        )
    properties: dict[str, Any] = {
        "datetime": sensing,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
    }
    spacecraft = _text(product, "SPACECRAFT_NAME")
    if spacecraft:
        properties["platform"] = spacecraft.lower()
    level = _text(product, "PROCESSING_LEVEL") or ""
    match = re.fullmatch(r"Level-(\d)[A-Z]", level)
    if match:
        properties["processing:level"] = f"L{match[1]}"  # as CDSE: "L1" for Level-1C
    baseline = _text(product, "PROCESSING_BASELINE")
    if baseline and _BASELINE.fullmatch(baseline):
        properties["processing:version"] = baseline
    product_type = _text(product, "PRODUCT_TYPE")
    if product_type:
        properties["product:type"] = product_type
    cloud = _number(product, "Cloud_Coverage_Assessment")
    if cloud is not None:
        properties["eo:cloud_cover"] = cloud
    tile_code = _TILE_IN_NAME.search(item_id)
    if tile_code:
        properties["grid:code"] = f"MGRS-{tile_code[1]}"
    orbit = _number(product, "SENSING_ORBIT_NUMBER")
    if orbit is not None:
        properties["sat:relative_orbit"] = int(orbit)
    direction = _text(product, "SENSING_ORBIT_DIRECTION")
    if direction:
        properties["sat:orbit_state"] = direction.lower()
    properties |= _view(tile)
    return properties


def _view(tile: ET.Element) -> dict[str, float]:
    """The scene means of MTD_TL.xml as the view extension's properties (CDSE's
    ``view:*``): the sun's, and the mean over bands of each band's viewing angles."""
    suns = _elements(tile, "Mean_Sun_Angle")
    zenith = _number(suns[0], "ZENITH_ANGLE") if suns else None
    azimuth = _number(suns[0], "AZIMUTH_ANGLE") if suns else None
    views = [
        (_number(e, "ZENITH_ANGLE"), _number(e, "AZIMUTH_ANGLE"))
        for e in _elements(tile, "Mean_Viewing_Incidence_Angle")
    ]
    pairs = [(z, a) for z, a in views if z is not None and a is not None]
    if zenith is None or azimuth is None or not pairs:
        return {}
    sin = sum(math.sin(math.radians(a)) for _, a in pairs)  # type: ignore[arg-type]
    cos = sum(math.cos(math.radians(a)) for _, a in pairs)  # type: ignore[arg-type]
    return {
        "view:sun_azimuth": round(azimuth, 6),
        "view:sun_elevation": round(90.0 - zenith, 6),
        "view:incidence_angle": round(sum(z for z, _ in pairs) / len(pairs), 6),  # type: ignore[misc]
        "view:azimuth": round(math.degrees(math.atan2(sin, cos)) % 360.0, 6),
    }


def _quantification(product: ET.Element, location: SafeLocation) -> float:
    value = _number(product, "QUANTIFICATION_VALUE")
    if value is not None and value != QUANTIFICATION_VALUE:
        raise InvalidItemError(
            f"{PRODUCT_METADATA} of {location.source} states QUANTIFICATION_VALUE {value:g}, "
            f"not {QUANTIFICATION_VALUE:g}: give a Sentinel-2 L1C SAFE product"
        )
    return QUANTIFICATION_VALUE


def _checked_offset(product: ET.Element, item: dict[str, Any], location: SafeLocation) -> float:
    """The radiometric offset (DN) the baseline implies, checked against ``RADIO_ADD_OFFSET``:
    a product that says otherwise would be calibrated wrongly, so it is refused."""
    expected = radiometry(item).add_offset
    stated = {_number(e, _local(e.tag)) for e in _elements(product, "RADIO_ADD_OFFSET")}
    if stated and stated != {expected}:
        shown = ", ".join(sorted(f"{v:g}" for v in stated if v is not None) or ["?"])
        raise InvalidItemError(
            f"{PRODUCT_METADATA} of {location.source} states RADIO_ADD_OFFSET {shown} where its "
            f"processing baseline implies {expected:g} DN: give an unaltered L1C SAFE product"
        )
    return expected


def _metadata_asset(href: str, title: str) -> dict[str, Any]:
    return {"href": href, "type": "application/xml", "title": title, "roles": ["metadata"]}


def _footprint(product: ET.Element) -> dict[str, Any] | None:
    """The data footprint (``Global_Footprint``'s ``EXT_POS_LIST``: latitude, longitude
    pairs) as a GeoJSON polygon, if the product states one."""
    text = _text(product, "EXT_POS_LIST")
    try:
        values = [float(v) for v in (text or "").split()]
    except ValueError:
        return None
    if len(values) < 8 or len(values) % 2:
        return None
    ring = [[values[i + 1], values[i]] for i in range(0, len(values), 2)]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def _tile_footprint(epsg: int, grids: dict[int, tuple[list[float], list[int]]]) -> dict[str, Any]:
    """The tile's extent in WGS84, when the product states no footprint."""
    from rasterio.warp import transform_geom

    transform, (rows, cols) = grids[min(grids)]
    west, north = transform[2], transform[5]
    east, south = west + cols * transform[0], north + rows * transform[4]
    ring = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    geometry = transform_geom(f"EPSG:{epsg}", "EPSG:4326", polygon)
    coordinates = [[round(x, 7), round(y, 7)] for x, y in geometry["coordinates"][0]]
    coordinates[-1] = coordinates[0]
    return {"type": "Polygon", "coordinates": [coordinates]}


def _bbox(geometry: dict[str, Any]) -> list[float]:
    ring = geometry["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return [min(lons), min(lats), max(lons), max(lats)]


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
