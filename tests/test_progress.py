"""The progress display: a bar on a terminal, periodic log lines elsewhere, nothing when off."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import struct
import termios
import threading

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
