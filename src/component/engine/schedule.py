"""How many band jobs run at once, and jobs started one at a time as threads free up."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from component.core.settings import Settings

R = TypeVar("R")
Job = tuple[str, Callable[[], R]]


def workers(settings: Settings) -> int:
    """Band jobs at once: one more than the cores (one job waits on I/O), within the S3
    connection budget (each decoding job holds one connection)."""
    return max(1, min(settings.max_connections, (os.cpu_count() or 1) + 1))


def run_jobs(
    queue: deque[Job[R]],
    threads: int,
    on_done: Callable[[str, R], None],
    name: str = "band",
) -> None:
    """Run the named jobs of *queue* on *threads* threads, started in queue order as threads
    free up; ``on_done(name, result)`` runs in the calling thread after each and may put new
    jobs into *queue* (at its front to run next). The first failing job stops the others
    and its error is raised."""
    with ThreadPoolExecutor(threads, name) as pool:
        running: dict[Future[R], str] = {}

        def start() -> None:
            while queue and len(running) < threads:
                job_name, job = queue.popleft()
                running[pool.submit(job)] = job_name

        try:
            start()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done(running.pop(future), future.result())
                start()
        except BaseException:
            queue.clear()
            for future in running:
                future.cancel()
            raise
