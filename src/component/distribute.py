"""Many items at once on Dask distributed: a LocalCluster here, any cluster in production.

One task per input item: each worker loads the model once (cached per worker process) and
runs the same :func:`component.pipeline.process` as a single-item run, publishing into the
output folder, while the calling process holds the folder's lock and rebuilds the catalog as
results arrive. A production backlog therefore spreads over a cluster by naming its
scheduler (``--dask-scheduler tcp://host:8786``) without code changes; the output folder
must then be a filesystem every worker shares, and the workers need the same CDSE S3 keys
in their environment (secrets are never shipped inside tasks).

On a LocalCluster the cores are split between workers: each worker runs one item with
``cores // workers`` threads for the network, which keeps the machine busy without
oversubscribing it; and CDSE's limit of 4 connections per user is split between them too
(at most 4 workers, each reading with ``4 // workers`` connections). On a remote cluster set
``COMPONENT_MAX_CONNECTIONS`` in the workers' environment to each one's share.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from component.params import RunParams
    from component.pipeline import ItemResult, Model
    from component.search import InputItem

log = logging.getLogger(__name__)

_models: dict[tuple[object, ...], Model] = {}
"""Per worker process: loading weights and building a session once, not once per item."""


def _worker_model(params: RunParams, threads: int | None) -> Model:
    from component.pipeline import load_model

    key = (params.weights, params.device, params.engine, os.environ.get("COMPONENT_MODELS_DIR"))
    if key not in _models:
        if threads:
            import torch

            torch.set_num_threads(threads)
            os.environ["COMPONENT_ENGINE_THREADS"] = str(threads)
        _models[key] = load_model(params)
    return _models[key]


def process_on_worker(source: InputItem, params: RunParams, threads: int | None) -> ItemResult:
    """The task: one item, processed and published exactly as in a single-item run."""
    from component.pipeline import process

    return process(source, _worker_model(params, threads), params)


def process_many(
    inputs: list[InputItem],
    params: RunParams,
    on_result: Callable[[InputItem, ItemResult | BaseException], None],
) -> None:
    """Process *inputs* on the scheduler in *params* (or a new LocalCluster)."""
    from dask.distributed import Client, LocalCluster, as_completed

    from component.errors import InvalidParameterError
    from component.load import MAX_CONNECTIONS_ENV, max_connections

    cluster = None
    if params.dask_scheduler:
        try:
            client = Client(params.dask_scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise InvalidParameterError(
                f"cannot reach the Dask scheduler {params.dask_scheduler} ({error}): check "
                "--dask-scheduler"
            ) from None
        threads = None
    else:
        cores = os.cpu_count() or 1
        budget = max_connections()
        # CDSE allows 4 connections per user: never more workers than the budget, and each
        # worker reads with its share of it (COMPONENT_MAX_CONNECTIONS in its environment).
        workers = max(1, min(len(inputs), cores, budget))
        threads = max(1, cores // workers)
        os.environ[MAX_CONNECTIONS_ENV] = str(max(1, budget // workers))
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
        client = Client(cluster)
        log.info("processing %d items on a LocalCluster of %d workers", len(inputs), workers)
    try:
        futures = {
            client.submit(
                process_on_worker, source, params, threads, key=f"l2a-{source.id}", pure=False
            ): source
            for source in inputs
        }
        for future in as_completed(futures):
            source = futures[future]
            try:
                outcome: ItemResult | BaseException = future.result()
            except Exception as error:  # a worker that died or raised outside process()
                outcome = error
            on_result(source, outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
