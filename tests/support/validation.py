"""Offline validation of STAC documents against the official schemas in ``../shared``.

The shared validator (``../shared/tools/stac_validate.py``) checks STAC core and every
extension a document declares, from schemas stored beside it, without network access. A
checkout without ``../shared`` skips the tests that need it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

__all__ = ["VALIDATOR", "assert_valid_stac", "stac_validator"]

VALIDATOR = Path(__file__).resolve().parents[3] / "shared" / "tools" / "stac_validate.py"


def stac_validator() -> ModuleType:
    """The shared offline STAC validator (official core + extension schemas); skip if absent."""
    if not VALIDATOR.is_file():
        pytest.skip(f"STAC validator not available at {VALIDATOR}")
    spec = importlib.util.spec_from_file_location("stac_validate", VALIDATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_valid_stac(document: dict[str, Any]) -> None:
    """Fail with the validator's messages when *document* breaks a schema it declares."""
    errors = stac_validator().validate(document)
    assert errors == [], "\n".join(errors)
