"""Many items at once on Dask distributed: a LocalCluster here, any cluster in production.

One task per input item: the pipeline hands in its per-item task (which loads the model once
per worker process and runs the same processing as a single-item run, publishing into the
output folder), while the calling process holds the folder's lock and rebuilds the catalog as
results arrive. A production backlog therefore spreads over a cluster by naming its
scheduler (``--dask-scheduler tcp://host:8786``) without code changes; the output folder
must then be a filesystem every worker shares, and the workers need the same CDSE S3 keys
in their environment (secrets are never shipped inside tasks).

On a LocalCluster the cores are split between workers: each worker runs one item with
``cores // workers`` threads for the network, which keeps the machine busy without
oversubscribing it; and CDSE's limit of 4 connections per user is split between them too
(at most 4 workers, each reading with ``4 // workers`` connections). On a remote cluster set
``COMPONENT_MAX_CONNECTIONS`` (and the S3 keys) in the workers' environment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from component.io.search import InputItem
    from component.params import RunParams

Result = TypeVar("Result")
Task = Callable[["InputItem", "RunParams", "int | None", "int | None"], Result]
"""``task(source, params, threads, connections)``: one item on a worker, with its share of
the cores and of the connection budget (``None``: the worker's own settings). It must be
importable by name (a module-level function) so Dask can send it to worker processes; the
*params* it gets carry no S3 keys (:meth:`~component.core.settings.Settings.without_keys`)."""

log = logging.getLogger(__name__)


def process_many(
    inputs: list[InputItem],
    params: RunParams,
    task: Task[Result],
    on_result: Callable[[InputItem, Result | BaseException], None],
) -> None:
    """Run *task* on every input on the scheduler in *params* (or a new LocalCluster).

    The caller (the pipeline) supplies the task, so this module knows nothing of what one
    item's processing is and imports nothing of the pipeline.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    from component.errors import InvalidParameterError

    cluster = None
    if params.dask_scheduler:
        try:
            client = Client(params.dask_scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise InvalidParameterError(
                f"cannot reach the Dask scheduler {params.dask_scheduler} ({error}): check "
                "--dask-scheduler"
            ) from None
        threads = connections = None
    else:
        cores = os.cpu_count() or 1
        budget = params.settings.max_connections
        # CDSE allows 4 connections per user: never more workers than the budget, and each
        # worker reads with its share of it.
        workers = max(1, min(len(inputs), cores, budget))
        threads = max(1, cores // workers)
        connections = max(1, budget // workers)
        cluster = LocalCluster(
            # The keys reach the worker processes as their environment, never inside a task.
            env=params.settings.key_environment(),
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
        client = Client(cluster)
        log.info("processing %d items on a LocalCluster of %d workers", len(inputs), workers)
    shipped = dataclasses.replace(params, settings=params.settings.without_keys())
    try:
        futures = {
            client.submit(
                task, source, shipped, threads, connections, key=f"l2a-{source.id}", pure=False
            ): source
            for source in inputs
        }
        for future in as_completed(futures):
            source = futures[future]
            try:
                outcome: Result | BaseException = future.result()
            except Exception as error:  # a worker that died or raised outside process()
                outcome = error
            on_result(source, outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
