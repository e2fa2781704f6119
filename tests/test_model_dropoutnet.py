"""DropoutNet: input dropout makes dropped items content-only, K-shot items get the item transform,
training beats an untrained model, and a RecBole BPR checkpoint serves as the frozen warm backbone."""

from __future__ import annotations

import torch
from conftest import build_pipeline, build_trainer, fast_config
from planted import train_and_test
from recbole.quick_start import run_recbole

from recbole_fewshot.checkpoint import load_checkpoint

SMALL = {"max_shots": 3, "backbone_epochs": 5, "backbone_learning_rate": 0.01}


def _trained_backbone(planted, workdir, **overrides):
    name, data_path = planted
    config, _, train_data, _, _ = build_pipeline("DropoutNet", name, data_path, workdir, **{**SMALL, **overrides})
    trainer = build_trainer(config, train_data)
    trainer.prepare_backbone(train_data)
    return trainer.model, train_data


def _scores(model, users: torch.Tensor) -> torch.Tensor:
    model.eval()  # also drops the cached preference inputs and item table
    with torch.no_grad():
        return model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)


def test_dropped_item_is_scored_from_content_only(planted_k0, in_tmp):
    model, _ = _trained_backbone(planted_k0, in_tmp)
    cold = int(torch.nonzero(model.item_count[1:] == 0)[0]) + 1
    users = torch.arange(1, 6)
    torch.nn.init.normal_(model.content.encoders["genre"].weight.data)  # token embeddings start at zero
    before = _scores(model, users)[:, cold]

    with torch.no_grad():
        model.backbone.item_embedding.weight[cold] += 5.0
    assert torch.allclose(_scores(model, users)[:, cold], before)

    genre = model.content.feature_genre
    genre[cold] = genre[genre != genre[cold]].max()  # another genre token
    assert not torch.allclose(_scores(model, users)[:, cold], before)


def test_dropout_zeroes_the_preference_input_and_never_trains_the_backbone(planted_k0, in_tmp):
    model, train_data = _trained_backbone(planted_k0, in_tmp)
    model.backbone.requires_grad_(True)  # even unfrozen, the loss must not reach the backbone
    batch = next(iter(train_data))
    d = model.backbone.item_embedding.weight.shape[1]
    first = model.item_tower[0].weight  # input columns: preference (:d), content (d:)
    for dropout_prob, preference_used in ((1.0, False), (0.0, True)):
        model.dropout_prob, model.transform_prob = dropout_prob, 0.0
        model.train()
        model.zero_grad()
        model.calculate_loss(batch).backward()
        assert bool(first.grad[:, :d].abs().sum() > 0) == preference_used
        assert first.grad[:, d:].abs().sum() > 0
        assert all(p.grad is None for p in model.backbone.parameters())


def test_few_shot_item_gets_the_transform_of_its_training_buyers(planted_k2, in_tmp):
    model, _ = _trained_backbone(planted_k2, in_tmp)
    model.eval()
    items = torch.nonzero(model.item_count == 2).squeeze(1)
    assert len(items) > 0
    users, _ = model.standardised_backbone()
    for item in items.tolist():
        buyers = model.item_users[model.item_ptr[item]: model.item_ptr[item + 1]]
        assert torch.allclose(model.item_preference(torch.tensor([item]))[0], users[buyers].mean(0), atol=1e-6)


def test_training_beats_untrained(planted_k0):
    name, data_path = planted_k0
    untrained = train_and_test("DropoutNet", name, data_path, epochs=0, **SMALL)
    trained = train_and_test("DropoutNet", name, data_path, epochs=8, **SMALL)
    assert trained["ndcg@10"] > untrained["ndcg@10"]


def test_pretrained_bpr_checkpoint_is_the_frozen_backbone(planted_k0, in_tmp):
    name, data_path = planted_k0
    run_recbole(model="BPR", dataset=name, config_dict=fast_config(data_path, in_tmp / "bpr"))
    (checkpoint,) = (in_tmp / "bpr" / "saved").glob("BPR-*.pth")
    state = load_checkpoint(str(checkpoint), map_location="cpu")["state_dict"]

    config, _, train_data, _, _ = build_pipeline("DropoutNet", name, data_path, in_tmp,
                                                 max_shots=3, pretrained_backbone=str(checkpoint))
    trainer = build_trainer(config, train_data)
    trainer.fit(train_data, saved=False)
    backbone = trainer.model.backbone
    for key in ("user_embedding.weight", "item_embedding.weight"):
        assert torch.equal(backbone.state_dict()[key], state[key]), key
    assert not any(p.requires_grad for p in backbone.parameters())


def test_the_search_space_draws_only_settings_the_model_accepts():
    import yaml

    from recbole_fewshot import tuning
    from recbole_fewshot.registry import model_config_file

    defaults = yaml.safe_load(model_config_file("DropoutNet").read_text())
    kind, _, highest = tuning.search_space("DropoutNet")["dropout_prob"]
    assert kind == "float" and highest + defaults["transform_prob"] <= 1, "a trial the model refuses wastes its budget"
