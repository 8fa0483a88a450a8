"""Every band at 10 m: the 20 m and 60 m bands sharpened with the 10 m bands' detail.

The contract every method here keeps (the product, the Python API and the evaluation call the
same functions):

* inputs are surface reflectance, float32, NaN where invalid, on grids that share one origin:
  ``guide`` (k, H, W) at 10 m (:data:`GUIDE_BANDS` first, in that order; a method may take more
  guide channels, as the 60 m method takes the sharpened 20 m bands), ``coarse`` (n, h, w) at
  ``factor`` times the pixel (2 for the 20 m bands, 6 for the 60 m bands), with
  ``H = h * factor`` and ``W = w * factor`` (a caller pads a window's edge to whole pixels);
* the output is (n, H, W) float32 at 10 m, NaN where the coarse pixel or the guide is NaN;
* :func:`consistent` then makes each output block average back to its coarse pixel exactly, so
  the product never contradicts the native band it came from.

:class:`Bicubic` is the plain upsampling every method is compared with.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import ndimage

from component.core.blocks import block_mean

GUIDE_BANDS = ("B02", "B03", "B04", "B08")
"""The 10 m bands whose detail the others are given, in the guide's channel order."""
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
"""Sharpened by 2: 20 m -> 10 m."""
BANDS_60M = ("B01", "B09")
"""Sharpened by 6: 60 m -> 10 m."""
SHARPENED_BANDS = ("B01", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")
"""The bands the product gains at 10 m (``<band>_10m``), in the L2A order."""
FACTORS = {**dict.fromkeys(BANDS_20M, 2), **dict.fromkeys(BANDS_60M, 6)}


class SuperResolver(Protocol):
    """Sharpens coarse bands with a 10 m guide (see the module's contract)."""

    name: str

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray: ...


def upsampled(coarse: np.ndarray, factor: int) -> np.ndarray:
    """(n, h, w) -> (n, h * factor, w * factor) by cubic splines on pixel areas (a coarse
    pixel covers ``factor x factor`` fine ones; mirrored edges); NaN where the coarse pixel was
    NaN (filled from its neighbours for the spline, then masked again).

    The same numbers as ``scipy.ndimage.zoom(band, factor, order=3, grid_mode=True,
    mode="grid-mirror")`` (within 2e-7), computed as the spline prefilter on the coarse grid and
    then, for each of the ``factor`` phases of each axis, a fixed four-tap sum of the spline
    coefficients: about four times faster than the general interpolator, which matters over a
    whole tile (six 20 m bands over 10980² px: ~10 s instead of ~45 s on two cores).
    """
    coarse = np.asarray(coarse, np.float32)
    invalid = ~np.isfinite(coarse)
    if invalid.any():
        coarse = _filled(coarse, invalid)
    # float32 in and out (scipy filters each line in double): within 2e-7 of a float64 array's
    # coefficients, without two conversions of the whole array
    coefficients = ndimage.spline_filter1d(coarse, 3, axis=1, output=np.float32, mode="grid-mirror")
    coefficients = ndimage.spline_filter1d(
        coefficients, 3, axis=2, output=np.float32, mode="grid-mirror"
    )
    # columns first, on the small array; then rows, where each phase writes whole rows
    out = _spline_phases(_spline_phases(coefficients, factor, 2), factor, 1)
    if invalid.any():
        out[np.repeat(np.repeat(invalid, factor, axis=1), factor, axis=2)] = np.nan
    return out


def _spline_phases(coefficients: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Cubic B-spline *coefficients* evaluated at the centres of *factor* fine pixels per
    coarse pixel along *axis* (mirrored beyond the edges, as ``grid-mirror`` extends them)."""
    n = coefficients.shape[axis]
    pad = [(0, 0)] * coefficients.ndim
    pad[axis] = (2, 2)
    padded = np.pad(coefficients, pad, mode="symmetric")
    shape = list(coefficients.shape)
    shape[axis] = n * factor
    out = np.empty(shape, np.float32)
    # one phase's sum and one tap's product, reused: no temporary per tap
    total = np.empty(coefficients.shape, np.float32)
    term = np.empty(coefficients.shape, np.float32)
    for phase in range(factor):
        position = (phase + 0.5) / factor - 0.5  # in coarse pixels from the pixel's centre
        first = int(np.floor(position))
        t = position - first
        weights = ((1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6,
                   (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6)  # fmt: skip
        for tap, weight in enumerate(weights):
            start = 2 + first - 1 + tap
            index = [slice(None)] * coefficients.ndim
            index[axis] = slice(start, start + n)
            np.multiply(padded[tuple(index)], np.float32(weight), out=term if tap else total)
            if tap:
                total += term
        target = [slice(None)] * coefficients.ndim
        target[axis] = slice(phase, None, factor)
        out[tuple(target)] = total
    return out


def _filled(coarse: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """*coarse* with each invalid pixel given its nearest valid one's value (0 if none)."""
    out = coarse.copy()
    for band, bad in zip(out, invalid, strict=True):
        if bad.all():
            band[:] = 0.0
        elif bad.any():
            index = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
            band[:] = band[tuple(index)]
    return out


def consistent(fine: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
    """*fine* (n, H, W) shifted, block by block, so that each ``factor x factor`` block's mean
    is its *coarse* pixel (n, h, w) exactly: the block's error is taken out of each of its
    pixels. Where a block mean cannot be formed (all NaN) the block stays as it is. A new
    array; *fine* is left as it is.

    Where *fine* is whole blocks (``H = h * factor``, ``W = w * factor``, as the product's
    strips are) the shift is one broadcast subtraction on a block view of the copy, not an
    expanded error array (a fifth of the time on a strip)."""
    error = block_mean(fine, factor) - coarse
    error = np.where(np.isfinite(error), error, np.float32(0.0)).astype(np.float32)
    out = np.array(fine, np.float32)
    n, height, width = out.shape
    h, w = error.shape[1:]
    if (height, width) == (h * factor, w * factor):
        blocks = out.reshape(n, h, factor, w, factor)  # a view: out is a fresh C-ordered copy
        blocks -= error[:, :, None, :, None]
        return out
    shift = np.repeat(np.repeat(error, factor, axis=1), factor, axis=2)
    out -= shift[:, :height, :width]
    return out


class Bicubic:
    """The baseline: cubic-spline upsampling, no use of the guide."""

    name = "bicubic"

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
        out = upsampled(coarse, factor)
        out[:, ~np.isfinite(guide).all(axis=0)] = np.nan
        return out


class GuidedHighPass:
    """The classical baseline: the coarse band's cubic upsampling plus the guide's high-pass
    detail, weighted by how the band follows the guide at the coarse scale.

    For each coarse band, a least-squares fit (per call, over the valid coarse pixels, with a
    constant and a tiny ridge so that near-collinear guides stay stable) of the band on the
    guide's block means at the band's scale; the band's 10 m value is then its upsampling plus
    the fitted coefficients times the guide's detail, ``guide - upsampled(block_mean(guide))``,
    computed as ``upsampled(band - w . guide_coarse) + w . guide`` (the same by linearity, one
    upsampling per band). With fewer valid coarse pixels than unknowns the band is only
    upsampled.
    """

    name = "guided-high-pass"
    ridge = 1e-6

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
        guide = np.asarray(guide, np.float32)
        coarse = np.asarray(coarse, np.float32)
        guide_coarse = block_mean(guide, factor)
        k = len(guide)
        design = np.concatenate([np.ones((1, *guide_coarse.shape[1:]), np.float32), guide_coarse])
        design = design.reshape(k + 1, -1).astype(np.float64)
        finite_design = np.isfinite(design).all(axis=0)
        weights = np.zeros((len(coarse), k), np.float32)
        for band, values in enumerate(coarse.reshape(len(coarse), -1)):
            use = finite_design & np.isfinite(values)
            if use.sum() <= k + 1:
                continue
            x = design[:, use]
            gram = x @ x.T + self.ridge * use.sum() * np.diag([0.0] + [1.0] * k)
            weights[band] = np.linalg.solve(gram, x @ values[use].astype(np.float64))[1:]
        # upsampled(coarse) + w . (guide - upsampled(guide_coarse)), with one upsampling per
        # band instead of one per guide channel (the upsampling is linear)
        out = upsampled(coarse - np.tensordot(weights, guide_coarse, axes=1), factor)
        out += np.tensordot(weights, guide, axes=1)
        out[:, ~np.isfinite(guide).all(axis=0)] = np.nan
        return out


NETWORK_FACTORS = (2, 6)
"""The learned method has one network per factor."""


class NetworkResolver:
    """The learned method (DSen2-like, Lanaras et al. 2018): a small residual CNN per factor.

    Input channels: the guide (see :func:`load_super_resolver` for each factor's guide), then
    the coarse bands cubic-upsampled (:func:`upsampled`); output: a residual added to that
    upsampling. The graphs run in ONNX Runtime (numpy in and out, no torch), over tiles of
    ``tile`` px whose outer ``overlap`` px are computed and dropped, strip by strip, so that a
    10980² tile needs the output array and one strip of tiles, not a stack of every channel.
    A coarse band's invalid pixels are filled from their nearest valid ones for the network and
    are NaN in that band's output; an invalid guide pixel is given 0 (its output is NaN in every
    band, and a valid pixel next to it sees that 0 within the network's reach, a few pixels).
    """

    name = "network"

    def __init__(
        self, engines: dict[int, object], multiple: dict[int, int], tile: int = 512,
        overlap: int = 12,
    ) -> None:  # fmt: skip
        self.engines = engines
        self.multiple = multiple
        self.tile = tile
        self.overlap = overlap

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
        if factor not in self.engines:
            raise ValueError(f"no super-resolution network for factor {factor}")
        guide = np.asarray(guide, np.float32)
        coarse = np.asarray(coarse, np.float32)
        invalid = ~np.isfinite(coarse)
        # the network sees every band, so a band's gaps are filled (nearest valid pixel) for
        # the others' sake, then masked again in that band
        out = upsampled(_filled(coarse, invalid) if invalid.any() else coarse, factor)
        self._run(self.engines[factor], guide, out, self.multiple[factor])
        if invalid.any():
            out[np.repeat(np.repeat(invalid, factor, axis=1), factor, axis=2)] = np.nan
        out[:, ~np.isfinite(guide).all(axis=0)] = np.nan
        return out

    def _run(self, engine, guide: np.ndarray, out: np.ndarray, multiple: int) -> None:  # type: ignore[no-untyped-def]
        """*out* (the upsampling) plus the network's residual, in place: a strip's result is
        written once the next strip, whose margin reads the strip's last rows, has been run."""
        height, width = out.shape[1:]
        margin = -(-self.overlap // multiple) * multiple
        step = max(multiple, (self.tile - 2 * margin) // multiple * multiple)
        pending: tuple[int, np.ndarray] | None = None
        # *out* is finite (its gaps were filled); only a guide's NaN need replacing, if any
        clean = bool(np.isfinite(guide).all())
        for top in range(0, height, step):
            bottom = min(top + step, height)
            strip = np.empty((out.shape[0], bottom - top, width), np.float32)
            for left in range(0, width, step):
                right = min(left + step, width)
                window = _window(guide, out, top - margin, bottom + margin, left - margin,
                                 right + margin, multiple, clean)  # fmt: skip
                residual = engine(window[None])[0]
                rows = slice(margin, margin + bottom - top)
                cols = slice(margin, margin + right - left)
                strip[:, :, left:right] = window[len(guide) :, rows, cols] + residual[:, rows, cols]
            if pending is not None:
                out[:, pending[0] : pending[0] + pending[1].shape[1]] = pending[1]
            pending = (top, strip)
        if pending is not None:
            out[:, pending[0] : pending[0] + pending[1].shape[1]] = pending[1]


def _window(
    guide: np.ndarray,
    up: np.ndarray,
    top: int,
    bottom: int,
    left: int,
    right: int,
    multiple: int,
    clean: bool = False,
) -> np.ndarray:
    """Guide and upsampled channels over rows ``top:bottom`` and columns ``left:right``,
    mirrored beyond the array's edges and padded at the end to a multiple of *multiple*; NaN
    given 0 (*clean*: the caller knows both are finite, and no pixel is looked at)."""
    height, width = up.shape[1:]
    bottom = top + -(-(bottom - top) // multiple) * multiple
    right = left + -(-(right - left) // multiple) * multiple
    k = len(guide)
    window = np.empty((k + len(up), bottom - top, right - left), np.float32)
    if top >= 0 and left >= 0 and bottom <= height and right <= width:  # inside: slices
        window[:k] = guide[:, top:bottom, left:right]
        window[k:] = up[:, top:bottom, left:right]
    else:  # at an edge: mirrored indices
        rows = _mirrored(np.arange(top, bottom), height)[:, None]
        cols = _mirrored(np.arange(left, right), width)
        window[:k] = guide[:, rows, cols]
        window[k:] = up[:, rows, cols]
    if not clean:
        np.copyto(window, np.float32(0.0), where=~np.isfinite(window))
    return window


def _mirrored(index: np.ndarray, size: int) -> np.ndarray:
    """Indices reflected into ``0..size-1`` (``-1 -> 0``, ``size -> size - 1``)."""
    period = 2 * size
    index = np.mod(index, period)
    return np.where(index < size, index, period - 1 - index)


class PerFactor:
    """One method per factor (the card's ``methods``), e.g. the network at 2, guided high-pass
    at 6."""

    def __init__(self, methods: dict[int, SuperResolver]) -> None:
        self.methods = methods
        self.name = "+".join(f"{m.name}-x{f}" for f, m in sorted(methods.items()))

    def __call__(self, guide: np.ndarray, coarse: np.ndarray, factor: int) -> np.ndarray:
        return self.methods[factor](guide, coarse, factor)


SUPER_RESOLUTION_KEY = "super_resolution"
"""The model card's key that describes the shipped super-resolution method and its files."""


def load_super_resolver(card=None, threads: int = 0) -> SuperResolver:  # type: ignore[no-untyped-def]
    """The shipped method, as ``models/model_card.json`` names it under ``super_resolution``.

    ``methods`` names one method per factor (``"2"``, ``"6"``): ``network`` runs that factor's
    ONNX graph, verified (with the weights it was exported from) against the card's sha256; a
    missing or tampered file raises :class:`~component.errors.ModelError` (exit 8).
    ``guided-high-pass`` (or no such key) runs :class:`GuidedHighPass`, which needs no file.
    A learned part ships only where it beat guided high-pass on the held-out scene.

    Calling it: ``resolver(guide, coarse, factor)`` per the module's contract. Factor 2:
    ``guide`` is the four 10 m bands (:data:`GUIDE_BANDS`), ``coarse`` the six 20 m bands
    (:data:`BANDS_20M`). Factor 6: ``guide`` is the four 10 m bands followed by the six 20 m
    bands already sharpened to 10 m (10 channels, :data:`GUIDE_BANDS` then :data:`BANDS_20M`),
    ``coarse`` is B01 and B09 (:data:`BANDS_60M`) at 60 m.
    """
    from pathlib import Path

    from component.core.files import sha256_file
    from component.errors import ModelError
    from component.model.card import load_card

    card = card if card is not None else load_card()
    entry = card.raw.get(SUPER_RESOLUTION_KEY) or {}
    chosen = {int(f): m for f, m in (entry.get("methods") or {}).items()}
    learned = [f for f in NETWORK_FACTORS if chosen.get(f) == "network"]
    if not learned:
        return GuidedHighPass()
    if card.card_path is None:
        raise ModelError("the model card's super-resolution files have no folder; fix the card")
    folder = Path(card.card_path).parent
    engines, multiple = {}, {}
    try:
        networks = {int(n["factor"]): n for n in entry["networks"]}
        for factor in learned:
            network = networks[factor]
            for key in ("weights", "onnx"):
                path = folder / network[key]["file"]
                if not path.is_file():
                    raise ModelError(f"super-resolution file not found: {path}; restore models/")
                if sha256_file(path) != network[key]["sha256"].lower():
                    raise ModelError(
                        f"super-resolution file {path.name} does not match the model card's "
                        "sha256; restore the shipped file or update the card"
                    )
            multiple[factor] = int(np.lcm(int(network["shuffle"]), factor))
            engines[factor] = folder / network["onnx"]["file"]
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(
            f"model card {card.card_path}: super_resolution is incomplete ({error!r}); restore it"
        ) from None
    from component.model.engines import OnnxEngine

    sessions = {factor: OnnxEngine(path, threads or None) for factor, path in engines.items()}
    network = NetworkResolver(sessions, multiple, int(entry.get("tile", 512)),
                              int(entry.get("overlap", 12)))  # fmt: skip
    if len(learned) == len(NETWORK_FACTORS):
        return network
    return PerFactor({f: network if f in learned else GuidedHighPass() for f in NETWORK_FACTORS})
