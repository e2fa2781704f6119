"""Every patch this package applies to RecBole 1.2.1 (and one to SciPy), in one place.

Each patch is named, says which RecBole line it works around, and is tested in
``tests/test_compat.py``. ``apply()`` is idempotent. Nothing else in the package patches anything.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import contextmanager
from logging import getLogger

import recbole.config.configurator
import recbole.data
import recbole.data.utils
import recbole.evaluator.collector
import recbole.quick_start
import recbole.quick_start.quick_start
import recbole.sampler.sampler
import recbole.trainer.trainer
import recbole.utils
import recbole.utils.utils
import scipy.sparse
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader

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
# (before the dataset yaml and every user input) the plugin's own model yaml is loaded, which keeps
# RecBole's precedence: overall < model < dataset < config files < config_dict < command line.
def _make_update_internal_config_dict(original: Callable) -> Callable:
    def _update_internal_config_dict(self, file):
        loaded = original(self, file)
        if file.replace("\\", "/").endswith("properties/overall.yaml"):
            plugin_file = registry.model_config_file(self.model)
            if plugin_file is not None:
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
    _replace("new_item_candidates", [recbole.data.utils, recbole.data], "get_dataloader", _make_get_dataloader)
    _replace("collector_non_tensor_data", [recbole.evaluator.collector.Collector], "get_data_struct",
             _make_get_data_struct)
    _replace("training_popularity_only", [recbole.sampler.sampler.Sampler], "_get_candidates_list",
             _make_get_candidates_list)
    _replace("training_popularity_only:repeatable", [recbole.sampler.sampler.RepeatableSampler],
             "_get_candidates_list", _make_repeatable_get_candidates_list)
