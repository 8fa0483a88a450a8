"""Progress of a run, for the person or the log watching it.

A full 10 m tile takes minutes. On a terminal a bar per item (tqdm) shows the stage, the work
done and an ETA; where stderr is not a terminal (DeltaTwin and cron logs), a plain log line
says the same every ``COMPONENT_PROGRESS_INTERVAL_S`` seconds (default 10) and when an item
ends, so a log is not flooded with carriage returns. ``--quiet`` turns both off. Progress
goes to stderr: stdout carries only the JSON run summary.

Work is counted in units the pipeline knows in advance: strips decoded (every band, 1024 rows
each) and band rasters written. Counting is thread-safe: the decode and band jobs run in
thread pools.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any

log = logging.getLogger("component")

MODES = ("auto", "bar", "log", "off")
DEFAULT_INTERVAL_S = 10.0


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class ItemProgress:
    """One item's work: *total* units, advanced by the jobs, shown per the run's mode."""

    def __init__(self, owner: Progress, label: str, total: int) -> None:
        self._owner = owner
        self.label = label
        self.total = max(1, total)
        self.done = 0
        self.stage = ""
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_line = self._start
        self._bar: Any = None
        self._closed = False
        if owner.mode == "bar":
            from tqdm import tqdm  # only on a terminal: the import is not free

            self._bar = tqdm(
                total=self.total,
                desc=label,
                unit="step",
                file=owner.stream,
                dynamic_ncols=True,
                mininterval=0.5,
                leave=True,
            )

    def advance(self, units: int = 1, stage: str | None = None) -> None:
        """*units* more done; *stage* names what is being done now (decode, correct...)."""
        with self._lock:
            self.done = min(self.total, self.done + units)
            if stage is not None:
                self.stage = stage
            if self._bar is not None:
                if stage is not None:
                    self._bar.set_postfix_str(stage, refresh=False)
                self._bar.update(units)
            elif self._owner.mode == "log":
                now = time.monotonic()
                if now - self._last_line >= self._owner.interval_s:
                    self._last_line = now
                    log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``label: stage, done/total (pct), elapsed, ETA`` as the log shows it."""
        elapsed = (now if now is not None else time.monotonic()) - self._start
        fraction = self.done / self.total
        eta = elapsed / fraction - elapsed if fraction > 0 else float("nan")
        stage = f"{self.stage}, " if self.stage else ""
        eta_text = format_seconds(eta) if fraction > 0 else "unknown"
        return (
            f"{self.label}: {stage}{self.done}/{self.total} steps ({100 * fraction:.0f} %), "
            f"{format_seconds(elapsed)} elapsed, ETA {eta_text}"
        )

    def close(self, status: str = "done") -> None:
        """The item ended (*status*: done, failed, skipped...): the bar closes, the log says so.

        Only the first call counts, so a caller can close with its own status inside a
        ``with`` block whose exit would otherwise say done (or failed).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.set_postfix_str(status, refresh=False)
                self._bar.close()
                self._bar = None
            elif self._owner.mode == "log":
                elapsed = time.monotonic() - self._start
                log.info("%s: %s in %s", self.label, status, format_seconds(elapsed))

    def __enter__(self) -> ItemProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close("failed" if kind is not None else "done")


class Progress:
    """The run's progress display: ``bar`` (tqdm), ``log`` (periodic lines) or ``off``.

    ``auto`` picks ``bar`` when *stream* is a terminal and ``log`` otherwise.
    """

    def __init__(
        self, mode: str = "auto", stream: IO[str] | None = None, interval: float | None = None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r} is not one of {MODES}")
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "log"
        self.mode = mode
        self.interval_s = DEFAULT_INTERVAL_S if interval is None else interval

    def item(self, index: int, count: int, name: str, total: int) -> ItemProgress:
        """Progress of item *index* (1-based) of *count*."""
        return ItemProgress(self, f"item {index}/{count} {name}", total)


OFF = Progress("off")
"""The display that shows nothing (library use, ``--quiet``)."""
