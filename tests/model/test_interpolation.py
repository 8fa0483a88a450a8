"""The look-up table's interpolator against scipy's, on uneven nodes and at the edges."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from component.model.interpolation import BLOCK, LinearTable


def test_equals_scipy_linear_inside_the_grid() -> None:
    rng = np.random.default_rng(0)
    nodes = (
        np.array([0.0, 0.1, 0.4, 1.2]),
        np.array([0.0, 30.0, 50.0, 78.0]),
        np.array([0.0, 12.0]),
    )
    values = rng.uniform(0.0, 0.3, (4, 4, 2, 5))
    n = BLOCK * 2 + 17  # more than one block, and a partial one
    points = np.stack([rng.uniform(a[0], a[-1], n) for a in nodes], -1)
    points[:3] = [[0.0, 0.0, 0.0], [1.2, 78.0, 12.0], [0.1, 30.0, 12.0]]  # corners and nodes
    expected = RegularGridInterpolator(nodes, values)(points)
    np.testing.assert_allclose(LinearTable(nodes, values)(points), expected, rtol=1e-6, atol=1e-7)


def test_clamps_outside_and_keeps_trailing_shape() -> None:
    nodes = (np.array([1.0, 2.0]),)
    values = np.array([[[1.0, 10.0]], [[3.0, 30.0]]])  # (2, 1, 2)
    out = LinearTable(nodes, values)([[0.0], [1.5], [9.0]])
    assert out.shape == (3, 1, 2)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 2.0, 3.0])
