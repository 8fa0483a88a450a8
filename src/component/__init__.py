"""Sentinel-2 L1C to L2A surface reflectance with a deep network, STAC in and STAC out.

``component.load_l1c``, ``component.correct`` and ``component.super_resolve`` (the Python API,
:mod:`component.api`) are imported on first use, so ``import component`` stays light: the
command line, its workers and anything that only needs the version do not pay for dask, xarray
or the model runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "correct", "load_l1c", "super_resolve"]

if TYPE_CHECKING:
    from component.api import correct, load_l1c, super_resolve


def __getattr__(name: str) -> Any:
    if name in ("load_l1c", "correct", "super_resolve"):
        from component import api

        return getattr(api, name)
    raise AttributeError(f"module 'component' has no attribute {name!r}")
