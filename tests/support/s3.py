"""A real S3 endpoint on loopback (moto in server mode), reachable by boto3 and by GDAL.

GDAL reads ``s3://`` hrefs through ``/vsis3/`` with path-style URLs and no TLS; pointing it at
moto with the same configuration keys as CDSE (only the endpoint and ``AWS_HTTPS`` differ) runs
the production read path: request signing, range requests on JPEG2000 codestreams, errors.

The bucket is created by a client in region ``us-east-1`` (moto refuses other regions without a
location constraint), while GDAL signs with ``AWS_DEFAULT_REGION=default`` as against CDSE; moto
does not check signatures, so both work.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import rasterio
from moto.server import ThreadedMotoServer
from rasterio.session import AWSSession

__all__ = ["S3Server", "start_s3_server"]

ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"  # moto accepts any credentials


@dataclass
class S3Server:
    """A running moto S3 server on 127.0.0.1 with one bucket (``eodata`` by default)."""

    host: str
    port: int
    bucket: str = "eodata"
    _server: ThreadedMotoServer | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """``host:port`` as GDAL's ``AWS_S3_ENDPOINT`` wants it (no scheme)."""
        return f"{self.host}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` as boto3 wants it."""
        return f"http://{self.endpoint}"

    def gdal_env(self) -> dict[str, str]:
        """GDAL configuration to read ``s3://<bucket>/...`` from this server, CDSE-style.

        The keys are the ones the component sets for CDSE, where ``AWS_S3_ENDPOINT`` is
        ``eodata.dataspace.copernicus.eu`` and ``AWS_HTTPS`` is ``YES``. They work as process
        environment variables or GDAL config options. ``rasterio.Env(**env)`` refuses
        ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (rasterio wants credentials in a
        session): use :meth:`rasterio_env` for that, or put the keys in ``os.environ``.
        """
        return {
            "AWS_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            "AWS_DEFAULT_REGION": "default",
        }

    def rasterio_env(self) -> rasterio.Env:
        """A ``rasterio.Env`` that reads ``s3://`` hrefs from this server like from CDSE.

        Credentials and endpoint go through an ``AWSSession`` (the only way rasterio accepts
        them); the other keys of :meth:`gdal_env` are passed as GDAL options.
        """
        env = self.gdal_env()
        session = AWSSession(
            aws_access_key_id=env.pop("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.pop("AWS_SECRET_ACCESS_KEY"),
            region_name=env["AWS_DEFAULT_REGION"],
            endpoint_url=env["AWS_S3_ENDPOINT"],
        )
        return rasterio.Env(session=session, **env)

    def client(self) -> Any:
        """A boto3 S3 client for this server (region ``us-east-1``)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def upload_file(self, path: Path, key: str) -> str:
        """Upload one file under ``key``; return its ``s3://bucket/key`` href."""
        self.client().upload_file(str(path), self.bucket, key)
        return f"s3://{self.bucket}/{key}"

    def upload_tree(self, root: Path, prefix: str) -> dict[str, str]:
        """Upload every file below ``root`` to ``prefix`` + its path relative to ``root``.

        With ``prefix="Sentinel-2/MSI/L1C/2024/01/16/"`` a synthetic product written by
        ``make_l1c_product(root, href_base=cdse_s3_base(date))`` lands exactly where its item's
        hrefs point. Returns ``{relative path: s3 href}``.
        """
        client = self.client()
        uploaded: dict[str, str] = {}
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            client.upload_file(str(path), self.bucket, prefix + rel)
            uploaded[rel] = f"s3://{self.bucket}/{prefix}{rel}"
        return uploaded

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys in the bucket under ``prefix`` (paginated listing)."""
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def stop(self) -> None:
        """Shut the server down (idempotent)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_s3_server(bucket: str = "eodata") -> S3Server:
    """Start moto's S3 server on 127.0.0.1 (free port) in a thread and create ``bucket``.

    The server lives in this process: it is fast to start (well under a second) and GDAL reaches
    it over real HTTP, because rasterio releases the GIL while GDAL performs I/O.
    """
    # werkzeug logs every request at INFO level: keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(host=host, port=port, bucket=bucket, _server=server)
    s3.client().create_bucket(Bucket=bucket)
    return s3
