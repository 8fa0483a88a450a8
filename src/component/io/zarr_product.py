"""EOPF Zarr L1C products, read as the SAFE path reads its JPEG 2000 bands.

ESA's EOPF format stores a Sentinel-2 L1C product as one Zarr hierarchy: the DN of each band
(uint16, 0 = nodata) under ``measurements/reflectance/r10m|r20m|r60m/<b01..b12, b8a>``, each
resolution group with its ``x``/``y`` pixel-centre coordinates, and the product's STAC
metadata in the root attribute ``stac_discovery``. This module turns such a product (a local
or ``s3://``/``https://`` ``.zarr``, or a STAC item whose ``product`` asset is one) into the
same kind of item the rest of the component reads: one asset per band, each with its
``proj:*`` grid, whose href GDAL opens directly (its Zarr driver, through a ``vrt://``
connection string that adds the CRS GDAL cannot find in EOPF's attributes). So a Zarr product
goes through the very same reader, grids, resampling, radiometry and nodata handling as a SAFE
product: no second code path to drift, and the same data give the same L2A.

Why not ``xarray-eopf``: it pins ``zarr<3`` and pulls numba, dask-image and s3fs, whose
aiobotocore would downgrade the botocore this project already uses; GDAL, which the component
reads every band with anyway, reads Zarr itself: v2, the format EOPF publishes. The GDAL 3.10
in rasterio's wheels refuses Zarr v3's ``bytes`` codec and ``sharding_indexed`` (ESA's
``sentinel-2-l1c-zarr3``): the band arrays of a v3 product GDAL cannot open are read with
zarr-python into local GeoTIFFs, with the product's coarser multiscale levels as their
overviews (:mod:`component.io.zarr_v3`), and those files are the bands' hrefs, so the reading
path downstream stays the same one. The layout read here is the one ``xarray-eopf`` (0.3)
reads: the groups above, the CRS from ``other_metadata``'s ``horizontal_CRS_code``, a band's
``proj:epsg``, ``stac_discovery``'s ``proj:code`` or (v3) the ``spatial_ref`` variable.

The product's ``conditions`` (the 5 km sun and viewing angle grids, band x detector x angle x
y x x, and the ECMWF forecasts) are small arrays that GDAL's classic raster API does not
expose: zarr-python reads them (:func:`open_group`; remote products through the same signed
reader as the granule metadata), for :mod:`component.io.geometry` and
:mod:`component.io.meteorology`. ESA's root metadata is taken as published: the ``"null"``
datetime gives way to the sensing time, the swapped bbox to the footprint's bounds, the CRS
is looked for in ``other_metadata`` under both spellings; the ``.SAFE`` id suffix is dropped
where an id names a product (:func:`component.io.trust.product_id`).

Radiometry follows the processing baseline as for SAFE (:func:`component.io.l1c.radiometry`), not
the arrays' ``scale_factor``/``add_offset``: one rule for both formats.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from component.core.bands import L1C_BANDS, NATIVE_RESOLUTION
from component.core.settings import Settings
from component.errors import AssetReadError, CredentialsError, InvalidItemError
from component.io import trust
from component.io.l1c import epsg_code

REFLECTANCE_GROUP = "measurements/reflectance"
ZARR_MEDIA_TYPES = ("application/vnd+zarr", "application/vnd.zarr")
PRODUCT_ASSET = "product"
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")
PROBED_RESOLUTIONS = (10, 20, 60, 120, 360, 720)
"""Reflectance groups (``r<N>m``) looked for in a v3 product without consolidated metadata:
the native groups and the multiscale levels of ``sentinel-2-l1c-zarr3``."""


def is_zarr_source(source: str) -> bool:
    """Whether *source* names a Zarr product rather than an item document."""
    text = source.rstrip("/")
    if text.lower().endswith(".zarr"):
        return True
    path = Path(text)
    return (
        "://" not in text
        and path.is_dir()
        and ((path / ".zmetadata").is_file() or (path / "zarr.json").is_file())
    )


def zarr_asset(item: dict[str, Any]) -> dict[str, Any] | None:
    """The item's EOPF Zarr ``product`` asset, when it has one and no band assets."""
    assets = item.get("assets", {})
    if any(band in assets for band in L1C_BANDS):
        return None
    asset = assets.get(PRODUCT_ASSET)
    if not isinstance(asset, dict) or not asset.get("href"):
        return None
    media = str(asset.get("type", "")).split(";")[0].strip()
    if media in ZARR_MEDIA_TYPES or str(asset["href"]).rstrip("/").endswith(".zarr"):
        return asset
    return None


def gdal_path(root: str) -> str:
    """The GDAL file name of a product root: local path, ``/vsis3/`` or ``/vsicurl/``."""
    parsed = urlparse(root)
    if parsed.scheme == "s3":
        return f"/vsis3/{parsed.netloc}/{parsed.path.lstrip('/')}".rstrip("/")
    if parsed.scheme in ("http", "https"):
        return f"/vsicurl/{root.rstrip('/')}"
    if parsed.scheme == "file":
        return str(Path(parsed.path).resolve())
    return str(Path(root).resolve())


def band_href(root: str, array: str, epsg: int) -> str:
    """A GDAL connection string to one band array, with the CRS EOPF keeps elsewhere."""
    return f'vrt://ZARR:"{gdal_path(root)}":/{array}?a_srs=EPSG:{epsg}'


class ZarrProduct:
    """The metadata of one EOPF Zarr product (consolidated, Zarr v2 or v3), read once: one
    small JSON document, through the same HTTP/S3 client as the granule metadata."""

    def __init__(self, root: str, settings: Settings) -> None:
        self.root = root.rstrip("/")
        self.settings = settings
        self.nodes = self._read_nodes()

    def _read(self, name: str) -> bytes:
        from component.io.geometry import read_text

        href = f"{self.root}/{name}" if "://" in self.root else str(Path(self.root) / name)
        return read_text(href, self.settings)

    def _read_nodes(self) -> dict[str, dict[str, Any]]:
        """``{node path: {"attributes": ..., "shape": ...}}`` from the consolidated metadata."""
        self.zarr_format = 2
        try:
            return _v2_nodes(json.loads(self._read(".zmetadata")))
        except FileNotFoundError:
            pass
        except ValueError as error:
            if "no S3 keys" in str(error):
                raise CredentialsError(
                    f"Zarr product {self.root} is on S3: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (CDSE S3 keys) or pass the s3 key inputs"
                ) from None
            raise InvalidItemError(
                f"{self.root} has unreadable Zarr metadata ({error}): give an EOPF Zarr product"
            ) from None
        except OSError as error:
            if "404" not in str(error):
                raise AssetReadError(
                    f"cannot read Zarr product {self.root} ({str(error)[:200]}): check the path, "
                    "the keys and endpoint"
                ) from None
        self.zarr_format = 3
        try:
            document = json.loads(self._read("zarr.json"))
            if document.get("zarr_format") == 3 and not document.get("consolidated_metadata"):
                return self._probe_v3(document)
            return _v3_nodes(document)
        except (OSError, ValueError) as error:
            raise InvalidItemError(
                f"{self.root} is not a consolidated Zarr product ({str(error)[:160]}): give an "
                "EOPF Zarr L1C product"
            ) from None

    def _probe_v3(self, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The nodes of a v3 product without consolidated metadata, from the ``zarr.json`` of
        each group and band array this module reads (no listing: HTTP and S3 have none)."""
        nodes = {"": {"attributes": document.get("attributes", {})}}
        reflectance = self._maybe_json(f"{REFLECTANCE_GROUP}/zarr.json")
        if reflectance is not None:
            nodes[REFLECTANCE_GROUP] = {"attributes": reflectance.get("attributes", {})}
        names = [band.lower() for band in L1C_BANDS] + ["spatial_ref"]
        for resolution in PROBED_RESOLUTIONS:
            group = f"{REFLECTANCE_GROUP}/r{resolution}m"
            if self._maybe_json(f"{group}/zarr.json") is None:
                continue
            nodes[group] = {"attributes": {}}
            for name in names:
                meta = self._maybe_json(f"{group}/{name}/zarr.json")
                if meta is not None:
                    nodes[f"{group}/{name}"] = {
                        "attributes": meta.get("attributes", {}),
                        "shape": meta.get("shape"),
                    }
        return nodes

    def _maybe_json(self, name: str) -> dict[str, Any] | None:
        """The JSON document *name* of the product, or None where it has none."""
        try:
            value = json.loads(self._read(name))
        except FileNotFoundError:
            return None
        except OSError as error:
            status = getattr(getattr(error, "response", None), "status_code", None)
            if status == 404 or "404" in str(error) or "does not exist" in str(error):
                return None
            raise
        return value if isinstance(value, dict) else None

    @property
    def attrs(self) -> dict[str, Any]:
        return self.nodes.get("", {}).get("attributes", {})

    def band_array(self, band: str) -> str | None:
        """The array path of *band* (``measurements/reflectance/r10m/b02``), if present."""
        name = band.lower()
        native = NATIVE_RESOLUTION[band]
        for resolution in (native, *sorted({10, 20, 60} - {native})):
            path = f"{REFLECTANCE_GROUP}/r{resolution}m/{name}"
            if path in self.nodes:
                return path
        return None

    def band_levels(self, band: str) -> dict[int, str]:
        """The product's coarser multiscale copies of *band*: ``{resolution: array path}``
        for every ``r<N>m`` reflectance group coarser than the band's own array."""
        native = self.band_array(band)
        if native is None:
            return {}
        own = _resolution_of(native)
        levels: dict[int, str] = {}
        for path in self.nodes:
            folder, _, leaf = path.rpartition("/")
            resolution = _resolution_of(path)
            if (
                leaf == band.lower()
                and folder.rpartition("/")[0] == REFLECTANCE_GROUP
                and resolution is not None
                and own is not None
                and resolution > own
            ):
                levels[resolution] = path
        return dict(sorted(levels.items()))

    def epsg(self) -> int:
        """The product's EPSG code, looked up where the EOPF reader looks for it."""
        other = self.attrs.get("other_metadata", {})
        # Spelled horizontal_CRS_code, or horizontal_crs_code in some products.
        candidates: list[Any] = [other.get("horizontal_CRS_code"), other.get("horizontal_crs_code")]
        for band in L1C_BANDS:
            path = self.band_array(band)
            if path:
                candidates.append(self.nodes[path].get("attributes", {}).get("proj:epsg"))
        props = self.attrs.get("stac_discovery", {}).get("properties", {})
        candidates += [props.get("proj:code"), props.get("proj:epsg")]
        for candidate in candidates:
            epsg = epsg_code(candidate)
            if epsg is not None:
                return epsg
        epsg = self._spatial_ref_epsg()
        if epsg is not None:
            return epsg
        raise InvalidItemError(
            f"Zarr product {self.root} states no CRS (other_metadata.horizontal_CRS_code, "
            "proj:epsg or proj:code): give an EOPF Zarr L1C product"
        )

    def _spatial_ref_epsg(self) -> int | None:
        """The EPSG code of a v3 product's ``spatial_ref`` variable (``crs_wkt``)."""
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        for path, node in self.nodes.items():
            if not path.startswith(REFLECTANCE_GROUP) or not path.endswith("/spatial_ref"):
                continue
            attrs = node.get("attributes", {})
            for key in ("crs_wkt", "spatial_ref"):
                if isinstance(attrs.get(key), str):
                    try:
                        epsg = CRS.from_user_input(attrs[key]).to_epsg()
                    except CRSError:
                        continue
                    if epsg:
                        return int(epsg)
        return None

    def name(self) -> str:
        discovered = self.attrs.get("stac_discovery", {}).get("id")
        if isinstance(discovered, str) and discovered:
            return discovered
        return Path(urlparse(self.root).path).name.removesuffix(".zarr")


def open_group(root: str, settings: Settings) -> Any:
    """The product at *root* (local, ``s3://`` or ``http(s)://``) as a read-only zarr-python
    group, its metadata consolidated: the small arrays GDAL's classic raster API does not
    expose (the 5-D viewing-angle grids) are read through it."""
    import zarr

    if "://" not in root:
        return zarr.open_group(root, mode="r")
    return zarr.open_group(store=_href_store(root.rstrip("/"), settings), mode="r")


def _href_store(root: str, settings: Settings) -> Any:
    """A read-only zarr store of the product at *root* over
    :func:`component.io.geometry.read_text` (HTTP, and S3 signed as GDAL's /vsis3 is): zarr
    is imported only when a remote product's small arrays are read."""
    from zarr.abc.store import Store

    class HrefStore(Store):
        supports_writes = False
        supports_deletes = False
        supports_partial_writes = False
        supports_listing = False

        def __init__(self) -> None:
            super().__init__(read_only=True)
            self.root = root

        def __eq__(self, other: object) -> bool:
            return isinstance(other, HrefStore) and other.root == self.root

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            import asyncio

            from component.io.geometry import read_text

            try:
                data = await asyncio.to_thread(read_text, f"{root}/{key}", settings)
            except FileNotFoundError:
                return None
            except OSError as error:  # read_text's HTTP (requests) and S3 failures
                status = getattr(getattr(error, "response", None), "status_code", None)
                if status == 404 or "HTTP 404" in str(error):
                    return None  # an absent key: zarr's fill value, or no such node
                raise
            return prototype.buffer.from_bytes(_slice(data, byte_range))

        async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
            return [await self.get(key, prototype, wanted) for key, wanted in key_ranges]

        async def exists(self, key: str) -> bool:
            from zarr.core.buffer import default_buffer_prototype

            return await self.get(key, default_buffer_prototype()) is not None

        async def set(self, key: str, value: Any) -> None:
            raise PermissionError("read-only store")

        async def delete(self, key: str) -> None:
            raise PermissionError("read-only store")

        def list(self) -> Any:
            raise NotImplementedError("no listing over HTTP/S3")

        def list_prefix(self, prefix: str) -> Any:
            raise NotImplementedError("no listing over HTTP/S3")

        def list_dir(self, prefix: str) -> Any:
            raise NotImplementedError("no listing over HTTP/S3")

    return HrefStore()


def _slice(data: bytes, wanted: Any) -> bytes:
    """*data* cut to a zarr byte request (a range, an offset or a suffix), or whole."""
    if wanted is None:
        return data
    if hasattr(wanted, "start") and hasattr(wanted, "end"):
        return data[wanted.start : wanted.end]
    if hasattr(wanted, "offset"):
        return data[wanted.offset :]
    return data[-wanted.suffix :]


def _v2_nodes(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for key, value in document.get("metadata", {}).items():
        folder, _, leaf = key.rpartition("/")
        node = nodes.setdefault(folder, {})
        if leaf == ".zattrs":
            node["attributes"] = value
        elif leaf == ".zarray":
            node["shape"] = value.get("shape")
    return nodes


def _v3_nodes(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    consolidated = (document.get("consolidated_metadata") or {}).get("metadata")
    if not isinstance(consolidated, dict):
        raise ValueError("zarr.json has no consolidated metadata")
    nodes = {"": {"attributes": document.get("attributes", {})}}
    for key, value in consolidated.items():
        nodes[key.strip("/")] = {
            "attributes": value.get("attributes", {}),
            "shape": value.get("shape"),
        }
    return nodes


def _resolution_of(path: str) -> int | None:
    """The resolution of a ``.../r<N>m/<band>`` array path, if it names one."""
    match = re.search(r"/r(\d+)m/[^/]+$", path)
    return int(match[1]) if match else None


def _gdal_reads(product: ZarrProduct, href: str) -> bool:
    """Whether GDAL opens the band array at *href* (never a v3 ``sharding_indexed`` or
    ``bytes`` array with the GDAL 3.10 in rasterio's wheels)."""
    if product.zarr_format < 3:
        return True  # v2: GDAL's errors are the ones to report
    try:
        _grid(href, product.settings)
    except AssetReadError:
        return False
    return True


def _grid(href: str, settings: Settings) -> tuple[list[float], list[int]]:
    """``(proj:transform, proj:shape)`` of one band array as GDAL sees it (from x/y)."""
    import rasterio
    from rasterio.errors import RasterioError

    from component.io.load import gdal

    try:
        with gdal(settings), rasterio.open(href) as dataset:
            transform = list(dataset.transform)[:6]
            shape = [dataset.height, dataset.width]
    except RasterioError as error:
        raise AssetReadError(
            f"cannot open {href} ({str(error).splitlines()[0][:200]}): check the Zarr product"
        ) from None
    if transform[0] <= 0 or transform[4] >= 0 or transform[1] or transform[3]:
        raise InvalidItemError(
            f"{href} has no north-up grid (x/y coordinates missing or irregular): give an "
            "EOPF Zarr L1C product"
        )
    return [float(v) for v in transform], shape


_SENSING_IN_NAME = re.compile(r"_MSIL1C_(\d{8}T\d{6})_")


def _sensing_time(props: dict[str, Any], name: str) -> str | None:
    """The item's datetime: a real ``datetime``, else ``start_datetime``, else the sensing
    time in the product name (EOPF L1C products carry ``datetime`` as the string "null")."""
    for key in ("datetime", "start_datetime"):
        value = props.get(key)
        if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}T", value):
            return value
    match = _SENSING_IN_NAME.search(name)
    if match is None:
        return None
    stamp = match[1]
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:]}Z"


def _bounds(geometry: dict[str, Any]) -> list[float] | None:
    """``[west, south, east, north]`` of a GeoJSON polygon's coordinates, if it has any."""
    points: list[tuple[float, float]] = []

    def walk(value: Any) -> None:
        if (
            isinstance(value, (list, tuple))
            and len(value) >= 2
            and all(isinstance(v, (int, float)) for v in value[:2])
        ):
            points.append((float(value[0]), float(value[1])))
        elif isinstance(value, (list, tuple)):
            for part in value:
                walk(part)

    walk(geometry.get("coordinates"))
    if not points:
        return None
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return [min(lons), min(lats), max(lons), max(lats)]


def _baseline(props: dict[str, Any], name: str) -> str | None:
    version = props.get("processing:version")
    if isinstance(version, str) and re.fullmatch(r"\d{1,2}\.\d{1,2}", version.strip()):
        return version.strip()
    match = _BASELINE_IN_NAME.search(name)
    return f"{match[1]}.{match[2]}" if match else None


def item_from_zarr(
    root: str, settings: Settings, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An L1C item whose band assets point into the Zarr product at *root*.

    *base* is the STAC item that named the product (its properties win over the product's own
    ``stac_discovery``); *settings* how to reach it.
    """
    product = ZarrProduct(root, settings)
    discovered = product.attrs.get("stac_discovery", {})
    item: dict[str, Any] = copy.deepcopy(base) if base else {}
    item_id = str(item.get("id") or product.name())
    properties = {**discovered.get("properties", {}), **item.get("properties", {})}
    properties.pop("proj:bbox", None)
    if "L1C" in str(properties.get("product:type", "")).upper() or "MSIL1C" in item_id:
        properties["product:type"] = "S2MSI1C"
    if properties.get("processing:level") not in (None, "L1", "L1C"):
        properties["processing:level"] = "L1C"
    baseline = _baseline(properties, item_id) or _baseline({}, product.name())
    if baseline is None:
        raise InvalidItemError(
            f"Zarr product {root} states no processing baseline (processing:version or "
            "_Nxxxx_ in its name): give an EOPF Zarr L1C product"
        )
    properties["processing:version"] = baseline
    properties["datetime"] = _sensing_time(properties, item_id) or _sensing_time({}, product.name())
    epsg = product.epsg()
    assets: dict[str, Any] = {}
    grids: dict[str, tuple[list[float], list[int]]] = {}
    arrays = {band: product.band_array(band) for band in L1C_BANDS}
    first = next((a for a in arrays.values() if a), None)
    through_zarr = first is not None and not _gdal_reads(product, band_href(root, first, epsg))
    local: dict[str, tuple[str, list[float], list[int]]] = {}
    if through_zarr:
        from component.io import zarr_v3

        wanted = {b: (a, product.band_levels(b)) for b, a in arrays.items() if a is not None}
        local = zarr_v3.materialise_all(root, settings, wanted, epsg)
    for band, array in arrays.items():
        if array is None:
            continue
        levels = product.band_levels(band)
        if through_zarr:
            href, transform, shape = local[band]
            media = "image/tiff; application=geotiff"
        else:
            href = band_href(root, array, epsg)
            group = array.rsplit("/", 1)[0]
            if group not in grids:
                grids[group] = _grid(href, settings)
            transform, shape = grids[group]
            media = "application/vnd+zarr"
        assets[band] = {
            "href": href,
            "type": media,
            "roles": ["data", "reflectance"],
            "proj:code": f"EPSG:{epsg}",
            "proj:transform": transform,
            "proj:shape": shape,
            "eopf:array": array,
        }
        if levels:
            # The product's coarser multiscale copies of the band (read as its overviews
            # when the band is materialised from a v3 product).
            assets[band]["eopf:levels"] = {f"{r}m": path for r, path in levels.items()}
    if not assets:
        raise InvalidItemError(
            f"{root} holds no band under {REFLECTANCE_GROUP}/r10m|r20m|r60m: give an EOPF "
            "Zarr L1C product"
        )
    original = item.get("assets", {}).get(PRODUCT_ASSET, {})
    assets[PRODUCT_ASSET] = {**original, "href": root, "type": "application/vnd+zarr"}
    item.update(
        {
            "type": "Feature",
            "stac_version": item.get("stac_version", "1.1.0"),
            "id": item_id,
            "properties": properties,
            "assets": assets,
        }
    )
    item.setdefault("stac_extensions", discovered.get("stac_extensions", []))
    item.setdefault("links", [])
    for key in ("geometry", "bbox"):
        if key not in item and key in discovered:
            item[key] = discovered[key]
    if isinstance(item.get("geometry"), dict):
        # The bbox of ESA's products has its longitudes swapped: the footprint's own bounds.
        item["bbox"] = _bounds(item["geometry"]) or item.get("bbox")
    if "geometry" not in item:
        raise InvalidItemError(
            f"Zarr product {root} has no footprint (stac_discovery geometry): give an EOPF "
            "Zarr L1C product"
        )
    return item


def expand(item: dict[str, Any], settings: Settings, href: str | None = None) -> dict[str, Any]:
    """*item* with band assets when its data is an EOPF Zarr ``product`` asset or a SAFE
    ``Product`` asset (a ``.zip`` or ``.SAFE``, :mod:`component.io.safe_product`), else as is.

    A relative product href is taken relative to *href*, the item document's own location.
    """
    from component.io import safe_product

    zarr = zarr_asset(item)
    asset = zarr or safe_product.product_asset(item)
    if asset is None:
        return item
    root = str(asset["href"]).strip()
    if href and "://" not in root and not Path(root).is_absolute():
        root = urljoin(href, root) if "://" in href else str(Path(href).parent / root)
    if zarr is None:
        return safe_product.item_from_product(root, settings, item)
    return item_from_zarr(root, settings, item)


def install_stac_io(settings: Settings) -> None:
    """Make pystac read a ``.zarr`` path as its item, and expand items with a Zarr product.

    The command line names items by path (``--item``, a catalog's links); with this reader in
    place, a Zarr product is such a path too, and the output's ``derived_from`` link names the
    product itself.
    """
    import pystac
    from pystac.stac_io import DefaultStacIO

    class ZarrStacIO(DefaultStacIO):
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            href = str(source)
            from component.io import safe_product  # a .SAFE folder or its .zip, read in place

            if safe_product.is_safe_source(href):
                return json.dumps(safe_product.item_from_safe(href, settings))
            if is_zarr_source(href):
                return json.dumps(item_from_zarr(href, settings))
            text = super().read_text(source, *args, **kwargs)
            try:
                document = json.loads(text)
            except ValueError:
                return text
            if isinstance(document, dict) and document.get("type") == "Feature":
                trust.check_item(document, href, settings.local_href_roots)  # before it is opened
                expanded = expand(document, settings, href)
                if expanded is not document:
                    return json.dumps(expanded)
            return text

    pystac.StacIO.set_default(ZarrStacIO)
