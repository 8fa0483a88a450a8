"""The one way work runs in the background: a function in a thread of its own, as a future."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_background(function: Callable[..., T], *args: object, name: str = "background") -> Future[T]:
    """*function(\\*args)* started now in a thread of its own; its result (or its exception)
    comes from the future. Not a ``with`` block: leaving one would wait for it. For work
    needed later in the run (the angle grids, the model's session, the cloud detector),
    overlapping the decode instead of preceding it."""
    pool = ThreadPoolExecutor(1, name)
    future = pool.submit(function, *args)
    pool.shutdown(wait=False)
    return future
