"""The peer models' bases: trainers named by the model, the no-content warning, cached score tables."""

from __future__ import annotations

import logging

import pytest
import recbole.trainer
import torch
from recbole.data.interaction import Interaction

from conftest import build_pipeline, build_trainer
from planted import planted_split
from recbole_fewshot import registry
from recbole_fewshot.model.abstract_recommender import ColdStartRecommender, WarmBackboneRecommender
from recbole_fewshot.trainer.backbone import WarmBackboneTrainer

PEERS = sorted(name for name, model in registry.plugin_models().items() if issubclass(model, ColdStartRecommender))


def test_every_peer_builds_on_the_cold_start_base():
    assert len(PEERS) >= 14


@pytest.mark.parametrize("name", PEERS)
def test_recbole_finds_the_trainer_the_model_names(name):
    from recbole.utils import get_trainer

    model = registry.plugin_models()[name]
    assert get_trainer(model.type, name) is model.trainer_class
    assert getattr(recbole.trainer, f"{name}Trainer") is model.trainer_class
    assert registry.has_backbone(name) == issubclass(model.trainer_class, WarmBackboneTrainer)
    assert issubclass(model, WarmBackboneRecommender) == registry.has_backbone(name)


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("name", ["CLCRec", "DropoutNet", "ContentKNN"])
def test_the_no_content_warning_fires_once_per_model(name, tmp_path, caplog):
    split_name, data_path = planted_split(tmp_path / "plain", shots=2, with_features=False)
    config, _, train_data, _, _ = build_pipeline(name, split_name, data_path, tmp_path)
    with caplog.at_level(logging.WARNING):
        model = build_trainer(config, train_data).model
        model.warn_without_content(False)  # a second encoder's verdict: said already
    warnings = [r.getMessage() for r in caplog.records if "no item features" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"{name}: ") and model.NO_CONTENT_EFFECT in warnings[0]


@pytest.mark.usefixtures("in_tmp")
def test_a_model_needing_warm_items_refuses_a_split_without_any(planted_k2, tmp_path):
    name, data_path = planted_k2
    config, _, train_data, _, _ = build_pipeline("Heater", name, data_path, tmp_path, max_shots=10_000)
    with pytest.raises(ValueError, match="Heater: no item has more than max_shots=10000"):
        build_trainer(config, train_data)


@pytest.mark.usefixtures("in_tmp")
def test_score_tables_are_kept_for_an_evaluation_and_recomputed_when_training_resumes(planted_k2, tmp_path):
    name, data_path = planted_k2
    config, _, train_data, _, _ = build_pipeline("DeepMusic", name, data_path, tmp_path)
    model = build_trainer(config, train_data).model.eval()
    users = Interaction({"user_id": torch.tensor([1, 2, 3])})
    calls = []
    compute = model.compute_score_tables
    model.compute_score_tables = lambda: calls.append(1) or compute()
    with torch.no_grad():
        before = model.full_sort_predict(users)
        model.predict(Interaction({"user_id": torch.tensor([1]), "item_id": torch.tensor([2])}))
        assert len(calls) == 1, "one computation per evaluation"
        model.train()
        assert model._score_tables is None
        model.regressor[-1].bias.add_(1.0)  # a training step moves the parameters
        model.full_sort_predict(users)
        model.full_sort_predict(users)
        assert len(calls) == 3, "training mode: computed on every call, never kept"
        assert model._score_tables is None
        model.eval()
        after = model.full_sort_predict(users)
    assert len(calls) == 4 and not torch.allclose(before, after)
