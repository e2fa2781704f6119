"""The plugin's own hooks into RecBole: plugin models and their defaults, the few-shot split's settings,
data loaders and popularity."""

from __future__ import annotations

import functools
from collections.abc import Callable
from logging import getLogger

import recbole.config.configurator
import recbole.data
import recbole.data.utils
import recbole.quick_start.quick_start
import recbole.sampler.sampler
import recbole.utils
import recbole.utils.utils
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader, TrainDataLoader

from recbole_fewshot import registry
from recbole_fewshot.compat._patching import replace
from recbole_fewshot.data.dataloader import IdOnlyTrainDataLoader, NewItemFullSortEvalDataLoader
from recbole_fewshot.data.fewshot_config import apply_fewshot_settings
from recbole_fewshot.data.split import read_manifest, summary_lines


# --- unknown_model_error -------------------------------------------------------------------------
def unknown_model_error() -> None:
    """recbole/utils/utils.py get_model: `importlib.util.find_spec(module_path, __name__)` for an unknown
    name reaches `recbole.model.exlib_recommender`, whose import fails with "No module named 'lightgbm'".
    """
    replace("unknown_model_error",
            [recbole.utils.utils, recbole.utils, recbole.config.configurator, recbole.quick_start.quick_start],
            "get_model", _make_get_model)


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
def plugin_model_defaults() -> None:
    """recbole/config/configurator.py _load_internal_config_dict reads model defaults only from
    `../properties/model/<model>.yaml` inside RecBole. Right after RecBole's overall.yaml is loaded
    (before the dataset yaml and every user input) the plugin's own model yaml is loaded, preceded for a
    model with a warm backbone by the shared properties/backbone.yaml, which keeps RecBole's precedence:
    overall < backbone < model < dataset < config files < config_dict < command line.
    """
    replace("plugin_model_defaults", [recbole.config.configurator.Config], "_update_internal_config_dict",
            _make_update_internal_config_dict)


def _make_update_internal_config_dict(original: Callable) -> Callable:
    def _update_internal_config_dict(self, file):
        loaded = original(self, file)
        if file.replace("\\", "/").endswith("properties/overall.yaml"):
            for plugin_file in registry.model_config_files(self.model):
                original(self, str(plugin_file))
        return loaded

    return _update_internal_config_dict


# --- fewshot_config ------------------------------------------------------------------------------
def fewshot_config() -> None:
    """recbole/config/configurator.py _set_default_parameters joins data_path and the dataset name; before
    it runs, a `fewshot:` block is materialised into a split and a split's manifest supplies its defaults.
    """
    replace("fewshot_config", [recbole.config.configurator.Config], "_set_default_parameters",
            _make_set_default_parameters)


def _make_set_default_parameters(original: Callable) -> Callable:
    def _set_default_parameters(self):
        apply_fewshot_settings(self)
        return original(self)

    return _set_default_parameters


# --- plugin_dataloaders --------------------------------------------------------------------------
def plugin_dataloaders() -> None:
    """recbole/data/utils.py get_dataloader returns FullSortEvalDataLoader for full-sort valid/test; on a
    few-shot split with `fewshot_candidates: new` the evaluation ranks only the phase's new items.
    For training it returns TrainDataLoader, whose `collate_fn` joins every user and item feature into each
    batch and its negatives (`self._dataset[index]`, `_neg_sample_by_pair_wise_sampling`); a plugin model
    that reads content from its own tables (`READS_BATCH_FEATURES = False`) gets IdOnlyTrainDataLoader,
    the same batches without the copies. The training-phase call also logs the split summary (the logger
    is ready by then).
    """
    replace("plugin_dataloaders", [recbole.data.utils, recbole.data], "get_dataloader", _make_get_dataloader)


def _make_get_dataloader(original: Callable) -> Callable:
    def get_dataloader(config, phase):
        loader = original(config, phase)
        if phase == "train" and loader is TrainDataLoader:
            model = registry.plugin_models().get(config["model"])
            if model is not None and not getattr(model, "READS_BATCH_FEATURES", True):
                loader = IdOnlyTrainDataLoader
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
def training_popularity_only() -> None:
    """recbole/sampler/sampler.py Sampler._get_candidates_list counts items over *all* phases' interactions
    for popularity negative sampling, so training negatives would follow the new items' query counts.
    RepeatableSampler._get_candidates_list (repeatable: True) counts the whole dataset likewise.
    On a few-shot split, popularity comes from the training phase alone.
    """
    replace("training_popularity_only", [recbole.sampler.sampler.Sampler], "_get_candidates_list",
            _make_get_candidates_list)
    replace("training_popularity_only:repeatable", [recbole.sampler.sampler.RepeatableSampler],
            "_get_candidates_list", _make_repeatable_get_candidates_list)


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
