"""Cloud probability from s2cloudless, within a bounded number of model evaluations.

s2cloudless (Sentinel Hub, CC BY-SA 4.0) is a LightGBM classifier of single L1C TOA spectra
(B01 B02 B04 B05 B08 B8A B09 B10 B11 B12); its weights ship inside its PyPI wheel. Its trees are
large (170 trees of 770 leaves), so one spectrum costs about 30 µs of CPU: a 60 m tile
(1830², 3.3 Mpx) would take about 50 s on two cores, a 20 m tile nine times that. The
component has a few seconds for the whole classification, so the model sees at most
``budget`` spectra per scene, spent where they decide something:

1. Only *candidates* are asked: valid pixels that Sen2Cor's own per-pixel tests do not already
   rule out as cloud (vegetation, water, soil, dark pixels; see
   :func:`component.model.scene_classification.cloud_veto`). A clear vegetated scene has few.
2. When the candidates outnumber the budget, the grid is cut into square blocks (as many as
   half the budget) and the model sees one spectrum per block: the mean of the block's
   *candidates only*, not of the whole block, so a small cloud over fields is not diluted by
   the fields around it (they were ruled out in step 1).
3. The other half of the budget goes back to full resolution: the candidates of the blocks
   whose probability is least certain (between 0.1 and 0.9, nearest 0.5 first) are evaluated
   one by one.

On development scenes (not the held-out reference chips) this agrees with evaluating every
candidate (cloud mask at probability 0.35) with an IoU of 0.97 on a cumulus scene when the
budget is 2 % of the pixels, and 0.76-0.98 on a hazy winter scene at 3-10 %
(``docs/scene-classification.md``). The model file is read straight from the installed
package: importing ``s2cloudless`` itself would import ``sentinelhub`` (1.1 s) for download
helpers the component does not use; the probabilities are the package's own
(``tests/model/test_scene_classification.py`` compares them with ``S2PixelCloudDetector``).
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from component.core.background import in_background
from component.core.blocks import block_mean_and_count
from component.errors import ModelError

if TYPE_CHECKING:
    from lightgbm import Booster

S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
"""The model's input bands, in its order (``s2cloudless.utils.MODEL_BANDS``)."""
S2CLOUDLESS_MODEL = "pixel_s2_cloud_detector_lightGBM_v0.1.txt"
S2CLOUDLESS_REQUIREMENT = "s2cloudless==1.7.3"

DEFAULT_BUDGET = 1 << 17
"""Model evaluations per scene: about 2 s on the two-core development machine (15 µs a
spectrum with two threads; twice that when the cores are shared)."""
UNCERTAIN = 0.4
"""Blocks whose probability is within this of 0.5 (0.1-0.9) are refined at full resolution."""


def model_path() -> Path:
    """The LightGBM model file inside the installed s2cloudless package (not imported)."""
    spec = importlib.util.find_spec("s2cloudless")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the cloud detector needs {S2CLOUDLESS_REQUIREMENT} (weights inside its wheel): "
            f"pip install '{S2CLOUDLESS_REQUIREMENT}'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / S2CLOUDLESS_MODEL
    if not path.is_file():
        raise ModelError(f"s2cloudless is installed but its model file is missing: {path}")
    return path


_loading: Future[Booster] | None = None
_loading_lock = threading.Lock()


def preload() -> None:
    """Start loading the detector in a background thread.

    Importing lightgbm takes 0.5 s (it imports pandas when installed, and xarray installs
    it) and the model file is parsed after: a run starts this before it searches and
    decodes, whose threads spend their time in GDAL without the GIL, so the detector is
    ready when the classification needs it instead of adding to the start-up.
    """
    global _loading
    with _loading_lock:
        if _loading is None:
            _loading = in_background(_load_booster, name="cloud-model")


class _InterruptedImportError(Exception):
    """lightgbm is installed but its import failed in the loading thread."""


def _booster() -> Booster:
    """The loaded detector: the background load's result, or, when that import failed
    although lightgbm is installed, a load here in the calling thread.

    Importing in a second thread while the first imports the same packages (lightgbm
    imports pandas, as xarray does) can see a partially initialised module: Python's
    import locks give it up rather than deadlock. The package is whole once both imports
    end, so the retry here succeeds and only a real failure reaches the user.
    """
    global _loading
    preload()
    assert _loading is not None
    try:
        return _loading.result()
    except _InterruptedImportError:
        with _loading_lock:
            future: Future[Booster] = Future()
            try:
                future.set_result(_load_booster(retry=False))
            except ModelError as error:
                future.set_exception(error)
            _loading = future
        return future.result()


def _load_booster(retry: bool = True) -> Booster:
    """The detector read from the s2cloudless wheel; :class:`ModelError` when lightgbm is
    missing or fails to import (with its error), :class:`_InterruptedImportError` for a failed
    import worth retrying when *retry*."""
    if importlib.util.find_spec("lightgbm") is None:
        raise ModelError(
            f"the cloud detector needs lightgbm (pip install '{S2CLOUDLESS_REQUIREMENT}')"
        )
    try:
        from lightgbm import Booster
    except ImportError as error:
        if retry:
            raise _InterruptedImportError(str(error)) from error
        raise ModelError(
            f"lightgbm is installed but does not import ({error}): "
            f"reinstall it (pip install --force-reinstall 'lightgbm>=4')"
        ) from None
    return Booster(model_file=str(model_path()))


def predict(spectra: np.ndarray, threads: int = 0) -> np.ndarray:
    """s2cloudless probability of (n, 10) TOA spectra in :data:`S2CLOUDLESS_BANDS` order, on
    *threads* threads (0: the cores)."""
    if len(spectra) == 0:
        return np.zeros(0, np.float32)
    features = np.ascontiguousarray(spectra, dtype=np.float32)
    threads = threads or (os.cpu_count() or 1)
    return _booster().predict(features, num_threads=threads).astype(np.float32)


def _at(toa: Sequence[np.ndarray], where: np.ndarray) -> np.ndarray:
    """(n, bands) spectra of the pixels *where* is true."""
    return np.stack([band[where] for band in toa], axis=1)


def cloud_probability(
    toa: Sequence[np.ndarray],
    candidates: np.ndarray,
    budget: int = DEFAULT_BUDGET,
    threads: int = 0,
) -> tuple[np.ndarray, int]:
    """s2cloudless probability (float32, 0 outside *candidates*) and the block size used.

    *toa*: ten (h, w) TOA reflectance bands in :data:`S2CLOUDLESS_BANDS` order (a sequence,
    not a stack: only the candidates are gathered); *candidates*:
    (h, w) pixels the model is asked about (valid, not ruled out by the per-pixel tests).
    Block size 1 means every candidate was evaluated.
    """
    if budget < 2:
        raise ValueError("the cloud-detection budget must be at least 2 evaluations")
    height, width = candidates.shape
    probability = np.zeros((height, width), np.float32)
    count = int(candidates.sum())
    if count == 0:
        return probability, 1
    if count <= budget:
        probability[candidates] = predict(_at(toa, candidates), threads)
        return probability, 1
    factor = max(2, math.ceil(math.sqrt(height * width / (budget // 2))))
    means, counts = block_mean_and_count(toa, factor, where=candidates)
    occupied = counts > 0
    block_p = np.zeros(counts.shape, np.float32)
    block_p[occupied] = predict(means[:, occupied].T, threads)

    def to_pixels(blocks: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(blocks, factor, 0), factor, 1)[:height, :width]

    probability = to_pixels(block_p)  # a new array: its repeats
    probability[~candidates] = 0
    # Refinement: whole blocks, most uncertain first, as long as their candidates fit.
    remaining = budget - int(occupied.sum())
    distance = np.abs(block_p - 0.5)
    order = np.argsort(np.where(occupied, distance, np.inf), axis=None, kind="stable")
    order = order[distance.ravel()[order] < UNCERTAIN]
    fits = np.cumsum(counts.ravel()[order]) <= remaining
    chosen = np.zeros(counts.size, bool)
    chosen[order[fits]] = True
    refine = candidates & to_pixels(chosen.reshape(counts.shape))
    if refine.any():
        probability[refine] = predict(_at(toa, refine), threads)
    return probability, factor
