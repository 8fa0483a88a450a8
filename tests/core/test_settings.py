"""The run's settings, read once from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from component.core.settings import (
    CDSE_MAX_CONNECTIONS,
    CDSE_S3_ENDPOINT,
    ZARR_EXTENSIONS,
    Settings,
)

KEY, SECRET = "AKIA-EXAMPLE-KEY", "secret-example-value"
VARIABLES = (
    "AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GDAL_HTTP_MAX_RETRY", "GDAL_HTTP_RETRY_DELAY",
    "GDAL_HTTP_TIMEOUT", "GDAL_HTTP_CONNECTTIMEOUT", "GDAL_CACHEMAX",
    "COMPONENT_MAX_CONNECTIONS", "COMPONENT_ENGINE_THREADS", "COMPONENT_LOCAL_HREF_ROOTS",
)  # fmt: skip
"""Every variable :meth:`Settings.from_environ` reads."""


def test_defaults_are_cdse_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_environ({})
    assert settings == Settings() == Settings.from_environ()
    assert settings.s3_endpoint == CDSE_S3_ENDPOINT == "eodata.dataspace.copernicus.eu"
    assert settings.s3_https and not settings.s3_virtual_hosting
    assert settings.s3_region == "default"
    assert settings.max_connections == CDSE_MAX_CONNECTIONS == 4
    assert settings.gdal_cache_bytes == 256 * 2**20
    assert (settings.http_retries, settings.http_retry_delay_s) == (4, 1.0)
    assert (settings.http_timeout_s, settings.http_connect_timeout_s) == (60, 20)
    assert settings.engine_threads == 0 and settings.threads >= 1
    assert not settings.has_s3_keys and settings.key_environment() == {}
    assert settings.local_href_roots == ()  # remote documents name no local file by default


def test_values_come_from_the_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_S3_ENDPOINT", "from.os.environ")
    environ = {
        "AWS_S3_ENDPOINT": "127.0.0.1:9000",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "TRUE",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "GDAL_HTTP_MAX_RETRY": "2",
        "GDAL_HTTP_RETRY_DELAY": "0.5",
        "GDAL_HTTP_TIMEOUT": "30",
        "GDAL_HTTP_CONNECTTIMEOUT": "5",
        "COMPONENT_MAX_CONNECTIONS": "9",
        "COMPONENT_ENGINE_THREADS": "3",
    }
    settings = Settings.from_environ(environ)
    assert settings.s3_endpoint == "127.0.0.1:9000", "the mapping, not os.environ"
    assert not settings.s3_https and settings.s3_virtual_hosting
    assert settings.s3_region == "eu-central-1"
    assert (settings.access_key_id, settings.secret_access_key) == (KEY, SECRET)
    assert settings.has_s3_keys
    assert (settings.http_retries, settings.http_retry_delay_s) == (2, 0.5)
    assert (settings.http_timeout_s, settings.http_connect_timeout_s) == (30, 5)
    assert settings.max_connections == 9
    assert settings.engine_threads == 3 == settings.threads
    assert Settings.from_environ().s3_endpoint == "from.os.environ"
    # Unreadable or zero numbers fall back to the defaults.
    odd = Settings.from_environ({"COMPONENT_MAX_CONNECTIONS": "0", "GDAL_HTTP_TIMEOUT": "soon"})
    assert odd.max_connections == CDSE_MAX_CONNECTIONS and odd.http_timeout_s == 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 256 * 2**20), ("512", 512 * 2**20), ("99999", 99999 * 2**20),
     ("200000000", 200_000_000), ("lots", 256 * 2**20)],
)  # fmt: skip
def test_gdal_cachemax_in_mb_becomes_bytes(text: str, expected: int) -> None:
    settings = Settings.from_environ({"GDAL_CACHEMAX": text})
    assert settings.gdal_cache_bytes == expected
    assert settings.gdal_options()["GDAL_CACHEMAX"] == expected


def test_repr_hides_the_keys() -> None:
    settings = Settings.from_environ({"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET})
    text = f"{settings!r} {settings}"
    assert KEY not in text and SECRET not in text
    assert CDSE_S3_ENDPOINT in text


def test_with_and_without_keys() -> None:
    plain = Settings()
    keyed = plain.with_keys(KEY, SECRET)
    assert keyed.has_s3_keys and (keyed.access_key_id, keyed.secret_access_key) == (KEY, SECRET)
    assert not plain.has_s3_keys, "a new value: the original is unchanged"
    assert keyed.key_environment() == {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    assert plain.with_keys(KEY, None) is plain and plain.with_keys("", SECRET) is plain
    assert keyed.with_keys(None, None) is keyed
    bare = keyed.without_keys()
    assert bare == plain and not bare.has_s3_keys and bare.key_environment() == {}
    assert keyed.with_keys("other", "pair").access_key_id == "other"


def test_gdal_options_hold_no_key() -> None:
    keyed = Settings(s3_endpoint="127.0.0.1:9000", s3_https=False).with_keys(KEY, SECRET)
    options = keyed.gdal_options()
    assert "AWS_ACCESS_KEY_ID" not in options and "AWS_SECRET_ACCESS_KEY" not in options
    assert not any(KEY in str(v) or SECRET in str(v) for v in options.values())
    assert options["AWS_S3_ENDPOINT"] == "127.0.0.1:9000" and options["AWS_HTTPS"] == "NO"
    assert options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    extensions = str(options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]).split(",")
    assert {".jp2", ".tif", ".xml"} <= set(extensions)
    assert set(ZARR_EXTENSIONS.split(",")) <= set(extensions), "Zarr names always allowed"
    assert {"zarr.json", ".zarray", "0", "9"} <= set(extensions)
    assert options == Settings(s3_endpoint="127.0.0.1:9000", s3_https=False).gdal_options()


def test_local_href_roots_are_real_paths_separated_as_path_is(tmp_path: Path) -> None:
    (tmp_path / "eodata").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "eodata")
    value = os.pathsep.join([str(tmp_path / "link"), " ", "/data"])
    settings = Settings.from_environ({"COMPONENT_LOCAL_HREF_ROOTS": value})
    assert settings.local_href_roots == (str((tmp_path / "eodata").resolve()), "/data")
