"""Two runs on one output folder: the second waits (bounded) or fails fast, never corrupts.

Real ``python -m component run`` processes: the first is held at a known stage with the
output's lock taken (``COMPONENT_TEST_PAUSE_AT``); a second with a short
``COMPONENT_LOCK_TIMEOUT_S`` gives up with exit code 9, a third with a long one waits, then
finds the first run's product published and skips it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.nrt import (
    catalog_problems,
    component_env,
    linked_ids,
    models_dir,  # noqa: F401 (fixture)
    start_cli,
    wait_for_file,
)

SIZE_10M = 192


def _wait_for_text(log: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{log.read_text()}"
        time.sleep(0.1)


def test_a_second_run_waits_for_the_lock_or_fails_fast_and_nothing_is_corrupted(
    models_dir: Path,  # noqa: F811
    l1c_product: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    item = tmp_path / "item.json"
    item.write_text(json.dumps(l1c_product(size_10m=SIZE_10M, seed=11)))
    output = tmp_path / "out"
    args = ["--item", str(item), "--output", str(output)]
    marker = tmp_path / "paused"
    logs = [tmp_path / f"run{i}.log" for i in range(3)]
    holder = start_cli(
        args,
        component_env(
            models_dir,
            COMPONENT_TEST_PAUSE_AT="read",
            COMPONENT_TEST_PAUSE_MARKER=str(marker),
        ),
        logs[0],
    )
    processes = [holder]
    try:
        wait_for_file(marker, holder, logs[0], timeout=120)  # holds the lock, mid-product
        impatient = start_cli(
            args, component_env(models_dir, COMPONENT_LOCK_TIMEOUT_S="0.5"), logs[1]
        )
        patient = start_cli(
            args, component_env(models_dir, COMPONENT_LOCK_TIMEOUT_S="120"), logs[2]
        )
        processes += [impatient, patient]

        assert impatient.wait(timeout=120) == 9, logs[1].read_text()
        assert "another run is writing" in logs[1].read_text()
        _wait_for_text(logs[2], "waiting up to 120 s")
        assert patient.poll() is None

        marker.unlink()  # let the first run go on
        assert holder.wait(timeout=120) == 0, logs[0].read_text()
        assert patient.wait(timeout=120) == 0, logs[2].read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    text = logs[2].read_text()
    summary = json.loads(text[text.index("{") : text.rindex("}") + 1])
    assert summary["processed"] == []
    assert summary["skipped"][0]["reason"] == "already published, checksums verified"
    assert len(linked_ids(output)) == 1
    assert catalog_problems(output) == []
