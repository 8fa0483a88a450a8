"""Loading the cloud detector: a background import that loses a race is retried, a real
import failure is reported as one (not as a missing package)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import Future

import numpy as np
import pytest

from component.model import scene_clouds

SPECTRA = np.array(
    [
        # bright, flat, cold: a thick cloud; then dark vegetation
        [0.45, 0.42, 0.41, 0.42, 0.45, 0.45, 0.20, 0.02, 0.35, 0.25],
        [0.12, 0.08, 0.04, 0.08, 0.35, 0.37, 0.10, 0.002, 0.18, 0.08],
    ],
    np.float32,
)


def test_an_interrupted_background_import_is_retried_in_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = scene_clouds.predict(SPECTRA, threads=1)
    interrupted: Future = Future()
    interrupted.set_exception(
        scene_clouds._InterruptedImportError("partially initialized module 'lightgbm'")
    )
    monkeypatch.setattr(scene_clouds, "_loading", interrupted)
    again = scene_clouds.predict(SPECTRA, threads=1)
    np.testing.assert_array_equal(again, expected)
    assert expected[0] > 0.5 > expected[1]
    assert scene_clouds._loading is not interrupted  # the retried load is kept


def test_a_lightgbm_that_does_not_import_is_named_not_called_missing() -> None:
    script = """
import importlib.abc, importlib.machinery, sys
class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "lightgbm":
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ImportError("libgomp.so.1: cannot open shared object file")
sys.meta_path.insert(0, Broken())
from component.errors import ModelError
from component.model import scene_clouds
try:
    scene_clouds.predict(__import__("numpy").ones((1, 10), "float32"))
except ModelError as error:
    print(error)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    message = run.stdout.strip()
    assert "installed but does not import" in message
    assert "libgomp.so.1" in message
    assert "pip install" in message
