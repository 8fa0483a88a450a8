"""Super-resolution training on tiny synthetic scenes: Wald's degradation, a short run lowers
the loss, the scores and the files it writes (seconds, no shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("torch")

from component.core.blocks import block_mean
from component.model.super_resolution import Bicubic, GuidedHighPass
from component.training import super_resolution as sr


def _scene(seed: int, size: int = 96) -> sr.Scene:
    """10 m bands with sharp edges; the 20 m and 60 m bands mixtures of them, block-averaged."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.uniform(0, 1, (4, size, size)), (0, 1.5, 1.5))
    b10 = (0.05 + 0.4 * (field > 0.5) * field).astype(np.float32)
    mixing = rng.uniform(0.1, 0.5, (8, 4))
    fine = np.tensordot(mixing, b10, axes=1).astype(np.float32) + 0.02
    return sr.Scene("synthetic", b10, block_mean(fine[:6], 2), block_mean(fine[6:], 6))


def test_degradation_follows_wald() -> None:
    scene = _scene(0)
    x2, x6 = sr.degraded(scene, 2), sr.degraded(scene, 6)
    assert x2.guide.shape == (4, 48, 48) and x2.coarse.shape == (6, 24, 24)
    np.testing.assert_array_equal(x2.target, scene.b20)
    # cropped to whole 360 m pixels: 96 px at 10 m -> 72
    assert x6.guide.shape == (10, 12, 12) and x6.coarse.shape == (2, 2, 2)
    chained = sr.chained(scene, Bicubic())
    assert chained.guide.shape == (10, 12, 12)


@pytest.mark.parametrize(("factor", "shuffle"), [(2, 2), (6, 1)])
def test_a_short_run_lowers_the_loss(factor: int, shuffle: int) -> None:
    examples = [sr.degraded(_scene(seed, 144), factor) for seed in range(2)]
    model, history = sr.train(
        examples,
        features=8,
        layers=3,
        shuffle=shuffle,
        steps=60,
        batch=8,
        size=24,
        lr=5e-3,
        log_every=20,
    )
    assert len(history) == 3 and history[-1] < 0.9 * history[0]
    out = sr.TorchResolver({factor: model})(examples[0].guide, examples[0].coarse, factor)
    assert out.shape == examples[0].target.shape


def test_scores_and_files(tmp_path: Path) -> None:
    scenes = [_scene(3, 72)]
    scores = sr.evaluate(scenes, {"bicubic": Bicubic(), "ghp": GuidedHighPass()})
    for method in ("bicubic", "ghp"):
        assert set(scores[method]) == {"x2", "x6"}
        assert set(scores[method]["x2"]["rmse"]) == {"B05", "B06", "B07", "B8A", "B11", "B12"}
    # bands that are mixtures of the guide: the guided method wins at 2x
    assert scores["ghp"]["x2"]["mean_rmse"] < scores["bicubic"]["x2"]["mean_rmse"]
    assert sr.consistency_error(GuidedHighPass(), scenes[0]) < 1e-5
    model = sr.SuperResolutionNet(10, 6, features=8, layers=3, shuffle=2)
    weights, graph, difference = sr.save(model, tmp_path / "x2")
    assert weights.is_file() and graph.is_file() and difference < 1e-6
    again = sr.load_torch(tmp_path / "x2", 8, 3, 2, factor=2)
    pairs = zip(again.state_dict().values(), model.state_dict().values(), strict=True)
    assert all((a == b).all() for a, b in pairs)
