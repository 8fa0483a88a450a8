"""One window of rows of one band, corrected: the kernel of pass 2 and of the Python API.

Each run of rows (:class:`~component.model.correction.BandInversion`) goes from its input to
surface reflectance, and to L2A DN when the input is DN, while it is in the CPU's cache: no
full-size float temporary is made (per 10 m strip 0.57 s -> 0.2 s against converting,
inverting and quantizing the whole strip in turn). AOT and water vapour are resampled from the
coarse grid run by run the same way.
"""

from __future__ import annotations

import numpy as np

from component.core.grid import Grid
from component.io.l1c import BandRadiometry
from component.io.load import to_toa
from component.io.write import atmosphere_to_dn, reflectance_to_dn
from component.model.correction import AtmosphereState, SceneCorrector, coarse_to_fine


def correct_window(
    corrector: SceneCorrector,
    state: AtmosphereState,
    band: str,
    grid: Grid,
    y0: int,
    values: np.ndarray,
    radiometry: BandRadiometry | None = None,
) -> np.ndarray:
    """Rows ``y0:y0 + len(values)`` of *band*'s *grid* corrected.

    With *radiometry*, *values* are L1C DN and the result is L2A DN (uint16, as written);
    without, *values* are TOA reflectance and the result surface reflectance (float32). NaN
    and nodata stay invalid.
    """
    inversion = corrector.inversion(band, grid.rows(y0, y0 + len(values)), state)
    if radiometry is None:
        toa = np.asarray(values, np.float32)
        surface = np.empty(toa.shape, np.float32)
        for run in inversion.runs:
            inversion(run, toa[run.rows], surface[run.rows])
        return surface
    out = np.empty(values.shape, np.uint16)
    for run in inversion.runs:
        toa = to_toa(values[run.rows], radiometry)
        out[run.rows] = reflectance_to_dn(inversion(run, toa, toa))
    return out


def field_window(
    state: AtmosphereState, name: str, grid: Grid, y0: int, invalid: np.ndarray, quantize: bool
) -> np.ndarray:
    """``"aot"`` or ``"water"`` on rows ``y0:y0 + len(invalid)`` of *grid* (bilinear from the
    coarse grid): as written (:func:`~component.io.write.atmosphere_to_dn`, uint16) when
    *quantize*, else float32 with NaN where *invalid*."""
    resample = coarse_to_fine(state.grid, grid.rows(y0, y0 + len(invalid)))
    wide = resample.wide(resample.take(getattr(state, name)))
    out = np.empty(invalid.shape, np.uint16 if quantize else np.float32)
    for run in resample.runs():
        values = np.empty((len(run.weights), grid.width), np.float32)
        wide.rows(run.wide_rows, run.weights, values)
        rows = invalid[run.rows]
        if quantize:
            out[run.rows] = atmosphere_to_dn(values, rows)
        else:
            out[run.rows] = np.where(rows, np.float32(np.nan), values)
    return out
