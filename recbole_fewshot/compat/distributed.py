"""Fixes of RecBole 1.2.1's distributed (DDP) mode; each acts only when ``single_spec`` is false."""

from __future__ import annotations

import os
from collections.abc import Callable

import recbole.config.configurator
import recbole.evaluator.collector
import recbole.trainer.trainer
import torch
import torch.distributed
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from torch.nn.parallel import DistributedDataParallel

from recbole_fewshot.compat._patching import replace


# --- ddp_backend ---------------------------------------------------------------------------------
def ddp_backend() -> None:
    """recbole/config/configurator.py Config._init_device, in distributed mode (`local_rank` set):
    `torch.distributed.init_process_group(backend="nccl", ...)` then `torch.device("cuda", local_rank)`
    and `torch.cuda.set_device(local_rank)`, so a machine without GPUs cannot run it at all. The backend
    is `ddp_backend` (default: nccl when CUDA is there and gpu_id names a GPU, else gloo). nccl keeps
    RecBole's own code; gloo initialises the same process group with the device cuda:<local_rank> when
    CUDA is there, else cpu.
    """
    replace("ddp_backend", [recbole.config.configurator.Config], "_init_device", _make_init_device)


def _make_init_device(original: Callable) -> Callable:
    def _init_device(self):
        final = self.final_config_dict
        if "local_rank" not in final:
            return original(self)
        gpu_id = final["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
        final["gpu_id"] = gpu_id
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id  # as RecBole, before CUDA is first asked
        cuda = len(gpu_id) > 0 and torch.cuda.is_available()
        backend = final.get("ddp_backend") or ("nccl" if cuda else "gloo")
        if backend == "nccl":
            if not cuda:
                raise ValueError("ddp_backend 'nccl' needs CUDA GPUs; set ddp_backend: gloo to run on CPU")
            if len(gpu_id.split(",")) < final["nproc"]:  # RecBole's own check is a bare assert
                raise ValueError(f"gpu_id {gpu_id!r} names fewer GPUs than nproc={final['nproc']}: "
                                 f"set gpu_id to e.g. '{','.join(map(str, range(final['nproc'])))}'")
            return original(self)
        local_rank = final["local_rank"]
        if cuda:
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(
            backend=backend, rank=local_rank + final["offset"], world_size=final["world_size"],
            init_method=f"tcp://{final['ip']}:{final['port']}",
        )
        final["device"] = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        final["single_spec"] = False
        if local_rank != 0:  # as RecBole: only the first process of a machine logs
            final.update(state="error", show_progress=False, verbose=False)

    return _init_device


# --- ddp_cpu_module ------------------------------------------------------------------------------
def ddp_cpu_module() -> None:
    """recbole/trainer/trainer.py AbstractTrainer.__init__: `torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)`
    and `DistributedDataParallel(self.model, device_ids=[config["local_rank"]])`. torch refuses device_ids
    for a CPU module, and SyncBatchNorm trains on GPUs only, so a CPU model is wrapped as it is (its
    BatchNorm statistics stay per process).
    """
    replace("ddp_cpu_module", [recbole.trainer.trainer.AbstractTrainer], "__init__", _make_trainer_init)


def _make_trainer_init(original: Callable) -> Callable:
    def __init__(self, config, model):
        if config["single_spec"] or config["device"].type != "cpu":
            return original(self, config, model)
        self.config = config
        self.model = model
        self.distributed_model = DistributedDataParallel(model)

    return __init__


# --- ddp_shared_checkpoint -----------------------------------------------------------------------
def ddp_shared_checkpoint() -> None:
    """recbole/trainer/trainer.py Trainer.__init__ names the checkpoint
    `"{}-{}.pth".format(self.config["model"], get_local_time())` in every process, _save_checkpoint
    writes it on rank 0 only (`if not self.config["single_spec"] and self.config["local_rank"] != 0:
    return`), and evaluate reloads `model_file or self.saved_model_file`, each rank its own name, with no
    barrier. Every rank now takes rank 0's name, and returns once rank 0 has written the file.
    """
    replace("ddp_shared_checkpoint", [recbole.trainer.trainer.Trainer], "_save_checkpoint", _make_save_checkpoint)


def _make_save_checkpoint(original: Callable) -> Callable:
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if self.config["single_spec"]:
            return original(self, epoch, verbose=verbose, **kwargs)
        name = [self.saved_model_file]
        torch.distributed.broadcast_object_list(name, src=0)
        self.saved_model_file = name[0]
        original(self, epoch, verbose=verbose, **kwargs)
        torch.distributed.barrier()

    return _save_checkpoint


# --- ddp_exact_metrics ---------------------------------------------------------------------------
def ddp_exact_metrics() -> None:
    """recbole/data/dataloader/abstract_dataloader.py AbstractDataLoader.__init__:
    `DistributedSampler(list(range(self.sample_size)), shuffle=shuffle, drop_last=False)` pads every rank
    to the same length by repeating the first samples, so evaluation counted some users twice; and
    recbole/trainer/trainer.py Trainer.evaluate averages each rank's metrics in `_map_reduce(result,
    num_sample)`, weighted by `num_sample += len(batched_data)`: 4 per batch (the batch tuple's length),
    not per user. Instead an evaluation loader gives every sample to exactly one rank (`:sampler`), the
    collector gathers every rank's per-sample rows in `model_collect` (a no-op in RecBole, called right
    before get_data_struct) back into the single-process order (`:gather`), so every rank evaluates the
    union exactly as one process would, and `_map_reduce` has nothing left to average (`:reduce`).
    """
    replace("ddp_exact_metrics:sampler", [AbstractDataLoader], "__init__", _make_dataloader_init)
    replace("ddp_exact_metrics:gather", [recbole.evaluator.collector.Collector], "model_collect", _make_model_collect)
    replace("ddp_exact_metrics:reduce", [recbole.trainer.trainer.Trainer], "_map_reduce", _make_map_reduce)


PER_SAMPLE_KEYS = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")


def unpad_sampler(sampler: torch.utils.data.distributed.DistributedSampler) -> None:
    """Make ``sampler`` yield samples rank, rank + W, ... of the unpadded list (each sample on one rank)."""
    size = len(sampler.dataset)
    if 0 < size < sampler.num_replicas:  # a rank without samples would skip evaluate's collective calls
        raise ValueError(f"{size} evaluation samples cannot be shared by {sampler.num_replicas} processes "
                         "without repeating some: use fewer processes")
    sampler.total_size = size
    sampler.num_samples = len(range(sampler.rank, size, sampler.num_replicas))


def merge_shards(shards: list[torch.Tensor]) -> torch.Tensor:
    """Every rank's rows in one tensor: interleaved back into the single-process order when each rank
    holds one row per sample (rank r: samples r, r + W, ...), else concatenated (the same union)."""
    total, world = sum(len(shard) for shard in shards), len(shards)
    if any(len(shard) != len(range(rank, total, world)) for rank, shard in enumerate(shards)):
        return torch.cat(shards)
    merged = shards[0].new_empty((total, *shards[0].shape[1:]))
    for rank, shard in enumerate(shards):
        merged[rank::world] = shard
    return merged


def _make_dataloader_init(original: Callable) -> Callable:
    def __init__(self, config, dataset, sampler, shuffle=False):
        original(self, config, dataset, sampler, shuffle=shuffle)
        if not config["single_spec"] and isinstance(self, (FullSortEvalDataLoader, NegSampleEvalDataLoader)):
            unpad_sampler(self.sampler)

    return __init__


def _make_model_collect(original: Callable) -> Callable:
    def model_collect(self, model):
        original(self, model)
        if self.config["single_spec"]:
            return
        data = self.data_struct._data_dict
        local = {key: data[key].cpu() for key in PER_SAMPLE_KEYS if key in data}
        gathered = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, local)
        for key in {key for shard in gathered for key in shard}:
            template = next(shard[key] for shard in gathered if key in shard)
            data[key] = merge_shards([shard.get(key, template[:0]) for shard in gathered])

    return model_collect


def _make_map_reduce(original: Callable) -> Callable:
    def _map_reduce(self, result, num_sample):
        return result  # already computed on every rank's samples by model_collect

    return _map_reduce
