"""Checksums of files: the model's files against its card, the product's assets for STAC."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, streamed so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def multihash_sha256(path: Path | str) -> str:
    """The STAC ``file:checksum`` form: multihash code 0x12 (sha2-256), length 0x20, then the
    hex digest."""
    return "1220" + sha256_file(path)
