"""What the engine's tests share: the shipped card's scene corrector."""

from __future__ import annotations

from typing import Any

import pytest

from component.model.card import load_card
from component.model.engines import build_scene_corrector


@pytest.fixture(scope="module")
def corrector() -> Any:
    """The shipped card's :class:`SceneCorrector` and its coarse grid's pixel size."""
    card = load_card()
    return build_scene_corrector(card)[0], card.atmosphere_grid_m
