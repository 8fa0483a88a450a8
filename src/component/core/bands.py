"""The Sentinel-2 MSI band table: names, order and native resolutions.

A sensor fact, not a model choice: the model's own input and output bands are its card's
(:mod:`component.model.card`), and every file order here is the L1C's.
"""

from __future__ import annotations

L1C_BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)
"""Every L1C band, in the product's order."""
L2A_BANDS = tuple(b for b in L1C_BANDS if b != "B10")
"""Every L2A band: B10 (cirrus, 1375 nm) only serves the correction."""
NATIVE_RESOLUTION = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B10": 60,
    "B11": 20,
    "B12": 20,
}
"""Metres per pixel of each band as the L1C delivers it."""
OPTIONAL_BANDS = ("B10",)
"""Input bands an L1C may lack: the correction then does without (B10: no cirrus)."""
RGB = ("B04", "B03", "B02")
"""The true-colour quicklook's bands, red first."""


def product_resolution(band: str, resolution: int) -> int:
    """The resolution *band* is written at for ``--resolution``: never finer than native."""
    return max(int(resolution), NATIVE_RESOLUTION[band])
