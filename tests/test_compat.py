"""Every patch in recbole_fewshot.compat: installed once, on every owner, doing what it says."""

from __future__ import annotations

import functools
import logging
import math
import os
from collections import Counter

import numpy as np
import pytest
import recbole
import recbole.config.configurator
import recbole.data
import recbole.data.utils
import recbole.evaluator.collector
import recbole.quick_start
import recbole.quick_start.quick_start
import recbole.sampler.sampler
import recbole.utils
import recbole.utils.utils
import scipy.sparse
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader, TrainDataLoader
from recbole.trainer import Trainer

from conftest import build_pipeline, build_trainer
from recbole_fewshot import compat
from recbole_fewshot.data.dataloader import NewItemFullSortEvalDataLoader
from recbole_fewshot.data.split import read_manifest, summary_lines

EXPECTED_PATCHES = {
    "unknown_model_error", "plugin_model_defaults", "fewshot_config", "safe_checkpoint_load:evaluate",
    "safe_checkpoint_load:resume", "safe_checkpoint_load:quick_start", "scipy_dok_update",
    "new_item_candidates", "training_popularity_only", "training_popularity_only:repeatable",
    "collector_non_tensor_data",
}
OWNERS = {
    "unknown_model_error": ([recbole.utils.utils, recbole.utils, recbole.config.configurator,
                             recbole.quick_start.quick_start], "get_model"),
    "plugin_model_defaults": ([recbole.config.configurator.Config], "_update_internal_config_dict"),
    "fewshot_config": ([recbole.config.configurator.Config], "_set_default_parameters"),
    "safe_checkpoint_load:evaluate": ([Trainer], "evaluate"),
    "safe_checkpoint_load:resume": ([Trainer], "resume_checkpoint"),
    "safe_checkpoint_load:quick_start": ([recbole.quick_start.quick_start, recbole.quick_start],
                                         "load_data_and_model"),
    "new_item_candidates": ([recbole.data.utils, recbole.data], "get_dataloader"),
    "training_popularity_only": ([recbole.sampler.sampler.Sampler], "_get_candidates_list"),
    "training_popularity_only:repeatable": ([recbole.sampler.sampler.RepeatableSampler], "_get_candidates_list"),
    "collector_non_tensor_data": ([recbole.evaluator.collector.Collector], "get_data_struct"),
}


def test_the_patch_list():
    assert set(compat.PATCHED) == EXPECTED_PATCHES


@pytest.mark.parametrize("name", sorted(OWNERS))
def test_each_patch_is_installed_on_every_owner(name):
    owners, attribute = OWNERS[name]
    installed = [getattr(owner, attribute) for owner in owners]
    assert all(function is installed[0] for function in installed), "an owner kept the unpatched function"
    assert installed[0] is not compat.PATCHED[name]
    assert installed[0].__wrapped__ is compat.PATCHED[name]
    assert installed[0].__name__ == compat.PATCHED[name].__name__


def test_apply_is_idempotent():
    patched = dict(compat.PATCHED)
    installed = {name: getattr(owners[0], attribute) for name, (owners, attribute) in OWNERS.items()}
    compat.apply()
    compat.apply()
    assert compat.PATCHED == patched
    assert {name: getattr(owners[0], attribute) for name, (owners, attribute) in OWNERS.items()} == installed
    assert scipy.sparse.dok_matrix._update is compat.PATCHED["scipy_dok_update"]


# --- unknown_model_error -------------------------------------------------------------------------

def test_unknown_model_error_replaces_the_lightgbm_import_error():
    with pytest.raises(Exception) as unpatched:
        compat.PATCHED["unknown_model_error"]("NoSuchModel")
    with pytest.raises(ValueError) as patched:
        recbole.utils.get_model("NoSuchModel")
    assert "Built-in models" not in str(unpatched.value)  # RecBole's own: "No module named 'lightgbm'"
    assert "NoSuchModel" in str(patched.value) and "Built-in models" in str(patched.value)


def test_known_models_and_classes_pass_through():
    from recbole.model.general_recommender import BPR

    assert recbole.utils.get_model("BPR") is BPR
    assert compat.PATCHED["unknown_model_error"]("BPR") is BPR


# --- plugin_model_defaults -----------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
def test_plugin_yaml_is_loaded_right_after_overall_yaml(monkeypatch):
    from recbole_fewshot import registry

    loaded = []
    original = compat.PATCHED["plugin_model_defaults"]

    def record(self, file):
        loaded.append(os.path.realpath(file))
        return original(self, file)

    monkeypatch.setitem(compat.PATCHED, "plugin_model_defaults", record)  # not used by the wrapper
    wrapper = compat._make_update_internal_config_dict(record)
    monkeypatch.setattr(recbole.config.configurator.Config, "_update_internal_config_dict", wrapper)
    plugin = sorted(registry.plugin_models())[0]
    recbole.config.configurator.Config(model=plugin, dataset="ml-100k")
    recbole_properties = os.path.realpath(os.path.join(os.path.dirname(recbole.__file__), "properties"))
    assert loaded == [
        os.path.join(recbole_properties, "overall.yaml"),
        os.path.realpath(registry.PROPERTIES_DIR / f"{plugin}.yaml"),
        os.path.join(recbole_properties, "dataset", "sample.yaml"),
        os.path.join(recbole_properties, "dataset", "ml-100k.yaml"),
    ]


# --- fewshot_config ------------------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
def test_split_manifest_supplies_defaults(planted_k2):
    from recbole.config import Config

    name, data_path = planted_k2
    manifest_file = data_path / name / f"{name}.fewshot.json"
    manifest = read_manifest(manifest_file)
    config = Config(model="BPR", dataset=name, config_dict={"data_path": str(data_path)})
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert config["load_col"] == manifest["load_col"]
    assert config["fewshot_candidates"] == "new"
    assert config["normalize_all"] is False
    assert config["USER_ID_FIELD"] == "user_id" and config["TIME_FIELD"] == "timestamp"
    assert config["fewshot_manifest"] == str(manifest_file)


@pytest.mark.usefixtures("in_tmp")
def test_explicit_settings_win_over_the_manifest(planted_k2):
    from recbole.config import Config

    name, data_path = planted_k2
    config = Config(model="BPR", dataset=name, config_dict={
        "data_path": str(data_path), "fewshot_candidates": "all", "normalize_all": True,
        "load_col": {"inter": ["user_id", "item_id"]}})
    assert config["fewshot_candidates"] == "all"
    assert config["normalize_all"] is True
    assert config["load_col"] == {"inter": ["user_id", "item_id"]}


@pytest.mark.usefixtures("in_tmp")
def test_plain_datasets_are_untouched(planted_source):
    from recbole.config import Config

    config = Config(model="BPR", dataset="planted", config_dict={"data_path": str(planted_source)})
    assert config["fewshot_manifest"] is None
    assert config["benchmark_filename"] is None
    assert config["fewshot_candidates"] is None


# --- safe_checkpoint_load ------------------------------------------------------------------------

def test_safe_loading_routes_torch_load_and_restores_it(monkeypatch):
    seen = []

    def probe(*args, **kwargs):
        seen.append(torch.load)
        raise RuntimeError("boom")

    wrapped = compat._make_safe_loading(probe)
    original_load = torch.load
    with pytest.raises(RuntimeError, match="boom"):
        wrapped()
    assert seen == [compat.load_checkpoint]
    assert torch.load is original_load


# --- scipy_dok_update ----------------------------------------------------------------------------

def test_dok_update_behaves_like_dict_update():
    data = {(0, 1): 1.0, (2, 3): 2.5, (4, 0): 1.0}
    a = scipy.sparse.dok_matrix((5, 5), dtype=np.float32)
    a._update(data)
    b = scipy.sparse.dok_matrix((5, 5), dtype=np.float32)
    for key, value in data.items():
        b[key] = value
    assert a.nnz == 3
    assert (a.tocsr() != b.tocsr()).nnz == 0
    a._update({(0, 1): 7.0})
    assert a[0, 1] == 7.0 and a.nnz == 3


@pytest.mark.usefixtures("in_tmp")
def test_lightgcn_builds_its_normalised_adjacency(planted_k2, in_tmp):
    config, _, train_data, _, _ = build_pipeline("LightGCN", *planted_k2, in_tmp)
    trainer = build_trainer(config, train_data)
    adjacency = trainer.model.norm_adj_matrix.to_dense()
    n_users, n_items = trainer.model.n_users, trainer.model.n_items
    interactions = train_data._dataset.inter_matrix(form="coo")
    assert adjacency.shape == (n_users + n_items, n_users + n_items)
    assert torch.allclose(adjacency, adjacency.T)
    assert int((adjacency[:n_users, n_users:] > 0).sum()) == len(set(zip(interactions.row, interactions.col)))


# --- new_item_candidates -------------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
def test_dataloader_classes_on_a_split(planted_k2):
    from recbole.config import Config

    name, data_path = planted_k2
    get_dataloader = recbole.data.utils.get_dataloader
    config = Config(model="BPR", dataset=name, config_dict={"data_path": str(data_path)})
    assert get_dataloader(config, "train") is TrainDataLoader
    for phase in ("valid", "test"):
        loader = get_dataloader(config, phase)
        assert isinstance(loader, functools.partial) and loader.func is NewItemFullSortEvalDataLoader
        assert loader.keywords == {"phase": phase}
    config_all = Config(model="BPR", dataset=name,
                        config_dict={"data_path": str(data_path), "fewshot_candidates": "all"})
    assert get_dataloader(config_all, "test") is FullSortEvalDataLoader


@pytest.mark.usefixtures("in_tmp")
def test_dataloader_classes_on_a_plain_dataset(planted_source):
    from recbole.config import Config

    config = Config(model="BPR", dataset="planted", config_dict={"data_path": str(planted_source)})
    assert recbole.data.utils.get_dataloader(config, "test") is FullSortEvalDataLoader


@pytest.mark.usefixtures("in_tmp")
def test_sampled_evaluation_needs_candidates_all(planted_k2, in_tmp):
    eval_args = {"mode": "uni100", "order": "RO", "group_by": "user", "split": {"RS": [0.8, 0.1, 0.1]}}
    with pytest.raises(ValueError, match="fewshot_candidates"):
        build_pipeline("BPR", *planted_k2, in_tmp, eval_args=eval_args)
    *_, test_data = build_pipeline("BPR", *planted_k2, in_tmp, eval_args=eval_args, fewshot_candidates="all")
    assert isinstance(test_data, NegSampleEvalDataLoader)


@pytest.mark.usefixtures("in_tmp")
def test_training_dataloader_logs_the_split_summary(planted_k2, in_tmp, caplog):
    caplog.set_level(logging.INFO)
    name, data_path = planted_k2
    build_pipeline("BPR", name, data_path, in_tmp)
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    for line in summary_lines(manifest):
        assert line in caplog.messages


@pytest.mark.usefixtures("in_tmp")
def test_new_item_loader_masks_everything_but_the_phase_new_items(planted_k2, in_tmp):
    name, data_path = planted_k2
    config, dataset, _, valid_data, test_data = build_pipeline("BPR", name, data_path, in_tmp)
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    for loader, phase in ((valid_data, "valid"), (test_data, "test")):
        assert isinstance(loader, NewItemFullSortEvalDataLoader) and loader.phase == phase
        ids = set(dataset.token2id(dataset.iid_field, manifest[f"{phase}_new_items"]).tolist())
        assert set(loader.candidate_items.tolist()) == ids
        assert set(loader.excluded_items.tolist()) == set(range(dataset.item_num)) - ids
        assert 0 in set(loader.excluded_items.tolist())  # the padding id


# --- training_popularity_only --------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
def test_popularity_candidates_come_from_training_only(planted_k2, in_tmp):
    _, _, train_data, valid_data, test_data = build_pipeline(
        "BPR", *planted_k2, in_tmp, train_neg_sample_args={"distribution": "popularity", "sample_num": 1})
    sampler = train_data._sampler
    train_items = train_data._dataset.inter_feat["item_id"].numpy()
    query_items = np.concatenate([d._dataset.inter_feat["item_id"].numpy() for d in (valid_data, test_data)])
    patched = sampler._get_candidates_list()
    unpatched = compat.PATCHED["training_popularity_only"](sampler)
    assert Counter(patched) == Counter(train_items.tolist())
    assert Counter(unpatched) == Counter(train_items.tolist()) + Counter(query_items.tolist())  # what it fixes


@pytest.mark.usefixtures("in_tmp")
def test_popularity_candidates_on_a_plain_dataset_are_recboles(planted_source, in_tmp):
    _, _, train_data, _, _ = build_pipeline(
        "BPR", "planted", planted_source, in_tmp, train_neg_sample_args={"distribution": "popularity", "sample_num": 1})
    sampler = train_data._sampler
    assert Counter(sampler._get_candidates_list()) == Counter(compat.PATCHED["training_popularity_only"](sampler))


# --- collector_non_tensor_data ------------------------------------------------------------------



@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("metric", [
    "ItemCoverage",
    "GiniIndex",
    "AveragePopularity",
    "TailPercentage",
])
def test_metrics_needing_training_data_evaluate(planted_k2, in_tmp, metric):
    config, dataset, train_data, valid_data, test_data = build_pipeline(
        "BPR", *planted_k2, in_tmp, metrics=["NDCG", metric], valid_metric="NDCG@10")
    trainer = build_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False)
    assert set(result) == {"ndcg@10", f"{metric.lower()}@10"}
    assert math.isfinite(result[f"{metric.lower()}@10"])
    if metric == "ItemCoverage":  # only test-new items are recommended: coverage is at most their share
        name, data_path = planted_k2
        test_new = len(read_manifest(data_path / name / f"{name}.fewshot.json")["test_new_items"])
        assert 0 < result["itemcoverage@10"] <= test_new / (dataset.item_num - 1) + 1e-4


@pytest.mark.usefixtures("in_tmp")
def test_collector_keeps_plain_entries_and_fixes_recboles_failure(planted_k2, in_tmp):
    config, dataset, train_data, valid_data, test_data = build_pipeline(
        "BPR", *planted_k2, in_tmp, metrics=["NDCG", "ItemCoverage"], valid_metric="NDCG@10")
    trainer = build_trainer(config, train_data)
    trainer.eval_collector.data_collect(train_data)  # as Trainer.fit does first
    assert "itemcoverage@10" in trainer.evaluate(test_data, load_best_model=False)
    struct = trainer.eval_collector.get_data_struct()
    assert struct.get("data.num_items") == dataset.item_num and isinstance(struct.get("data.num_items"), int)
    trainer.eval_collector.data_collect(train_data)
    with pytest.raises(AttributeError, match="cpu"):  # RecBole's own get_data_struct on the int entry
        compat.PATCHED["collector_non_tensor_data"](trainer.eval_collector)


# --- built-in baselines --------------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("model", ["Pop", "ItemKNN", "BPR", "NeuMF", "LightGCN", "MultiVAE", "ENMF"])
def test_builtin_baselines_run_on_a_split(planted_k2, in_tmp, model):
    config, _, train_data, valid_data, test_data = build_pipeline(model, *planted_k2, in_tmp)
    assert isinstance(test_data, NewItemFullSortEvalDataLoader)
    trainer = build_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False)
    assert set(result) == {"ndcg@10", "recall@10"}
    assert all(0.0 <= value <= 1.0 and math.isfinite(value) for value in result.values())
