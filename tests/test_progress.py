"""The progress display: a bar on a terminal, periodic log lines elsewhere, nothing when off."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from component.progress import Progress, format_seconds


def read_all(fd: int) -> str:
    chunks = []
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_bar_with_stage_and_eta() -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    with os.fdopen(slave, "w") as terminal:
        progress = Progress("auto", stream=terminal)
        assert progress.mode == "bar"
        with progress.item(1, 2, "S2A_TILE", total=4) as item:
            item.advance(1, "decode")
            item.advance(3, "correct")
        terminal.flush()
        text = read_all(master)
    os.close(master)
    assert "item 1/2 S2A_TILE" in text
    assert "100%" in text and "4/4" in text
    assert "\r" in text  # redrawn in place, as a bar


def test_a_log_gets_periodic_lines_with_eta_and_an_end_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()  # not a terminal
    progress = Progress("auto", stream=stream, interval=0.0)
    assert progress.mode == "log"
    with (
        caplog.at_level(logging.INFO, logger="component"),
        progress.item(1, 1, "S2A_TILE", total=10) as item,
    ):
        item.advance(5, "decode")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("item 1/1 S2A_TILE: decode, 5/10 steps (50 %)")
    assert "ETA" in lines[0] and "unknown" not in lines[0]
    assert lines[-1].startswith("item 1/1 S2A_TILE: done in")
    assert stream.getvalue() == ""  # nothing but log records; no bar characters


def test_log_lines_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress("log", interval=3600.0)
    with (
        caplog.at_level(logging.INFO, logger="component"),
        progress.item(1, 1, "x", total=1000) as item,
    ):
        for _ in range(1000):
            item.advance(1, "correct")
    assert len(caplog.records) == 1  # only the end line


def test_off_shows_nothing_and_failures_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="component"):
        with progress_item(Progress("off", stream=stream)) as item:
            item.advance(2)
        with pytest.raises(RuntimeError), progress_item(Progress("log", interval=0.0)):
            raise RuntimeError("boom")
    assert stream.getvalue() == ""
    assert [r.getMessage().split(": ")[1].split(" in")[0] for r in caplog.records] == ["failed"]


def progress_item(progress: Progress):  # type: ignore[no-untyped-def]
    return progress.item(1, 1, "x", total=2)


def test_counting_from_many_threads_is_exact() -> None:
    item = Progress("off").item(1, 1, "x", total=8000)
    threads = [
        threading.Thread(target=lambda: [item.advance() for _ in range(1000)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert item.done == 8000


def test_format_seconds() -> None:
    assert format_seconds(4.4) == "4 s"
    assert format_seconds(125) == "2:05"


def run_sample(output: Path, *flags: str, terminal: bool = False) -> tuple[str, str]:
    """``python -m component run`` on the embedded sample: (stdout, stderr), stderr on a pty
    when *terminal*."""
    command = [sys.executable, "-m", "component", "run", "--output", str(output), *flags]
    env = {**os.environ, "COMPONENT_PROGRESS_INTERVAL_S": "0", "COLUMNS": "120"}
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout, done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=slave, text=True, env=env
    ) as process:
        os.close(slave)
        chunks = []
        while True:  # drain the terminal while the run writes to it
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the run closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        stdout = process.stdout.read() if process.stdout else ""
    os.close(master)
    assert process.returncode == 0
    return stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_the_cli_shows_a_bar_on_a_terminal_log_lines_elsewhere_nothing_when_quiet(
    tmp_path: Path,
) -> None:
    stdout, terminal = run_sample(tmp_path / "tty", terminal=True)
    assert json.loads(stdout)["processed"]  # stdout is the JSON summary alone
    assert "item 1/1 S2A_MSIL1C_20170216T102101" in terminal
    assert "\r" in terminal and "100%" in terminal and "published" in terminal

    stdout, log = run_sample(tmp_path / "log")
    assert json.loads(stdout)["processed"]
    lines = [x for x in log.splitlines() if "item 1/1 " in x]
    assert any("decode B" in x and "ETA" in x for x in lines)
    assert lines[-1].endswith(tuple(f"published in {n} s" for n in range(60)))
    assert "\r" not in log

    stdout, quiet = run_sample(tmp_path / "quiet", "--quiet")
    assert json.loads(stdout)["processed"]
    assert quiet == ""
