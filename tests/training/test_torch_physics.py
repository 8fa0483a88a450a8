"""Training's torch inversion computes what the component computes at run time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from component.core.bands import L1C_BANDS, L2A_BANDS
from component.core.grid import Grid
from component.model.atmosphere import Atmosphere, Geometry
from component.model.card import load_card
from component.model.correction import SceneCorrector
from component.training.torch_physics import batch_curves, gaussian_blur, interp_nodes, invert


class FieldEstimator:
    """An estimator that returns given fields: the atmosphere is then the same on both sides."""

    name = "fields"

    def __init__(self, aot: np.ndarray, water: np.ndarray) -> None:
        self.aot, self.water = aot, water

    def __call__(self, toa, bands, context):  # type: ignore[no-untyped-def]
        return self.aot.copy(), self.water.copy()


@pytest.mark.parametrize(("adjacency_m", "elevation_m"), [(0.0, 0.0), (300.0, 0.0), (0.0, 1700.0)])
def test_torch_inversion_equals_the_run_time_corrector(
    adjacency_m: float, elevation_m: float
) -> None:
    card = load_card()
    assert card.lut_path is not None
    out = Atmosphere.load(card.lut_path, None, L2A_BANDS)
    rng = np.random.default_rng(0)
    size = 24
    aot = rng.uniform(0.02, 1.1, (size, size)).astype(np.float32)
    water = rng.uniform(0.1, 6.0, (size, size)).astype(np.float32)
    toa = rng.uniform(0.05, 0.4, (len(L1C_BANDS), size, size)).astype(np.float32)
    toa[L1C_BANDS.index("B10")] = rng.uniform(0.0, 0.05, (size, size))
    geometry = Geometry(52.0, 7.0, 120.0)
    scene = SceneCorrector(
        out, FieldEstimator(aot, water), L1C_BANDS, adjacency_m, 0.0, None, 120,
        cirrus_correction=True, guard=False,  # random spectra: the inversion alone
    )  # fmt: skip
    grid = Grid(None, scene_transform(), size, size)
    heights = np.full((size, size), elevation_m, np.float32) if elevation_m else None
    state = scene.estimate(toa, grid, geometry, elevation=heights)
    expected = np.stack([scene.correct(b, toa[L1C_BANDS.index(b)], grid, state) for b in L2A_BANDS])

    cirrus = state.cirrus  # B10 taken whole (no clear-sky model), capped by the darkest band
    actual = invert(
        torch.from_numpy(toa[[L1C_BANDS.index(b) for b in L2A_BANDS]])[None],
        torch.from_numpy(np.asarray(cirrus, np.float32))[None],
        torch.from_numpy(aot)[None],
        torch.from_numpy(water)[None],
        batch_curves([out.curves(geometry, elevation_m=elevation_m)]),
        adjacency_m / 120.0,
    )[0].numpy()
    # the run time smooths with scipy (reflect, 4-sigma truncation), training with a conv:
    # the same filter up to the kernel's truncation. The run time clips the surface at zero;
    # training keeps negative values so that their loss has a gradient.
    np.testing.assert_allclose(np.maximum(actual, 0.0), expected, atol=2e-5)
    assert (actual < 0).any()  # the clip is exercised


def scene_transform():  # type: ignore[no-untyped-def]
    from affine import Affine

    return Affine(120.0, 0, 600000, 0, -120.0, 5000000)


def test_interp_nodes_is_linear_and_differentiable() -> None:
    nodes = torch.tensor([0.0, 1.0, 3.0])
    curves = torch.tensor([[[0.0, 2.0, 6.0], [1.0, 1.0, 0.0]]])  # (1, 2, 3)
    values = torch.tensor([[[0.5, 2.0], [5.0, -1.0]]], requires_grad=True)
    out = interp_nodes(values, nodes, curves)
    np.testing.assert_allclose(out[0, 0].detach().numpy(), [[1.0, 4.0], [6.0, 0.0]])
    np.testing.assert_allclose(out[0, 1].detach().numpy(), [[1.0, 0.5], [0.0, 1.0]])
    out.sum().backward()
    assert values.grad is not None and values.grad[0, 0, 0] == pytest.approx(2.0)


def test_gaussian_blur_keeps_constants_and_mass() -> None:
    x = torch.full((1, 2, 20, 20), 0.4)
    np.testing.assert_allclose(gaussian_blur(x, 2.5).numpy(), 0.4, atol=1e-6)
    spike = torch.zeros((1, 1, 41, 41))
    spike[0, 0, 20, 20] = 1.0
    assert float(gaussian_blur(spike, 3.0).sum()) == pytest.approx(1.0, abs=1e-4)
