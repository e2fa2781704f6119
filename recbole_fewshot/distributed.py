"""RecBole's distributed data parallel mode (torch.distributed) for plugin and built-in models.

RecBole's ``run(..., nproc=N)`` spawns ``recbole.quick_start.run_recboles``, a worker that never imports
this package, so plugin models and the few-shot split are unknown there. :func:`run_distributed` takes
the same arguments and spawns :func:`_worker` instead: unpickling it in the new process imports
``recbole_fewshot`` (patches applied, models registered) before RecBole resolves the model. One process
or several, each runs the shared pipeline (:func:`recbole_fewshot.pipeline.run_pipeline`). What RecBole
gets wrong in distributed mode (the backend, the checkpoint, the metrics) is fixed by the ``ddp_*``
patches of :mod:`recbole_fewshot.compat`, which act only in distributed mode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.multiprocessing as mp
from recbole.config import Config

from recbole_fewshot.pipeline import PipelineResult, run_pipeline


def run_distributed(
    model: str,
    dataset: str,
    config_file_list: Sequence[str] | None = None,
    config_dict: dict | None = None,
    saved: bool = True,
    nproc: int = 1,
    world_size: int = -1,
    ip: str = "localhost",
    port: str | int = "5678",
    group_offset: int = 0,
    backend: str | None = None,
) -> PipelineResult:
    """Train and test ``model`` on ``dataset`` with ``nproc`` processes on this machine, as RecBole's ``run``.

    ``world_size`` is the number of processes on all machines (default ``nproc``), ``ip:port`` the
    address of the machine running rank 0, ``group_offset`` the global rank of this machine's first
    process. ``backend`` is ``nccl`` or ``gloo`` (default: nccl when CUDA is there, else gloo; also the
    config key ``ddp_backend``). Returns the pipeline's result from this machine's first process.
    A ``fewshot:`` split is materialised here, once, before any worker starts.
    """
    config_file_list = list(config_file_list) if config_file_list else None
    if nproc == 1 and world_size <= 0:
        return run_pipeline(model, dataset, config_file_list, config_dict, saved=saved, log_run=True)
    config_dict = {
        **(config_dict or {}),
        "world_size": nproc if world_size == -1 else world_size,
        "ip": ip,
        "port": str(port),
        "nproc": nproc,
        "offset": group_offset,
    }
    if backend is not None:
        config_dict["ddp_backend"] = backend
    # One single-process Config first: it checks the configuration before any worker starts and materialises
    # a `fewshot:` split (under its file lock), which the workers then find in the cache.
    Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=dict(config_dict))
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(model, dataset, config_file_list, config_dict, saved, queue), nprocs=nproc, join=True)
    if queue.empty():
        raise RuntimeError("the first process of this machine returned no result")
    return queue.get()


def _worker(local_rank: int, model: str, dataset: str, config_file_list: list[str] | None, config_dict: dict,
            saved: bool, queue) -> None:
    """One process of :func:`run_distributed`: the pipeline with this process's ``local_rank``; the first
    process of the machine puts its result on ``queue``."""
    if "OMP_NUM_THREADS" not in os.environ:  # the machine's cores shared among its processes
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config_dict["nproc"]))
    result = run_pipeline(model, dataset, config_file_list, {**config_dict, "local_rank": local_rank}, saved=saved,
                          log_run=True)
    if local_rank == 0:
        queue.put(result)
