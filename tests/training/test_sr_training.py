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


def test_the_projected_loss_is_the_error_left_after_consistent() -> None:
    import torch

    from component.model.super_resolution import consistent

    rng = np.random.default_rng(4)
    target = rng.uniform(0.0, 0.5, (2, 3, 12, 12)).astype(np.float32)
    estimate = target + rng.normal(0.0, 0.01, target.shape).astype(np.float32)
    valid = np.ones((2, 12, 12), np.float32)
    # the product projects onto the coarse pixels (the target's block means); the loss scores
    # that projection without running it
    pairs = zip(estimate, target, strict=True)
    projected = np.stack([consistent(e, block_mean(t, 2), 2) for e, t in pairs])
    expected = np.abs(projected - target).mean()
    tensors = [torch.from_numpy(a) for a in (estimate, target, valid)]
    assert float(sr.residual_loss(*tensors, factor=2)) == pytest.approx(expected, rel=1e-5)
    assert float(sr.residual_loss(*tensors)) == pytest.approx(np.abs(estimate - target).mean())
    # an error constant on each block is what consistent() removes: it costs nothing
    offset = np.repeat(np.repeat(rng.normal(0, 0.05, (2, 3, 6, 6)), 2, 2), 2, 3)
    shifted = torch.from_numpy((target + offset).astype(np.float32))
    assert float(sr.residual_loss(shifted, *tensors[1:], factor=2)) < 1e-7


def test_scores_and_files(tmp_path: Path) -> None:
    scenes = [_scene(3, 72)]
    scores = sr.evaluate(scenes, {"bicubic": Bicubic(), "ghp": GuidedHighPass()})
    for method in ("bicubic", "ghp"):
        assert set(scores[method]) == {"x2", "x6"}
        assert set(scores[method]["x2"]["rmse"]) == {"B05", "B06", "B07", "B8A", "B11", "B12"}
    # bands that are mixtures of the guide: the guided method wins at 2x
    assert scores["ghp"]["x2"]["mean_rmse"] < scores["bicubic"]["x2"]["mean_rmse"]
    assert sr.consistency_error(GuidedHighPass(), scenes[0]) < 1e-5
    # the card's native-grid entry: the shipped pair's ratio to bicubic, said against the goal
    shipped = "network-x2+guided-high-pass-x6"
    scores.update({shipped: scores["ghp"], "guided-high-pass": scores["ghp"]})
    scores.update({"consistent_applied": True, "consistency_max_mean_abs": {shipped: 1e-8}})
    entry = sr.native_grid_metrics(scores)
    ratio = scores["ghp"]["x2"]["mean_rmse"] / scores["bicubic"]["x2"]["mean_rmse"]
    assert entry["goal_rmse_at_most_half_of_bicubic"]["x2"].startswith(
        f"{'yes' if ratio <= 0.5 else 'no'}: {ratio:.2f}"
    )
    assert len(entry["x6_chained"]) == 3 and "bicubic" in entry["x6_chained"]
    model = sr.SuperResolutionNet(10, 6, features=8, layers=3, shuffle=2)
    weights, graph, difference = sr.save(model, tmp_path / "x2")
    assert weights.is_file() and graph.is_file() and difference < 1e-6
    again = sr.load_torch(tmp_path / "x2", 8, 3, 2, factor=2)
    pairs = zip(again.state_dict().values(), model.state_dict().values(), strict=True)
    assert all((a == b).all() for a, b in pairs)


def _nearest_chip(path: Path, shift20: tuple[int, int], shift60: tuple[int, int], n: int = 96):
    """A 12-band chip like the TerraMind ones: the 20 m and 60 m bands linear mixtures of the
    10 m bands, block-averaged over footprints shifted by *shift20* / *shift60* 10 m pixels
    (:func:`sr.registration`'s convention), then put on the 10 m grid by nearest neighbour;
    DN = reflectance x 10000. Returns the mixing matrices (20 m, 60 m)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(5)
    margin = 6
    field = ndimage.gaussian_filter(rng.uniform(0, 1, (4, n + 2 * margin, n + 2 * margin)),
                                    (0, 1.2, 1.2))  # fmt: skip
    canvas = (0.03 + 0.5 * field).astype(np.float64)
    mix20, mix60 = rng.uniform(0.1, 0.4, (6, 4)), rng.uniform(0.1, 0.4, (2, 4))

    def coarse(mix: np.ndarray, factor: int, shift: tuple[int, int]) -> np.ndarray:
        mixed = np.tensordot(mix, canvas, axes=1)
        r, c = margin - shift[0], margin - shift[1]
        side = -(-n // factor) * factor
        blocks = block_mean(mixed[:, r : r + side, c : c + side], factor)
        return np.repeat(np.repeat(blocks, factor, 1), factor, 2)[:, :n, :n]

    fine = canvas[:, margin : margin + n, margin : margin + n]
    b20, b60 = coarse(mix20, 2, shift20), coarse(mix60, 6, shift60)
    order = {"B02": fine[0], "B03": fine[1], "B04": fine[2], "B08": fine[3],
             "B01": b60[0], "B09": b60[1]}  # fmt: skip
    order.update({band: b20[i] for i, band in enumerate(sr.BANDS_20M)})
    stack = np.stack([order[b] for b in sr.PAIR_BANDS])
    dn = np.round(stack * 10000).astype(np.uint16)
    profile = {"driver": "GTiff", "width": n, "height": n, "count": 12, "dtype": "uint16",
               "crs": "EPSG:32632", "transform": from_origin(500000, 5000000, 10, 10)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
    return mix20, mix60


@pytest.mark.parametrize(("shift20", "shift60"), [((0, 0), (0, 0)), ((0, -1), (2, 1)),
                                                  ((1, 0), (-3, 4))])  # fmt: skip
def test_nearest_chips_are_registered_to_their_footprints(
    tmp_path: Path, shift20: tuple[int, int], shift60: tuple[int, int]
) -> None:
    path = tmp_path / "chip.tif"
    mix20, mix60 = _nearest_chip(path, shift20, shift60)
    scene = sr.read_nearest_stack(path)
    # every coarse pixel is the block mean of its mixture over the 10 m pixels it now covers
    expect20 = block_mean(np.tensordot(mix20, scene.b10, axes=1), 2)
    expect60 = block_mean(np.tensordot(mix60, scene.b10, axes=1), 6)
    assert scene.b20.shape[1:] == expect20.shape[1:] and scene.b60.shape[1:] == expect60.shape[1:]
    assert scene.b60.shape[1] >= 14  # at most two 60 m rows lost to the shift
    np.testing.assert_allclose(scene.b20, expect20, atol=2e-4)
    np.testing.assert_allclose(scene.b60, expect60, atol=2e-4)


def test_an_interpolated_band_is_refused(tmp_path: Path) -> None:
    import rasterio

    path = tmp_path / "chip.tif"
    _nearest_chip(path, (0, 0), (0, 0))
    with rasterio.open(path, "r+") as dst:
        b05 = dst.read(5).astype(float)
        dst.write(ndimage.uniform_filter(b05, 2).astype(np.uint16), 5)
    with pytest.raises(ValueError, match="B05 is not a nearest-neighbour 2x band"):
        sr.read_nearest_stack(path)


@pytest.mark.skipif(not (sr.DATA_ROOT / "pairs" / "terramind" / "L2A").is_dir(),
                    reason="needs ../shared/data")  # fmt: skip
def test_the_terramind_l2a_chips_hold_native_pixels() -> None:
    """The real chips: each coarse band, once registered, matches the 10 m band of its region
    as native Sentinel-2 pixels do (B8A against B08's block means, B09 against B8A's)."""
    split = sr.load_split()
    scenes = split["native-selection"] + split["native-test"]
    assert [s.name for s in scenes] == [*sr.NATIVE_SELECTION, *sr.NATIVE_TEST]
    for scene in scenes:
        b8a = scene.b20[sr.BANDS_20M.index("B8A")]
        b08 = block_mean(scene.b10[sr.GUIDE_BANDS.index("B08")][None], 2)[0]
        b09 = scene.b60[sr.BANDS_60M.index("B09")]
        assert np.corrcoef(b08.ravel(), b8a.ravel())[0, 1] > 0.98, scene.name
        assert np.corrcoef(block_mean(b8a[None], 3)[0].ravel(), b09.ravel())[0, 1] > 0.98
