"""Fixes of RecBole 1.2.1 bugs, and of its breakage under newer torch and SciPy."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from logging import getLogger

import recbole.config.configurator
import recbole.data.dataset.dataset
import recbole.data.utils
import recbole.evaluator.collector
import recbole.quick_start
import recbole.quick_start.quick_start
import recbole.trainer.trainer
import recbole.utils
import recbole.utils.logger
import recbole.utils.utils
import scipy.sparse
import torch

from recbole_fewshot import registry
from recbole_fewshot.checkpoint import load_checkpoint
from recbole_fewshot.compat._patching import PATCHED, replace


# --- safe_checkpoint_load ------------------------------------------------------------------------
def safe_checkpoint_load() -> None:
    """recbole/trainer/trainer.py Trainer.evaluate (`checkpoint = torch.load(checkpoint_file, ...)`),
    Trainer.resume_checkpoint and recbole/quick_start/quick_start.py load_data_and_model
    (`checkpoint = torch.load(model_file)`) load protocol-4 pickles holding a Config, which torch >= 2.6
    refuses under weights_only=True. Within these calls torch.load is the allow-listing loader of
    recbole_fewshot.checkpoint: RecBole's checkpoints load, crafted ones are refused.
    """
    replace("safe_checkpoint_load:evaluate", [recbole.trainer.trainer.Trainer], "evaluate", _make_safe_loading)
    replace("safe_checkpoint_load:resume", [recbole.trainer.trainer.Trainer], "resume_checkpoint", _make_safe_loading)
    replace("safe_checkpoint_load:quick_start", [recbole.quick_start.quick_start, recbole.quick_start],
            "load_data_and_model", _make_safe_loading)


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
def scipy_dok_update() -> None:
    """recbole/model/general_recommender/lightgcn.py get_norm_adj_mat: `A._update(data_dict)` (also NGCF,
    SpectralCF, GCMC, NCL, KGIN, MCCLK). SciPy >= 1.15 removed dok_matrix._update; its dict now lives in
    `_dict`, and `_update` was a plain dict.update of it.
    """
    if "scipy_dok_update" in PATCHED or hasattr(scipy.sparse.dok_matrix, "_update"):
        return

    def _update(self, data):
        self._dict.update(data)

    scipy.sparse.dok_matrix._update = _update
    PATCHED["scipy_dok_update"] = _update


# --- config_unpickle ------------------------------------------------------------------------------
def config_unpickle() -> None:
    """recbole/config/configurator.py Config.__init__ calls `self.compatibility_settings()`, which restores
    numpy's removed aliases (`np.float = np.float_`, ...); recbole/data/dataset/dataset.py _fill_nan reads
    `np.float` for every float_seq field. A Config unpickled from a checkpoint (load_data_and_model, or
    `create_dataset(torch.load(file)['config'])` as RecBole's docs show) skips __init__, so in a fresh
    process a dataset with a float_seq field (text embeddings) fails to load with "module 'numpy' has no
    attribute 'float'". Unpickling a Config now makes the same call as constructing one.

    It skips plugin_model_defaults too: a checkpoint saved before a plugin model gained a setting holds
    no value for it, and the model fails to build ("... got None"). Such settings take the value that
    keeps the behaviour the model had before the setting existed: the model class's
    ``SETTINGS_BEFORE_ADDED`` (for the shared backbone settings, trainer.backbone's) where its default
    changed that behaviour, else the model's current default.
    """
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


# --- collector_non_tensor_data ------------------------------------------------------------------
def collector_non_tensor_data() -> None:
    """recbole/evaluator/collector.py Collector.get_data_struct: `self.data_struct._data_dict[key].cpu()`
    for every entry, but data_collect stores `data.num_items` / `data.num_users` as ints, so every
    metric that needs them (ItemCoverage, ...) fails with "'int' object has no attribute 'cpu'"; the
    Counters of data.count_items / count_users (AveragePopularity, TailPercentage) likewise. Entries
    without .cpu() are passed through untouched.
    """
    replace("collector_non_tensor_data", [recbole.evaluator.collector.Collector], "get_data_struct",
            _make_get_data_struct)


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
def ensure_dir_race() -> None:
    """recbole/utils/utils.py ensure_dir: `if not os.path.exists(dir_path): os.makedirs(dir_path)`. Processes
    starting together (distributed ranks creating init_logger's `log/<model>` or the trainer's
    checkpoint_dir, parallel benchmark cells) race between the check and the creation, and the loser
    fails with FileExistsError.
    """
    replace("ensure_dir_race", [recbole.utils.utils, recbole.utils, recbole.utils.logger, recbole.trainer.trainer,
                                recbole.data.utils, recbole.data.dataset.dataset], "ensure_dir", _make_ensure_dir)


def _make_ensure_dir(original: Callable) -> Callable:
    def ensure_dir(dir_path):
        os.makedirs(dir_path, exist_ok=True)

    return ensure_dir
