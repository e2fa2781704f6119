"""The warm backbone phase (recbole_fewshot/trainer/backbone.py): the warm holdout, early stopping on it,
the cap, the shared settings of properties/backbone.yaml, and the cache of trained backbones."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_pipeline, build_trainer

import recbole_fewshot.trainer.backbone as backbone_module
from recbole_fewshot import benchmark as bench
from recbole_fewshot.benchmark import store
from recbole_fewshot import registry
from recbole_fewshot.data.atomic import read_atomic
from recbole_fewshot.data.split import read_manifest
from recbole_fewshot.trainer.backbone import HoldoutRanking, _negatives, warm_holdout

BACKBONE_MODELS = ["DropoutNet", "Heater", "MetaEmb", "MWUF", "DeepMusic", "CVAR", "ALDI", "GAR"]
SHARED = yaml.safe_load(registry.BACKBONE_CONFIG_FILE.read_text())
SMALL = {"max_shots": 3, "backbone_learning_rate": 0.01}

pytestmark = pytest.mark.usefixtures("in_tmp")


def _trainer(planted, model="DeepMusic", **overrides):
    """A trainer of ``model`` (untrained, in the test's folder) and its training dataset."""
    name, data_path = planted
    config, _, train_data, _, _ = build_pipeline(model, name, data_path, Path.cwd(), **{**SMALL, **overrides})
    return build_trainer(config, train_data), train_data._dataset


def _columns(dataset):
    return dataset.inter_feat[dataset.uid_field].long(), dataset.inter_feat[dataset.iid_field].long()


def _scripted_scores(monkeypatch, scores):
    """Replace the holdout evaluation by ``scores`` in turn; returns the backbone states it was called on."""
    seen = []

    def ndcg(self, user_embedding, item_embedding):
        seen.append((user_embedding.detach().clone(), item_embedding.detach().clone()))
        return scores[len(seen) - 1]

    monkeypatch.setattr(HoldoutRanking, "ndcg", ndcg)
    return seen


# --- the warm holdout ---------------------------------------------------------------------------

def test_holdout_holds_only_warm_training_rows_and_keeps_every_user_and_item(planted_k2):
    name, data_path = planted_k2
    trainer, dataset = _trainer(planted_k2)
    users, items = _columns(dataset)
    count = torch.bincount(items, minlength=dataset.item_num)
    holdout = warm_holdout(users, items, dataset.user_num, dataset.item_num, 3, 0.1, seed=2020)
    warm_rows = count[items] > 3
    assert holdout.any() and not (holdout & ~warm_rows).any(), "a few-shot item lost a row"
    assert abs(int(holdout.sum()) - 0.1 * int(warm_rows.sum())) <= 0.02 * int(warm_rows.sum())
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    new_items = dataset.token2id("item_id", manifest["valid_new_items"] + manifest["test_new_items"])
    assert not torch.isin(items[holdout], torch.as_tensor(new_items)).any(), "a new item's support row was held out"
    for field, column, size in (("user", users, dataset.user_num), ("item", items, dataset.item_num)):
        before = torch.bincount(column, minlength=size) > 0
        after = torch.bincount(column[~holdout], minlength=size) > 0
        assert torch.equal(before, after), f"a {field} lost every backbone-training row"
    pairs = users * dataset.item_num + items
    assert not torch.isin(pairs[holdout], pairs[~holdout]).any()
    assert torch.equal(holdout, warm_holdout(users, items, dataset.user_num, dataset.item_num, 3, 0.1, seed=2020))
    assert not torch.equal(holdout, warm_holdout(users, items, dataset.user_num, dataset.item_num, 3, 0.1, seed=7))
    # the rows come from the training file alone: none is a valid or test row
    train_file, _ = read_atomic(data_path / name / f"{name}.train.inter")
    train_pairs = {tuple(pair) for pair in train_file[["user_id", "item_id"]].values}
    held = zip(dataset.id2token("user_id", users[holdout].numpy()), dataset.id2token("item_id", items[holdout].numpy()))
    assert set(held) <= train_pairs


def test_holdout_gives_back_rows_whose_user_or_item_would_vanish():
    generator = torch.Generator().manual_seed(0)
    users = torch.randint(1, 40, (300,), generator=generator)
    items = torch.randint(1, 12, (300,), generator=generator)
    users[:5] = 40  # user 40 has only these 5 rows, all of one warm item
    items[:5] = 3
    for seed in range(20):
        holdout = warm_holdout(users, items, n_users=41, n_items=13, max_shots=2, share=0.5, seed=seed)
        assert 0.3 * 300 < int(holdout.sum()) <= 0.5 * 300
        for column, size in ((users, 41), (items, 13)):
            assert torch.equal(torch.bincount(column, minlength=size) > 0,
                               torch.bincount(column[~holdout], minlength=size) > 0)
    assert not warm_holdout(users, items, 41, 13, max_shots=2, share=1.0, seed=0).any(), \
        "holding every row out would leave every user without a training row"


def test_backbone_trains_on_every_row_but_the_holdout(planted_k2, monkeypatch):
    trainer, dataset = _trainer(planted_k2, backbone_epochs=2, backbone_train_batch_size=64)
    users, items = _columns(dataset)
    holdout = warm_holdout(users, items, dataset.user_num, dataset.item_num, 3, 0.1, seed=2020)
    fed, original = [], type(trainer.model.backbone).bpr_loss

    def recording(self, user, positive, negative):
        fed.append((user.clone(), positive.clone(), negative.clone()))
        return original(self, user, positive, negative)

    monkeypatch.setattr(type(trainer.model.backbone), "bpr_loss", recording)
    trainer.train_backbone(dataset)
    user, positive, negative = (torch.cat(parts) for parts in zip(*fed))
    n_items = dataset.item_num
    trained = user * n_items + positive
    expected = (users * n_items + items)[~holdout]
    assert torch.equal(torch.sort(trained).values, torch.sort(torch.cat([expected, expected])).values)  # 2 epochs
    assert not torch.isin(trained, (users * n_items + items)[holdout]).any()
    assert not torch.isin(user * n_items + negative, expected).any(), "a negative was a backbone-training item"
    assert len(fed[0][0]) == 64


def test_negatives_avoid_known_pairs_and_cover_the_rest():
    known = torch.unique(torch.tensor([1 * 10 + i for i in range(1, 9)]))  # user 1 knows items 1..8 of 1..9
    negatives = _negatives(torch.ones(200, dtype=torch.long), 10, known, torch.Generator().manual_seed(0))
    assert set(negatives.tolist()) == {9}
    negatives = _negatives(torch.full((2000,), 2), 10, known, torch.Generator().manual_seed(0))
    assert set(negatives.tolist()) == set(range(1, 10))


def test_holdout_ndcg_is_binary_ndcg_at_20_over_warm_items_with_training_items_masked():
    # 1 user, items 1..30; items 25..30 are not warm. Scores: item i scores i.
    n_items, width = 31, 1
    item_embedding = torch.arange(n_items, dtype=torch.float32).unsqueeze(1)
    user_embedding = torch.ones(2, width)
    warm = torch.zeros(n_items, dtype=torch.bool)
    warm[1:25] = True
    # training items 24, 23 masked; the ranking is then 22, 21, ..., 3 (20 items); holdout items 22 and 5
    ranking = HoldoutRanking(torch.tensor([1, 1]), torch.tensor([22, 5]), torch.tensor([1, 1]), torch.tensor([24, 23]),
                             warm, k=20)
    expected = (1 + 1 / torch.log2(torch.tensor(19.0))) / (1 + 1 / torch.log2(torch.tensor(3.0)))
    assert ranking.ndcg(user_embedding, item_embedding) == pytest.approx(float(expected), rel=1e-6)
    unmasked = HoldoutRanking(torch.tensor([1, 1]), torch.tensor([22, 5]), torch.tensor([0]), torch.tensor([24]),
                              warm, k=20)  # 24, 23 now ranked first: 22 at rank 3, 5 at rank 20
    expected = (1 / torch.log2(torch.tensor(4.0)) + 1 / torch.log2(torch.tensor(21.0))) \
        / (1 + 1 / torch.log2(torch.tensor(3.0)))
    assert unmasked.ndcg(user_embedding, item_embedding) == pytest.approx(float(expected), rel=1e-6)


# --- early stopping and the cap -----------------------------------------------------------------

def test_stops_after_stopping_step_evaluations_without_improvement_and_restores_the_best(planted_k2, monkeypatch,
                                                                                         caplog):
    trainer, dataset = _trainer(planted_k2, backbone_epochs=50, backbone_stopping_step=3)
    seen = _scripted_scores(monkeypatch, [0.1, 0.3, 0.2, 0.3, 0.25, 0.9])
    with caplog.at_level(logging.INFO):
        trainer.train_backbone(dataset)
    assert len(seen) == 5 and trainer.backbone_epochs_trained == 5  # epochs 3, 4, 5 did not beat epoch 2
    backbone = trainer.model.backbone
    best_user, best_item = seen[1]
    assert torch.equal(backbone.user_embedding.weight, best_user)
    assert torch.equal(backbone.item_embedding.weight, best_item)
    assert not torch.equal(seen[-1][1], best_item), "training went on after the best epoch"
    assert (trainer.model.backbone_best_epoch, trainer.model.backbone_holdout_ndcg) == (2, 0.3)
    assert "backbone: best epoch 2 of 5, warm-holdout NDCG@20 0.3000" in caplog.text


def test_the_cap_is_respected_and_evaluations_follow_eval_step(planted_k2, monkeypatch):
    trainer, dataset = _trainer(planted_k2, backbone_epochs=5, backbone_eval_step=2, backbone_stopping_step=1)
    seen = _scripted_scores(monkeypatch, [0.1, 0.2, 0.3])
    trainer.train_backbone(dataset)
    assert len(seen) == 3, "epochs 2, 4 and the last one, 5"
    assert trainer.backbone_epochs_trained == 5 and trainer.model.backbone_best_epoch == 5


def test_without_holdout_exactly_backbone_epochs(planted_k2, monkeypatch):
    trainer, dataset = _trainer(planted_k2, backbone_epochs=3, backbone_holdout=0.0,
                                backbone_train_batch_size=500)
    monkeypatch.setattr(HoldoutRanking, "ndcg", lambda *args: pytest.fail("evaluated without a holdout"))
    calls = []
    original = type(trainer.model.backbone).bpr_loss
    monkeypatch.setattr(type(trainer.model.backbone), "bpr_loss",
                        lambda self, *args: calls.append(len(args[0])) or original(self, *args))
    trainer.train_backbone(dataset)
    assert sum(calls) == 3 * len(dataset.inter_feat) and max(calls) == 500
    assert trainer.model.backbone_best_epoch == 3 and trainer.model.backbone_holdout_ndcg is None


def test_real_training_stops_early_at_its_best_holdout_state(planted_k2):
    trainer, dataset = _trainer(planted_k2, backbone_epochs=300, backbone_learning_rate=0.05,
                                backbone_weight_decay=0.0, backbone_stopping_step=5)
    trainer.prepare_backbone(trainer_data(dataset))
    model = trainer.model
    assert trainer.backbone_epochs_trained < 300
    assert model.backbone_best_epoch == trainer.backbone_epochs_trained - 5
    users, items = _columns(dataset)
    holdout = warm_holdout(users, items, dataset.user_num, dataset.item_num, 3, 0.1, seed=2020)
    warm = torch.bincount(items, minlength=dataset.item_num) > 3
    ranking = HoldoutRanking(users[holdout], items[holdout], users[~holdout], items[~holdout], warm)
    restored = ranking.ndcg(model.backbone.user_embedding.weight, model.backbone.item_embedding.weight)
    assert restored == pytest.approx(model.backbone_holdout_ndcg, abs=1e-9)  # the same computation, again
    assert 0.05 < restored < 1
    assert not any(p.requires_grad for p in model.backbone.parameters())


def trainer_data(dataset):
    """The slice of a training loader prepare_backbone reads."""
    return type("Loader", (), {"_dataset": dataset})()


def test_the_backbone_leaves_the_global_random_state_alone_and_ignores_the_model(planted_k2):
    trained = {}
    for model in ("DeepMusic", "Heater"):
        trainer, dataset = _trainer(planted_k2, model=model, backbone_epochs=3)
        state = torch.get_rng_state()
        trainer.train_backbone(dataset)
        assert torch.equal(torch.get_rng_state(), state)
        trained[model] = trainer.model.backbone.state_dict()
    for key, value in trained["DeepMusic"].items():
        assert torch.equal(value, trained["Heater"][key]), key  # the same computation in both


# --- shared settings ----------------------------------------------------------------------------

@pytest.mark.parametrize("model", BACKBONE_MODELS)
def test_every_backbone_model_reads_the_shared_settings(model):
    from recbole.config import Config

    assert registry.has_backbone(model)
    own = yaml.safe_load(registry.model_config_file(model).read_text())
    assert not set(own) & set(SHARED), "a backbone setting is declared twice"
    config = Config(model=model, dataset="no-yaml-dataset")
    for key, value in SHARED.items():
        assert config[key] == value, key
    config = Config(model=model, dataset="no-yaml-dataset",
                    config_dict={"backbone_learning_rate": 0.05, "backbone_holdout": 0.2})
    assert (config["backbone_learning_rate"], config["backbone_holdout"]) == (0.05, 0.2)


@pytest.mark.parametrize("model", ["ContentProfile", "CLCRec", "LWA"])
def test_models_without_a_backbone_do_not_get_its_settings(model):
    from recbole.config import Config

    assert not registry.has_backbone(model)
    assert Config(model=model, dataset="no-yaml-dataset")["backbone_holdout"] is None


def test_a_model_file_overrides_the_shared_settings(tmp_path, monkeypatch):
    from recbole.config import Config

    properties = tmp_path / "properties"
    properties.mkdir()
    shipped = registry.model_config_file("DeepMusic").read_text()
    (properties / "DeepMusic.yaml").write_text(shipped + "backbone_epochs: 7\n")
    monkeypatch.setattr(registry, "PROPERTIES_DIR", properties)
    config = Config(model="DeepMusic", dataset="no-yaml-dataset")
    assert config["backbone_epochs"] == 7
    assert config["backbone_learning_rate"] == SHARED["backbone_learning_rate"]


def test_a_checkpoint_config_from_before_the_holdout_keeps_its_schedule(planted_k2, in_tmp):
    config, *_ = build_pipeline("DeepMusic", *planted_k2, in_tmp, backbone_epochs=20)
    for key in ("backbone_holdout", "backbone_weight_decay", "backbone_train_batch_size", "backbone_stopping_step"):
        del config.final_config_dict[key]
    restored = pickle.loads(pickle.dumps(config, protocol=4))
    assert (restored["backbone_holdout"], restored["backbone_weight_decay"]) == (0.0, 0.0)
    assert restored["backbone_train_batch_size"] is None  # the model's own batch size, as before
    assert restored["backbone_stopping_step"] == SHARED["backbone_stopping_step"]
    assert restored["backbone_epochs"] == 20


# --- the cache ----------------------------------------------------------------------------------

def test_a_cached_backbone_is_reloaded_by_any_model_and_keyed_on_every_setting(planted_k2, in_tmp, monkeypatch):
    cache = in_tmp / "backbones"
    first, dataset = _trainer(planted_k2, backbone_epochs=4, backbone_cache_dir=str(cache))
    first.prepare_backbone(trainer_data(dataset))
    [saved] = list(cache.iterdir())
    monkeypatch.setattr(backbone_module.WarmBackboneTrainer, "train_backbone",
                        lambda self, data: pytest.fail("retrained a cached backbone"))
    again, dataset = _trainer(planted_k2, model="Heater", backbone_epochs=4, backbone_cache_dir=str(cache))
    again.prepare_backbone(trainer_data(dataset))
    for key, value in first.model.backbone.state_dict().items():
        assert torch.equal(again.model.backbone.state_dict()[key], value), key
    assert again.model.backbone_holdout_ndcg == first.model.backbone_holdout_ndcg is not None
    assert again.model.backbone_best_epoch == first.model.backbone_best_epoch
    assert not any(p.requires_grad for p in again.model.backbone.parameters())

    monkeypatch.undo()
    changes = [{"backbone_weight_decay": 0.01}, {"backbone_learning_rate": 0.02}, {"backbone_holdout": 0.2},
               {"backbone_stopping_step": 2}, {"backbone_epochs": 5}, {"backbone_eval_step": 2},
               {"backbone_train_batch_size": 128}, {"max_shots": 4}, {"embedding_size": 8}, {"seed": 1}]
    for change in changes:
        other, dataset = _trainer(planted_k2, **{"backbone_epochs": 4, "backbone_cache_dir": str(cache), **change})
        assert other._cache_file(dataset) != saved, change
    assert first._cache_file(dataset) == saved


def test_no_cache_unless_a_folder_is_set(planted_k2):
    trainer, dataset = _trainer(planted_k2, backbone_epochs=1)
    assert trainer.config["backbone_cache_dir"] is None and trainer._cache_file(dataset) is None


def test_the_benchmark_shares_backbones_and_records_the_early_stop(tmp_path):
    _, config = bench.cell_config(bench.Cell("DeepMusic", 3, 2020), "split", tmp_path, "new", {}, tmp_path / "out")
    assert config["backbone_cache_dir"] == str(tmp_path / "out" / "backbones")
    _, config = bench.cell_config(bench.Cell("FewShotRec-GRU", 3, 2020), "split", tmp_path, "new", {}, tmp_path / "out")
    assert config["backbone_cache_dir"] == str(tmp_path / "out" / "backbones"), "FewShotRec shares the peers' backbone"
    _, config = bench.cell_config(bench.Cell("CLCRec", 3, 2020), "split", tmp_path, "new", {}, tmp_path / "out")
    assert "backbone_cache_dir" not in config
    one = store.params_hash("DeepMusic", "split", {"backbone_cache_dir": "here"})
    assert store.params_hash("DeepMusic", "split", {"backbone_cache_dir": "there"}) == one
    assert "backbone_epochs" not in bench.QUICK_OVERRIDES


def test_a_changed_shared_setting_makes_new_benchmark_cells(tmp_path, monkeypatch):
    before = store.params_hash("DeepMusic", "split", {"epochs": 1})
    unaffected = store.params_hash("CLCRec", "split", {"epochs": 1})
    changed = tmp_path / "backbone.yaml"
    shipped = registry.BACKBONE_CONFIG_FILE.read_text()
    changed.write_text(shipped.replace("backbone_holdout: 0.1", "backbone_holdout: 0.2"))
    monkeypatch.setattr(registry, "BACKBONE_CONFIG_FILE", changed)
    assert store.params_hash("DeepMusic", "split", {"epochs": 1}) != before
    assert store.params_hash("CLCRec", "split", {"epochs": 1}) == unaffected


# --- distributed --------------------------------------------------------------------------------

def test_two_processes_stop_the_backbone_together(planted_k2, in_tmp, monkeypatch):
    """Rank 0's holdout score decides for both processes: an early stop inside the cap ends without
    a hang, and one process evaluating rank 0's checkpoint finds the two-process results."""
    from conftest import fast_config, free_port
    from test_distributed import EXACT, assert_one_process_agrees

    from recbole_fewshot.distributed import run_distributed

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    name, data_path = planted_k2
    overrides = {**EXACT, "gpu_id": "", "max_shots": 3, "backbone_epochs": 200, "backbone_learning_rate": 0.05,
                 "backbone_stopping_step": 2, "backbone_train_batch_size": 256}
    result = run_distributed("DeepMusic", name, config_dict=fast_config(data_path, in_tmp, **overrides), nproc=2,
                             port=free_port(), backend="gloo")
    assert_one_process_agrees("DeepMusic", name, data_path, in_tmp, result, **overrides)
