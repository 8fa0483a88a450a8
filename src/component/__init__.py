"""Sentinel-2 L1C to L2A surface reflectance with a deep network, STAC in and STAC out."""

__version__ = "0.1.0"
