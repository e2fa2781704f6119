"""Every patch in recbole_fewshot.compat: installed once, on every owner, doing what it says."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
import recbole
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
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader, TrainDataLoader
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from recbole.trainer import Trainer
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from conftest import build_pipeline, build_trainer, free_port
from recbole_fewshot import compat
from recbole_fewshot.data.dataloader import IdOnlyTrainDataLoader, NewItemFullSortEvalDataLoader
from recbole_fewshot.data.split import read_manifest, summary_lines

EXPECTED_PATCHES = {
    "unknown_model_error", "plugin_model_defaults", "fewshot_config", "safe_checkpoint_load:evaluate",
    "safe_checkpoint_load:resume", "safe_checkpoint_load:quick_start", "scipy_dok_update",
    "config_unpickle",
    "plugin_dataloaders", "training_popularity_only", "training_popularity_only:repeatable",
    "collector_non_tensor_data", "ensure_dir_race", "ddp_backend", "ddp_cpu_module", "ddp_shared_checkpoint",
    "ddp_exact_metrics:sampler", "ddp_exact_metrics:gather", "ddp_exact_metrics:reduce",
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
    "plugin_dataloaders": ([recbole.data.utils, recbole.data], "get_dataloader"),
    "training_popularity_only": ([recbole.sampler.sampler.Sampler], "_get_candidates_list"),
    "training_popularity_only:repeatable": ([recbole.sampler.sampler.RepeatableSampler], "_get_candidates_list"),
    "collector_non_tensor_data": ([recbole.evaluator.collector.Collector], "get_data_struct"),
    "ensure_dir_race": ([recbole.utils.utils, recbole.utils, recbole.utils.logger, recbole.trainer.trainer,
                         recbole.data.utils, recbole.data.dataset.dataset], "ensure_dir"),
    "ddp_backend": ([recbole.config.configurator.Config], "_init_device"),
    "ddp_cpu_module": ([recbole.trainer.trainer.AbstractTrainer], "__init__"),
    "ddp_shared_checkpoint": ([Trainer], "_save_checkpoint"),
    "ddp_exact_metrics:sampler": ([AbstractDataLoader], "__init__"),
    "ddp_exact_metrics:gather": ([recbole.evaluator.collector.Collector], "model_collect"),
    "ddp_exact_metrics:reduce": ([Trainer], "_map_reduce"),
}


def test_the_patch_list():
    assert set(compat.PATCHED) == EXPECTED_PATCHES


def test_apply_runs_every_patch_function():
    """The public functions of no arguments of hooks, upstream and distributed are the patches: each is
    in PATCHES once, and is named after what it installs."""
    defined = {
        function
        for module in (compat.hooks, compat.upstream, compat.distributed)
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__ and not name.startswith("_")
        and not inspect.signature(function).parameters
    }
    assert len(set(compat.PATCHES)) == len(compat.PATCHES)
    assert set(compat.PATCHES) == defined
    assert {function.__name__ for function in defined} == {name.split(":")[0] for name in EXPECTED_PATCHES}


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
    assert recbole.config.configurator.Config.__setstate__ is compat.PATCHED["config_unpickle"]


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
@pytest.mark.parametrize("plugin, shared", [("ALDI", ["backbone.yaml"]), ("FewShotRec", ["backbone.yaml"]),
                                            ("CLCRec", [])])
def test_plugin_yaml_is_loaded_right_after_overall_yaml(monkeypatch, plugin, shared):
    """A model with a warm backbone reads the shared properties/backbone.yaml first, then its own yaml."""
    from recbole_fewshot import registry

    loaded = []
    original = compat.PATCHED["plugin_model_defaults"]

    def record(self, file):
        loaded.append(os.path.realpath(file))
        return original(self, file)

    monkeypatch.setitem(compat.PATCHED, "plugin_model_defaults", record)  # not used by the wrapper
    wrapper = compat.hooks._make_update_internal_config_dict(record)
    monkeypatch.setattr(recbole.config.configurator.Config, "_update_internal_config_dict", wrapper)
    recbole.config.configurator.Config(model=plugin, dataset="ml-100k")
    recbole_properties = os.path.realpath(os.path.join(os.path.dirname(recbole.__file__), "properties"))
    assert loaded == [
        os.path.join(recbole_properties, "overall.yaml"),
        *[os.path.realpath(registry.PROPERTIES_DIR.parent / name) for name in shared],
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

    wrapped = compat.upstream._make_safe_loading(probe)
    original_load = torch.load
    with pytest.raises(RuntimeError, match="boom"):
        wrapped()
    assert seen == [compat.upstream.load_checkpoint]
    assert torch.load is original_load


# --- config_unpickle ------------------------------------------------------------------------------

def test_an_unpickled_config_loads_a_float_seq_dataset_in_a_fresh_process(tmp_path, in_tmp):
    """A checkpoint's Config, unpickled where no Config was constructed, still loads text embeddings."""
    import pickle
    import subprocess
    import sys

    folder = tmp_path / "data" / "emb"
    folder.mkdir(parents=True)
    (folder / "emb.inter").write_text("user_id:token\titem_id:token\n" + "".join(
        f"u{u}\ti{i}\n" for u in range(6) for i in range(4) if (u + i) % 3))
    (folder / "emb.item").write_text("item_id:token\ttext_emb:float_seq\n" + "".join(
        f"i{i}\t{i * 0.1:.1f} 0.5 {1 - i * 0.1:.1f}\n" for i in range(4)))
    config = recbole.config.configurator.Config(
        model="Pop", dataset="emb", config_dict={"data_path": str(tmp_path / "data"), "state": "ERROR",
                                          "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id", "text_emb"]}})
    (tmp_path / "config.pkl").write_bytes(pickle.dumps(config, protocol=4))
    script = (
        "import pickle, numpy, recbole_fewshot\n"
        "from recbole.data import create_dataset\n"
        "assert not hasattr(numpy, 'float'), 'a Config was constructed on import'\n"
        "config = pickle.loads(open('config.pkl', 'rb').read())\n"
        "dataset = create_dataset(config)\n"
        "print(dataset.item_num, [len(v) for v in dataset.item_feat['text_emb']])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "5 [0, 3, 3, 3, 3]" in done.stdout  # the padding row and 4 items of 3 values


def test_an_unpickled_config_gives_settings_it_predates_their_defaults(planted_k2, in_tmp, caplog):
    """A checkpoint saved before a model gained settings still builds: the model's defaults fill them in,
    and a shared backbone setting whose default changed the backbone takes the value from before it."""
    import logging
    import pickle

    from recbole.utils import get_model

    config, _, train_data, _, _ = build_pipeline("FewShotRec", *planted_k2, in_tmp, behaviour_encoder="cnn")
    for key in ("freeze_backbone", "ridge_lambda", "backbone_holdout"):
        del config.final_config_dict[key]
    with pytest.raises(ValueError, match="ridge_lambda must be a number"):
        get_model("FewShotRec")(config, train_data._dataset)
    with caplog.at_level(logging.WARNING):
        restored = pickle.loads(pickle.dumps(config, protocol=4))
    assert "predates backbone_holdout, freeze_backbone, ridge_lambda" in caplog.text
    assert (restored["freeze_backbone"], restored["ridge_lambda"]) == (
        config_default("FewShotRec", "freeze_backbone"), config_default("FewShotRec", "ridge_lambda"))
    assert restored["backbone_holdout"] == 0.0, "a backbone trained before its holdout existed trained on every row"
    assert (restored["behaviour_encoder"], restored["embedding_size"]) == ("cnn", 16)  # the saved values stay
    assert type(get_model("FewShotRec")(restored, train_data._dataset).encoder).__name__ == "CNNBehaviourEncoder"
    bpr, *_ = build_pipeline("BPR", *planted_k2, in_tmp)
    assert pickle.loads(pickle.dumps(bpr, protocol=4)).final_config_dict == bpr.final_config_dict


def config_default(model: str, key: str):
    from recbole_fewshot.registry import model_config_file

    return yaml.safe_load(model_config_file(model).read_text())[key]


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


# --- plugin_dataloaders -------------------------------------------------------------------------

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


@pytest.mark.parametrize("model", ["DeepMusic", "ContentProfile"])  # pairwise, pointwise
def test_a_content_model_trains_on_recbole_batches_less_the_feature_columns(planted_k2, in_tmp, model):
    from recbole.utils import init_seed

    name, data_path = planted_k2
    config, data, train_data, _, _ = build_pipeline(model, name, data_path, in_tmp)
    assert type(train_data) is IdOnlyTrainDataLoader, "the plugin's content models read content from their own tables"
    dataset, sampler = train_data._dataset, train_data._sampler
    batches = []
    for loader in (TrainDataLoader, IdOnlyTrainDataLoader):
        init_seed(config["seed"], config["reproducibility"])
        batches.append(list(loader(config, dataset, sampler, shuffle=False)))
    features = set(dataset.item_feat.columns) - {dataset.iid_field}
    assert features, "the planted items have features to leave out"
    for full, lean in zip(*batches, strict=True):
        assert features <= set(full.columns) and not features & set(lean.columns)
        assert set(lean.columns) < set(full.columns)
        for column in lean.columns:
            assert torch.equal(lean[column], full[column]), column


@pytest.mark.usefixtures("in_tmp")
def test_a_model_without_its_own_content_tables_keeps_recbole_batches(planted_k2):
    from recbole.config import Config

    name, data_path = planted_k2
    config = Config(model="BPR", dataset=name, config_dict={"data_path": str(data_path)})
    assert recbole.data.utils.get_dataloader(config, "train") is TrainDataLoader


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


# --- ensure_dir_race -----------------------------------------------------------------------------

def test_ensure_dir_tolerates_a_folder_made_by_another_process(tmp_path, monkeypatch):
    target = tmp_path / "log" / "BPR"
    target.mkdir(parents=True)
    monkeypatch.setattr(os.path, "exists", lambda path: False)  # the other process made it after this check
    with pytest.raises(FileExistsError):
        compat.PATCHED["ensure_dir_race"](str(target))
    recbole.utils.logger.ensure_dir(str(target))
    monkeypatch.undo()
    recbole.utils.ensure_dir(str(tmp_path / "new" / "deep"))
    assert (tmp_path / "new" / "deep").is_dir()


# --- ddp_* (distributed mode, here with a world of this one process; tests/test_distributed.py runs two) ---

@pytest.fixture
def world_of_one(monkeypatch):
    """Config entries for distributed mode on the CPU, this process alone; the group is destroyed after."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored afterwards: RecBole's Config sets it
    yield {"local_rank": 0, "world_size": 1, "nproc": 1, "ip": "localhost", "port": str(free_port()), "offset": 0,
           "gpu_id": ""}
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.mark.usefixtures("in_tmp")
def test_ddp_backend_is_gloo_on_the_cpu(planted_k2, world_of_one):
    from recbole.config import Config

    name, data_path = planted_k2
    config = Config(model="BPR", dataset=name, config_dict={"data_path": str(data_path), **world_of_one})
    assert torch.distributed.is_initialized() and torch.distributed.get_backend() == "gloo"
    assert config["device"] == torch.device("cpu") and config["single_spec"] is False
    assert (torch.distributed.get_rank(), torch.distributed.get_world_size()) == (0, 1)


@pytest.mark.usefixtures("in_tmp")
def test_ddp_backend_nccl_needs_cuda(planted_k2, world_of_one):
    from recbole.config import Config

    name, data_path = planted_k2
    with pytest.raises(ValueError, match="ddp_backend: gloo"):
        Config(model="BPR", dataset=name,
               config_dict={"data_path": str(data_path), **world_of_one, "ddp_backend": "nccl"})
    assert not torch.distributed.is_initialized()


@pytest.mark.skipif(torch.cuda.is_available(), reason="RecBole's own nccl path needs a machine without CUDA to fail")
@pytest.mark.usefixtures("in_tmp")
def test_recboles_own_distributed_device_fails_on_the_cpu(planted_k2, world_of_one):
    from recbole.config import Config

    name, data_path = planted_k2
    config = Config(model="BPR", dataset=name, config_dict={"data_path": str(data_path)})
    config.final_config_dict.update(world_of_one)
    with pytest.raises(RuntimeError, match="NCCL"):  # the backend is hard-coded
        compat.PATCHED["ddp_backend"](config)


@pytest.mark.usefixtures("in_tmp")
def test_ddp_fit_save_and_evaluate_in_a_world_of_one(planted_k2, in_tmp, world_of_one, monkeypatch):
    barriers = []
    real_barrier = torch.distributed.barrier
    monkeypatch.setattr(torch.distributed, "barrier", lambda *a, **k: barriers.append(1) or real_barrier(*a, **k))
    config, _, train_data, valid_data, test_data = build_pipeline("BPR", *planted_k2, in_tmp, **world_of_one)
    trainer = build_trainer(config, train_data)
    assert isinstance(trainer.distributed_model, DistributedDataParallel)
    assert trainer.distributed_model.device_ids is None and trainer.distributed_model.module is trainer.model
    with pytest.raises(ValueError, match="device_ids"):  # RecBole's own wrapping of a CPU model
        compat.PATCHED["ddp_cpu_module"](object.__new__(Trainer), config, trainer.model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    assert barriers and Path(trainer.saved_model_file).is_file()  # every save ends with a barrier
    distributed = trainer.evaluate(test_data, load_best_model=True)
    single_config, _, single_train, _, single_test = build_pipeline("BPR", *planted_k2, in_tmp)
    single = build_trainer(single_config, single_train).evaluate(single_test, load_best_model=True,
                                                                 model_file=trainer.saved_model_file)
    assert distributed == pytest.approx(single, abs=1e-12)


@pytest.mark.parametrize("world", [2, 3])
def test_unpadded_sampler_gives_every_sample_to_one_rank(world):
    with pytest.raises(ValueError, match="fewer processes"):
        compat.unpad_sampler(DistributedSampler(range(world - 1), num_replicas=world, rank=0, shuffle=False))
    for size in range(world, 10):
        padded = [list(DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=False))
                  for rank in range(world)]
        samplers = [DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=False)
                    for rank in range(world)]
        for sampler in samplers:
            compat.unpad_sampler(sampler)
        unpadded = [list(sampler) for sampler in samplers]
        assert [len(indices) for indices in unpadded] == [len(sampler) for sampler in samplers]
        assert sorted(sum(unpadded, [])) == list(range(size))
        assert len(sum(padded, [])) == size + (-size) % world  # RecBole's: some samples twice


def test_merge_shards_restores_the_single_process_order():
    rows = torch.arange(14).view(7, 2)
    assert torch.equal(compat.merge_shards([rows[0::3], rows[1::3], rows[2::3]]), rows)
    assert torch.equal(compat.merge_shards([rows[0::2], rows[1::2][:0]]), rows[0::2])
    uneven = [rows[:5], rows[5:]]  # not one row per sample (scores with sampled negatives): the union
    assert torch.equal(compat.merge_shards(uneven), rows)


@pytest.mark.usefixtures("in_tmp")
def test_ddp_metric_patches_stand_aside_in_one_process(planted_k2, in_tmp):
    config, _, train_data, _, test_data = build_pipeline("BPR", *planted_k2, in_tmp)
    assert len(test_data.sampler) == test_data.sample_size
    trainer = build_trainer(config, train_data)
    trainer.eval_collector.data_struct.update_tensor("rec.topk", torch.ones(3, 2, dtype=torch.int))
    trainer.eval_collector.model_collect(trainer.model)  # no process group: a collective call would fail
    assert trainer.eval_collector.data_struct.get("rec.topk").shape == (3, 2)
    result = {"ndcg@10": 0.5}
    assert trainer._map_reduce(result, 4) is result


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
