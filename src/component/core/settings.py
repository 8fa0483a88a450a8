"""The run's settings from its environment, read once, at the edge (the CLI, the Python API,
a Dask worker), then passed down as a value: no module below reads or writes ``os.environ``
for them.

The S3 keys are here too, hidden from ``repr``; they reach GDAL as a rasterio session in each
reading thread (:func:`component.io.load.gdal`) and the metadata reader as request signatures,
never through the process environment, a log line or a file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from component.errors import OutputError

log = logging.getLogger(__name__)

CDSE_S3_ENDPOINT = "eodata.dataspace.copernicus.eu"
CDSE_STAC_URL = "https://stac.dataspace.copernicus.eu/v1/"
DEM_COLLECTION = "cop-dem-glo-90-dged-cog"
"""The Copernicus DEM (90 m, DGED COGs) in CDSE's STAC: the default elevation source."""
DEM_COLLECTIONS = {
    "copernicus-90": DEM_COLLECTION,
    "copernicus-30": "cop-dem-glo-30-dged-cog",
}
"""``--elevation`` sources read from the CDSE STAC, by name: their collections."""
ELEVATION_SOURCES = ("auto", *DEM_COLLECTIONS, "offline", "sea-level")
"""``--elevation``: ``auto`` takes the best available (``--dem``, else the Copernicus DEM with
S3 keys, else the offline map, else sea level); any other names the one source to use."""
DEM_STAC_ENV = "COMPONENT_DEM_STAC_URL"
DEM_COLLECTION_ENV = "COMPONENT_DEM_COLLECTION"
CDSE_MAX_CONNECTIONS = 4
"""CDSE allows 4 concurrent connections per user."""
MAX_CONNECTIONS_ENV = "COMPONENT_MAX_CONNECTIONS"
ENGINE_THREADS_ENV = "COMPONENT_ENGINE_THREADS"
STAC_RETRIES_ENV = "COMPONENT_STAC_RETRIES"
STAC_BACKOFF_MAX_ENV = "COMPONENT_STAC_BACKOFF_MAX_S"
STAC_TIMEOUT_ENV = "COMPONENT_STAC_TIMEOUT_S"
LOCK_TIMEOUT_ENV = "COMPONENT_LOCK_TIMEOUT_S"
PROGRESS_INTERVAL_ENV = "COMPONENT_PROGRESS_INTERVAL_S"
LOCAL_HREF_ROOTS_ENV = "COMPONENT_LOCAL_HREF_ROOTS"
BAND_EXTENSIONS = ".jp2,.tif,.tiff,.xml,.zip"
"""What GDAL may fetch remotely for a SAFE product, folder or zip (it then never probes S3 for
side-cars)."""
DEFAULT_LOCK_TIMEOUT_S = 600.0
ZARR_EXTENSIONS = ".zarray,.zattrs,.zgroup,.zmetadata,zarr.json,{noext}," + ",".join(
    str(digit) for digit in range(10)
)
"""What GDAL must be allowed to fetch over HTTP/S3 for EOPF Zarr: metadata files and chunk
keys (``0.3`` in Zarr v2, ``c/0/3`` in v3: names that end in a digit or have no extension)."""


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    """A non-negative number from *environ*; *default* when unset or malformed (said once)."""
    text = environ.get(name, "").strip()
    try:
        return max(0.0, float(text)) if text else default
    except ValueError:
        log.warning("ignoring %s=%r (not a number): using %g", name, text, default)
        return default


def _lock_timeout(environ: Mapping[str, str]) -> float:
    text = environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        return max(0.0, float(text))
    except ValueError:
        raise OutputError(
            f"bad {LOCK_TIMEOUT_ENV} {text!r}: give a number of seconds (0: do not wait)"
        ) from None


def _flag(text: str) -> bool:
    return text.strip().upper() not in ("NO", "FALSE", "OFF", "0")


def _cache_bytes(text: str) -> int:
    """``GDAL_CACHEMAX`` in MB (GDAL's convention below 100000), default 256, as bytes.

    rasterio hands this option to GDAL in bytes, so a bare ``256`` would be a 256-byte cache,
    which makes JPEG 2000 blocks decode again and again (measured: 3x slower reads).
    """
    value = int(text.strip()) if text.strip().isdigit() else 256
    return value * 2**20 if value < 100_000 else value


@dataclass(frozen=True)
class Settings:
    """How this process reaches S3/HTTP and how much of the machine it uses."""

    s3_endpoint: str = CDSE_S3_ENDPOINT
    s3_https: bool = True
    s3_virtual_hosting: bool = False
    s3_region: str = "default"
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    http_retries: int = 4
    """Retries of HTTP 429/5xx and dropped connections, with a doubling delay (about 15 s in
    all with the defaults); then the item fails and the run goes on."""
    http_retry_delay_s: float = 1.0
    http_timeout_s: int = 60
    http_connect_timeout_s: int = 20
    gdal_cache_bytes: int = 256 * 2**20
    """GDAL's block cache (its default, 5 % of RAM, would tie memory to the machine)."""
    max_connections: int = CDSE_MAX_CONNECTIONS
    """Concurrent reads of the whole process: each decoding job holds one connection."""
    engine_threads: int = 0
    """Threads of the network, the table interpolation and the cloud detector; 0: the cores."""
    stac_retries: int = 5
    """Retries of a STAC API request (429/5xx, resets, stalls)."""
    stac_backoff_max_s: float = 8.0
    """The longest wait between two retries, ``Retry-After`` included: about 15 s of backoff
    per request, enough for CDSE's per-minute quota to refill."""
    stac_timeout_s: float = 30.0
    """Connect and read timeout of one STAC API request."""
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    """How long a run waits for another run's lock on its output folder (0: not at all)."""
    progress_interval_s: float = 10.0
    """Seconds between two progress log lines (when no terminal shows a bar)."""
    dem_stac_url: str = CDSE_STAC_URL
    """STAC API holding the Copernicus DEM (empty: do not look for it)."""
    dem_collection: str = DEM_COLLECTION
    local_href_roots: tuple[str, ...] = ()
    """Folders whose files a remote document (an item from a STAC API or a URL) may name by
    local path: a shared mount its API indexes, such as ``/eodata`` on a CDSE machine. Empty:
    remote documents name only remote data (:mod:`component.io.trust`)."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of ``os.environ`` (or *environ*); CDSE's values where unset."""
        env = os.environ if environ is None else environ
        connections = int(_number(env, MAX_CONNECTIONS_ENV, CDSE_MAX_CONNECTIONS))
        return cls(
            s3_endpoint=env.get("AWS_S3_ENDPOINT", CDSE_S3_ENDPOINT),
            s3_https=_flag(env.get("AWS_HTTPS", "YES")),
            s3_virtual_hosting=_flag(env.get("AWS_VIRTUAL_HOSTING", "FALSE")),
            s3_region=env.get("AWS_DEFAULT_REGION", "default"),
            access_key_id=env.get("AWS_ACCESS_KEY_ID", ""),
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
            http_retries=int(_number(env, "GDAL_HTTP_MAX_RETRY", 4)),
            http_retry_delay_s=_number(env, "GDAL_HTTP_RETRY_DELAY", 1.0),
            http_timeout_s=int(_number(env, "GDAL_HTTP_TIMEOUT", 60)),
            http_connect_timeout_s=int(_number(env, "GDAL_HTTP_CONNECTTIMEOUT", 20)),
            gdal_cache_bytes=_cache_bytes(env.get("GDAL_CACHEMAX", "")),
            max_connections=max(1, connections or CDSE_MAX_CONNECTIONS),
            engine_threads=int(_number(env, ENGINE_THREADS_ENV, 0)),
            stac_retries=int(_number(env, STAC_RETRIES_ENV, 5)),
            stac_backoff_max_s=_number(env, STAC_BACKOFF_MAX_ENV, 8.0),
            stac_timeout_s=_number(env, STAC_TIMEOUT_ENV, 30.0),
            lock_timeout_s=_lock_timeout(env),
            progress_interval_s=_number(env, PROGRESS_INTERVAL_ENV, 10.0),
            dem_stac_url=env.get(DEM_STAC_ENV, CDSE_STAC_URL).strip(),
            dem_collection=env.get(DEM_COLLECTION_ENV, "").strip() or DEM_COLLECTION,
            local_href_roots=tuple(
                os.path.realpath(root)
                for root in env.get(LOCAL_HREF_ROOTS_ENV, "").split(os.pathsep)
                if root.strip()
            ),
        )

    def with_keys(self, access_key_id: str | None, secret_access_key: str | None) -> Settings:
        """These settings with the keys of secret inputs, when both are given."""
        if not (access_key_id and secret_access_key):
            return self
        return dataclasses.replace(
            self, access_key_id=access_key_id, secret_access_key=secret_access_key
        )

    def without_keys(self) -> Settings:
        """What may travel to another process (a Dask task): everything but the keys."""
        return dataclasses.replace(self, access_key_id="", secret_access_key="")

    @property
    def has_s3_keys(self) -> bool:
        return bool(self.access_key_id and self.secret_access_key)

    @property
    def threads(self) -> int:
        """Compute threads: :attr:`engine_threads`, else the machine's cores."""
        return self.engine_threads or os.cpu_count() or 1

    def key_environment(self) -> dict[str, str]:
        """The keys as environment variables, for a worker process this run starts."""
        if not self.has_s3_keys:
            return {}
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def gdal_options(self) -> dict[str, str | int]:
        """GDAL configuration options to read CDSE's S3 (``s3://eodata/...``) through /vsis3,
        and http(s) files, SAFE or Zarr; the keys are not among them (see
        :func:`component.io.load.gdal`)."""
        return {
            "AWS_S3_ENDPOINT": self.s3_endpoint,
            "AWS_HTTPS": "YES" if self.s3_https else "NO",
            "AWS_VIRTUAL_HOSTING": "TRUE" if self.s3_virtual_hosting else "FALSE",
            "AWS_DEFAULT_REGION": self.s3_region,
            "GDAL_HTTP_MAX_RETRY": str(self.http_retries),
            "GDAL_HTTP_RETRY_DELAY": f"{self.http_retry_delay_s:g}",
            "GDAL_HTTP_TIMEOUT": str(self.http_timeout_s),
            "GDAL_HTTP_CONNECTTIMEOUT": str(self.http_connect_timeout_s),
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": f"{BAND_EXTENSIONS},{ZARR_EXTENSIONS}",
            "GDAL_CACHEMAX": self.gdal_cache_bytes,
        }
