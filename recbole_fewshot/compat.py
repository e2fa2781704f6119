"""Every patch this package applies to RecBole 1.2.1 (and one to SciPy), in one place.

Each patch is named, says which RecBole line it works around, and is tested in
``tests/test_compat.py``. ``apply()`` is idempotent. Nothing else in the package patches anything.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextlib import contextmanager
from logging import getLogger

import recbole.config.configurator
import recbole.data
import recbole.data.dataset.dataset
import recbole.data.utils
import recbole.evaluator.collector
import recbole.quick_start
import recbole.quick_start.quick_start
import recbole.sampler.sampler
import recbole.trainer.trainer
import recbole.utils
import recbole.utils.logger
import recbole.utils.utils
import scipy.sparse
import torch
import torch.distributed
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from torch.nn.parallel import DistributedDataParallel

from recbole_fewshot import registry
from recbole_fewshot.checkpoint import load_checkpoint
from recbole_fewshot.data.dataloader import NewItemFullSortEvalDataLoader
from recbole_fewshot.data.fewshot_config import apply_fewshot_settings
from recbole_fewshot.data.split import read_manifest, summary_lines

PATCHED: dict[str, Callable] = {}  # patch name -> original callable, for tests and for idempotence


def _replace(name: str, owners: list, attribute: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``attribute`` on every owner (modules that imported it by name) with ``make(original)``.

    Replacements are marked, so a second copy of this module (a reload) keeps the installed patch
    and records its original from ``__wrapped__`` instead of wrapping a wrapper.
    """
    if name in PATCHED:
        return
    current = getattr(owners[0], attribute)
    if getattr(current, "__recbole_fewshot_patch__", None) == name:
        PATCHED[name] = current.__wrapped__
        return
    original = current
    replacement = functools.wraps(original)(make(original))
    replacement.__recbole_fewshot_patch__ = name
    for owner in owners:
        setattr(owner, attribute, replacement)
    PATCHED[name] = original


# --- unknown_model_error -------------------------------------------------------------------------
# recbole/utils/utils.py get_model: `importlib.util.find_spec(module_path, __name__)` for an unknown
# name reaches `recbole.model.exlib_recommender`, whose import fails with "No module named 'lightgbm'".
def _make_get_model(original: Callable) -> Callable:
    def get_model(model_name):
        if isinstance(model_name, str) and model_name not in registry.builtin_models() \
                and model_name not in registry.plugin_models():
            raise ValueError(
                f"`model_name` [{model_name}] is not the name of an existing model. "
                f"Plugin models: {', '.join(sorted(registry.plugin_models()))}. "
                f"Built-in models: {', '.join(registry.builtin_models())}."
            )
        return original(model_name)

    return get_model


# --- plugin_model_defaults -----------------------------------------------------------------------
# recbole/config/configurator.py _load_internal_config_dict reads model defaults only from
# `../properties/model/<model>.yaml` inside RecBole. Right after RecBole's overall.yaml is loaded
# (before the dataset yaml and every user input) the plugin's own model yaml is loaded, preceded for a
# model with a warm backbone by the shared properties/backbone.yaml, which keeps RecBole's precedence:
# overall < backbone < model < dataset < config files < config_dict < command line.
def _make_update_internal_config_dict(original: Callable) -> Callable:
    def _update_internal_config_dict(self, file):
        loaded = original(self, file)
        if file.replace("\\", "/").endswith("properties/overall.yaml"):
            for plugin_file in registry.model_config_files(self.model):
                original(self, str(plugin_file))
        return loaded

    return _update_internal_config_dict


# --- fewshot_config ------------------------------------------------------------------------------
# recbole/config/configurator.py _set_default_parameters joins data_path and the dataset name; before
# it runs, a `fewshot:` block is materialised into a split and a split's manifest supplies its defaults.
def _make_set_default_parameters(original: Callable) -> Callable:
    def _set_default_parameters(self):
        apply_fewshot_settings(self)
        return original(self)

    return _set_default_parameters


# --- safe_checkpoint_load ------------------------------------------------------------------------
# recbole/trainer/trainer.py Trainer.evaluate (`checkpoint = torch.load(checkpoint_file, ...)`),
# Trainer.resume_checkpoint and recbole/quick_start/quick_start.py load_data_and_model
# (`checkpoint = torch.load(model_file)`) load protocol-4 pickles holding a Config, which torch >= 2.6
# refuses under weights_only=True. Within these calls torch.load is the allow-listing loader of
# recbole_fewshot.checkpoint: RecBole's checkpoints load, crafted ones are refused.
@contextmanager
def _checkpoints_loaded_safely():
    previous = torch.load
    torch.load = load_checkpoint
    try:
        yield
    finally:
        torch.load = previous


def _make_safe_loading(original: Callable) -> Callable:
    def loading_safely(*args, **kwargs):
        with _checkpoints_loaded_safely():
            return original(*args, **kwargs)

    return loading_safely


# --- scipy_dok_update ----------------------------------------------------------------------------
# recbole/model/general_recommender/lightgcn.py get_norm_adj_mat: `A._update(data_dict)` (also NGCF,
# SpectralCF, GCMC, NCL, KGIN, MCCLK). SciPy >= 1.15 removed dok_matrix._update; its dict now lives in
# `_dict`, and `_update` was a plain dict.update of it.
def _apply_scipy_dok_update() -> None:
    if "scipy_dok_update" in PATCHED or hasattr(scipy.sparse.dok_matrix, "_update"):
        return

    def _update(self, data):
        self._dict.update(data)

    scipy.sparse.dok_matrix._update = _update
    PATCHED["scipy_dok_update"] = _update


# --- config_unpickle ------------------------------------------------------------------------------
# recbole/config/configurator.py Config.__init__ calls `self.compatibility_settings()`, which restores
# numpy's removed aliases (`np.float = np.float_`, ...); recbole/data/dataset/dataset.py _fill_nan reads
# `np.float` for every float_seq field. A Config unpickled from a checkpoint (load_data_and_model, or
# `create_dataset(torch.load(file)['config'])` as RecBole's docs show) skips __init__, so in a fresh
# process a dataset with a float_seq field (text embeddings) fails to load with "module 'numpy' has no
# attribute 'float'". Unpickling a Config now makes the same call as constructing one.
# It skips plugin_model_defaults too: a checkpoint saved before a plugin model gained a setting holds
# no value for it, and the model fails to build ("... got None"). Such settings take the value that
# keeps the behaviour the model had before the setting existed: the model class's
# ``SETTINGS_BEFORE_ADDED`` (for the shared backbone settings, trainer.backbone's) where its default
# changed that behaviour, else the model's current default.
def _fill_settings_added_since(config) -> None:
    """Give a plugin model's settings that ``config`` predates the values it was trained with."""
    final = config.final_config_dict
    model = final.get("model")
    paths = registry.model_config_files(model)
    if not paths:
        return
    defaults = config._load_config_files([str(path) for path in paths])  # RecBole's own reading of yaml files
    before = dict(getattr(registry.plugin_models()[model], "SETTINGS_BEFORE_ADDED", {}))
    if registry.has_backbone(model):
        from recbole_fewshot.trainer.backbone import SETTINGS_BEFORE_ADDED as backbone_before

        before = {**backbone_before, **before}
    missing = {key: before.get(key, value) for key, value in defaults.items() if key not in final}
    if missing:
        final.update(missing)
        names = ", ".join(path.name for path in paths)
        getLogger().warning(f"the checkpoint's config predates {', '.join(sorted(missing))}; "
                            f"using the values it was trained with (the defaults of {names} where unchanged)")


def _apply_config_unpickle() -> None:
    name = "config_unpickle"
    config_class = recbole.config.configurator.Config
    if name in PATCHED or getattr(config_class.__dict__.get("__setstate__"), "__recbole_fewshot_patch__", None) == name:
        PATCHED[name] = config_class.__setstate__
        return

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.compatibility_settings()
        _fill_settings_added_since(self)

    __setstate__.__recbole_fewshot_patch__ = name
    config_class.__setstate__ = __setstate__
    PATCHED[name] = __setstate__


# --- new_item_candidates -------------------------------------------------------------------------
# recbole/data/utils.py get_dataloader returns FullSortEvalDataLoader for full-sort valid/test; on a
# few-shot split with `fewshot_candidates: new` the evaluation ranks only the phase's new items.
# The training-phase call also logs the split summary (the logger is ready by then).
def _make_get_dataloader(original: Callable) -> Callable:
    def get_dataloader(config, phase):
        loader = original(config, phase)
        if not config["fewshot_manifest"]:
            return loader
        if phase == "train":
            for line in summary_lines(read_manifest(config["fewshot_manifest"])):
                getLogger().info(line)
            return loader
        if config["fewshot_candidates"] != "new":
            return loader
        if loader is NegSampleEvalDataLoader:
            raise ValueError(
                "fewshot_candidates 'new' ranks all new items of a phase and needs full-sort evaluation: "
                "set eval_args.mode to 'full', or set fewshot_candidates: all"
            )
        if loader is FullSortEvalDataLoader:
            return functools.partial(NewItemFullSortEvalDataLoader, phase="test" if phase == "evaluation" else phase)
        return loader

    return get_dataloader


# --- training_popularity_only --------------------------------------------------------------------
# recbole/sampler/sampler.py Sampler._get_candidates_list counts items over *all* phases' interactions
# for popularity negative sampling, so training negatives would follow the new items' query counts.
# RepeatableSampler._get_candidates_list (repeatable: True) counts the whole dataset likewise.
# On a few-shot split, popularity comes from the training phase alone.
def _make_get_candidates_list(original: Callable) -> Callable:
    def _get_candidates_list(self):
        train = self.datasets[0]
        if train.config["fewshot_manifest"]:
            return list(train.inter_feat[self.iid_field].numpy())
        return original(self)

    return _get_candidates_list


def _make_repeatable_get_candidates_list(original: Callable) -> Callable:
    def _get_candidates_list(self):
        if self.dataset.config["fewshot_manifest"]:
            train_rows = self.dataset.file_size_list[0]  # benchmark files load train, valid, test in order
            return list(self.dataset.inter_feat[self.iid_field][:train_rows].numpy())
        return original(self)

    return _get_candidates_list


# --- collector_non_tensor_data ------------------------------------------------------------------
# recbole/evaluator/collector.py Collector.get_data_struct: `self.data_struct._data_dict[key].cpu()`
# for every entry, but data_collect stores `data.num_items` / `data.num_users` as ints, so every
# metric that needs them (ItemCoverage, ...) fails with "'int' object has no attribute 'cpu'"; the
# Counters of data.count_items / count_users (AveragePopularity, TailPercentage) likewise. Entries
# without .cpu() are passed through untouched.
def _make_get_data_struct(original: Callable) -> Callable:
    def get_data_struct(self):
        data = self.data_struct._data_dict
        plain = {key: value for key, value in data.items() if not hasattr(value, "cpu")}
        for key in plain:
            del data[key]
        try:
            returned = original(self)
        finally:
            data.update(plain)
        returned._data_dict.update(plain)
        return returned

    return get_data_struct


# --- ensure_dir_race -----------------------------------------------------------------------------
# recbole/utils/utils.py ensure_dir: `if not os.path.exists(dir_path): os.makedirs(dir_path)`. Processes
# starting together (distributed ranks creating init_logger's `log/<model>` or the trainer's
# checkpoint_dir, parallel benchmark cells) race between the check and the creation, and the loser
# fails with FileExistsError.
def _make_ensure_dir(original: Callable) -> Callable:
    def ensure_dir(dir_path):
        os.makedirs(dir_path, exist_ok=True)

    return ensure_dir


# --- ddp_backend ---------------------------------------------------------------------------------
# recbole/config/configurator.py Config._init_device, in distributed mode (`local_rank` set):
# `torch.distributed.init_process_group(backend="nccl", ...)` then `torch.device("cuda", local_rank)`
# and `torch.cuda.set_device(local_rank)`, so a machine without GPUs cannot run it at all. The backend
# is `ddp_backend` (default: nccl when CUDA is there and gpu_id names a GPU, else gloo). nccl keeps
# RecBole's own code; gloo initialises the same process group with the device cuda:<local_rank> when
# CUDA is there, else cpu.
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
# recbole/trainer/trainer.py AbstractTrainer.__init__: `torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)`
# and `DistributedDataParallel(self.model, device_ids=[config["local_rank"]])`. torch refuses device_ids
# for a CPU module, and SyncBatchNorm trains on GPUs only, so a CPU model is wrapped as it is (its
# BatchNorm statistics stay per process).
def _make_trainer_init(original: Callable) -> Callable:
    def __init__(self, config, model):
        if config["single_spec"] or config["device"].type != "cpu":
            return original(self, config, model)
        self.config = config
        self.model = model
        self.distributed_model = DistributedDataParallel(model)

    return __init__


# --- ddp_shared_checkpoint -----------------------------------------------------------------------
# recbole/trainer/trainer.py Trainer.__init__ names the checkpoint
# `"{}-{}.pth".format(self.config["model"], get_local_time())` in every process, _save_checkpoint
# writes it on rank 0 only (`if not self.config["single_spec"] and self.config["local_rank"] != 0:
# return`), and evaluate reloads `model_file or self.saved_model_file`, each rank its own name, with no
# barrier. Every rank now takes rank 0's name, and returns once rank 0 has written the file.
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
# recbole/data/dataloader/abstract_dataloader.py AbstractDataLoader.__init__:
# `DistributedSampler(list(range(self.sample_size)), shuffle=shuffle, drop_last=False)` pads every rank
# to the same length by repeating the first samples, so evaluation counted some users twice; and
# recbole/trainer/trainer.py Trainer.evaluate averages each rank's metrics in `_map_reduce(result,
# num_sample)`, weighted by `num_sample += len(batched_data)`: 4 per batch (the batch tuple's length),
# not per user. Instead an evaluation loader gives every sample to exactly one rank (`:sampler`), the
# collector gathers every rank's per-sample rows in `model_collect` (a no-op in RecBole, called right
# before get_data_struct) back into the single-process order (`:gather`), so every rank evaluates the
# union exactly as one process would, and `_map_reduce` has nothing left to average (`:reduce`).
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


def apply() -> None:
    """Apply every patch once."""
    _replace(
        "unknown_model_error",
        [recbole.utils.utils, recbole.utils, recbole.config.configurator, recbole.quick_start.quick_start],
        "get_model",
        _make_get_model,
    )
    _replace("plugin_model_defaults", [recbole.config.configurator.Config], "_update_internal_config_dict",
             _make_update_internal_config_dict)
    _replace("fewshot_config", [recbole.config.configurator.Config], "_set_default_parameters",
             _make_set_default_parameters)
    _replace("safe_checkpoint_load:evaluate", [recbole.trainer.trainer.Trainer], "evaluate", _make_safe_loading)
    _replace("safe_checkpoint_load:resume", [recbole.trainer.trainer.Trainer], "resume_checkpoint", _make_safe_loading)
    _replace("safe_checkpoint_load:quick_start", [recbole.quick_start.quick_start, recbole.quick_start],
             "load_data_and_model", _make_safe_loading)
    _apply_scipy_dok_update()
    _apply_config_unpickle()
    _replace("new_item_candidates", [recbole.data.utils, recbole.data], "get_dataloader", _make_get_dataloader)
    _replace("collector_non_tensor_data", [recbole.evaluator.collector.Collector], "get_data_struct",
             _make_get_data_struct)
    _replace("training_popularity_only", [recbole.sampler.sampler.Sampler], "_get_candidates_list",
             _make_get_candidates_list)
    _replace("training_popularity_only:repeatable", [recbole.sampler.sampler.RepeatableSampler],
             "_get_candidates_list", _make_repeatable_get_candidates_list)
    _replace("ensure_dir_race", [recbole.utils.utils, recbole.utils, recbole.utils.logger, recbole.trainer.trainer,
                                 recbole.data.utils, recbole.data.dataset.dataset], "ensure_dir", _make_ensure_dir)
    _replace("ddp_backend", [recbole.config.configurator.Config], "_init_device", _make_init_device)
    _replace("ddp_cpu_module", [recbole.trainer.trainer.AbstractTrainer], "__init__", _make_trainer_init)
    _replace("ddp_shared_checkpoint", [recbole.trainer.trainer.Trainer], "_save_checkpoint", _make_save_checkpoint)
    _replace("ddp_exact_metrics:sampler", [AbstractDataLoader], "__init__", _make_dataloader_init)
    _replace("ddp_exact_metrics:gather", [recbole.evaluator.collector.Collector], "model_collect", _make_model_collect)
    _replace("ddp_exact_metrics:reduce", [recbole.trainer.trainer.Trainer], "_map_reduce", _make_map_reduce)
