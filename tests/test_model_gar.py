"""GAR: opposing generator and recommender objectives, stop-gradients, generated cold items, training."""

from __future__ import annotations

import pytest
import torch
from conftest import build_pipeline, build_trainer
from planted import planted_split, train_and_test

# 256-row backbone batches: the planted split's 3k training rows make few 2048-row steps per epoch
FAST_BACKBONE = {"backbone_epochs": 10, "backbone_learning_rate": 0.01, "backbone_train_batch_size": 256}
NO_DROPOUT = {"generator_dropout": 0.0, "recommender_dropout": 0.0}


def _gar(planted, workdir, **overrides):
    name, data_path = planted
    config, _, train_data, _, _ = build_pipeline("GAR", name, data_path, workdir, **{**FAST_BACKBONE, **overrides})
    trainer = build_trainer(config, train_data)
    trainer.prepare_backbone(train_data)
    return trainer.model, train_data


def _batch(model, train_data):
    interaction = next(iter(train_data)).to(model.device)
    keep = model.item_count[interaction[model.NEG_ITEM_ID]] > 0
    return (interaction[model.USER_ID][keep], interaction[model.ITEM_ID][keep], interaction[model.NEG_ITEM_ID][keep])


@pytest.mark.parametrize("recommender", ["embeddings", "towers"])
def test_generator_and_recommender_pull_the_generated_embedding_in_opposite_directions(planted_k2, in_tmp, recommender):
    model, train_data = _gar(planted_k2, in_tmp, recommender=recommender)
    model.train()
    model.calculate_loss(next(iter(train_data)))  # batch-norm statistics of a training batch
    model.eval()  # per-row scores (running statistics), so the two gradients compare row by row
    user, pos_item, neg_item = _batch(model, train_data)
    with torch.no_grad():
        user_e, pos_e, neg_e = (model.backbone.user_embedding(user), model.backbone.item_embedding(pos_item),
                                model.backbone.item_embedding(neg_item))
    fake = model.generate(pos_item).detach().requires_grad_(True)
    (recommender_grad,) = torch.autograd.grad(model.recommender_loss(user_e, pos_e, neg_e, fake), fake)
    (generator_grad,) = torch.autograd.grad(model.adversarial_loss(user_e, pos_e, fake), fake)
    agreement = (recommender_grad * generator_grad).sum(-1)
    assert torch.all(agreement < 0), agreement

    # along the recommender's score of the generated item: the recommender lowers it, the generator raises it
    step = 1e-2 * generator_grad / generator_grad.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        users = model.user_tower(user_e)
        before = (users * model.item_tower(fake)).sum(-1)
        after_generator_step = (users * model.item_tower(fake - step)).sum(-1)
    assert after_generator_step.mean() > before.mean()


@pytest.mark.parametrize("recommender", ["embeddings", "towers"])
def test_each_objective_reaches_only_its_own_player(planted_k2, in_tmp, recommender):
    """The recommender's parameters are the towers, or the warm embeddings it fine-tunes."""
    model, train_data = _gar(planted_k2, in_tmp, recommender=recommender, **NO_DROPOUT)
    assert model.backbone.user_embedding.weight.requires_grad == (recommender == "embeddings")
    model.train()
    recommender, generator = model.adversarial_losses(*_batch(model, train_data))
    generator_params = list(model.generator_mlp.parameters()) + list(model.content.parameters())
    tower_params = [p for p in [*model.user_tower.parameters(), *model.item_tower.parameters(),
                                *model.backbone.parameters()] if p.requires_grad]

    to_generator = torch.autograd.grad(recommender, generator_params, retain_graph=True, allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in to_generator)
    to_towers = torch.autograd.grad(generator, tower_params, retain_graph=True, allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in to_towers)

    own_generator = torch.autograd.grad(generator, generator_params, retain_graph=True, allow_unused=True)
    assert sum(float(g.norm()) for g in own_generator if g is not None) > 0
    own_towers = torch.autograd.grad(recommender, tower_params, allow_unused=True)
    assert sum(float(g.norm()) for g in own_towers if g is not None) > 0


def test_cold_items_are_scored_with_generated_embeddings(planted_k2, in_tmp):
    model, _ = _gar(planted_k2, in_tmp, recommender="towers")
    model.eval()
    items = torch.arange(model.n_items)
    cold = model.is_cold(items)
    assert cold.any() and (~cold[1:]).any()
    users = torch.arange(1, 6)
    interaction = {model.USER_ID: users}
    before = model.full_sort_predict(interaction).view(len(users), -1)
    with torch.no_grad():
        expected = model.user_tower(model.backbone.user_embedding(users)) @ model.item_tower(model.generate(items)).T
    assert torch.allclose(before[:, cold], expected[:, cold], atol=1e-5)

    with torch.no_grad():
        model.backbone.item_embedding.weight.add_(1.0)
    model.eval()  # invalidates the cached tables
    after = model.full_sort_predict(interaction).view(len(users), -1)
    assert torch.allclose(after[:, cold], before[:, cold])
    assert not torch.allclose(after[:, ~cold], before[:, ~cold])


def test_an_unknown_recommender_is_refused_by_name(planted_k2, in_tmp):
    with pytest.raises(ValueError, match="recommender must be one of"):
        _gar(planted_k2, in_tmp, recommender="gnn")


def test_training_beats_the_untrained_model_on_a_planted_pattern(tmp_path, in_tmp):
    name, data_path = planted_split(tmp_path, shots=0)
    untrained = train_and_test("GAR", name, data_path, epochs=0, **FAST_BACKBONE)
    trained = train_and_test("GAR", name, data_path, epochs=20, **FAST_BACKBONE)
    # untrained about 0.215 (the content generator's random start); trained about 0.25 on this small pattern
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.02, (trained, untrained)
