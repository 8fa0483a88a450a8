"""The embedded real Sentinel-2 L1C sample (tile T33UUU, 2017-02-16; see README.md here).

It lets the component run end to end, offline, on real JPEG2000 input whose STAC item has the
exact shape of a CDSE ``sentinel-2-l1c`` item. Asset hrefs are relative to the item file, so
callers must resolve them against :func:`item_path` (pystac does when reading the file).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["item_path", "sample_dir"]


def sample_dir() -> Path:
    """Folder that holds the sample files, wherever the package is installed."""
    return Path(__file__).resolve().parent


def item_path() -> Path:
    """Path of the sample's STAC item JSON (``item.json`` next to the JP2 files)."""
    return sample_dir() / "item.json"
