"""MetaEmb: the warm-up loss trains the generator through one differentiable gradient step, K-shot items
are warmed up on their training buyers, and training beats an untrained model."""

from __future__ import annotations

import torch
from conftest import build_pipeline, build_trainer
from planted import train_and_test

from recbole_fewshot.nn.interactions import TrainingInteractions

SMALL = {"max_shots": 3, "backbone_epochs": 5, "backbone_learning_rate": 0.01}


def _trained_backbone(planted, workdir, **overrides):
    name, data_path = planted
    config, _, train_data, _, _ = build_pipeline("MetaEmb", name, data_path, workdir, **{**SMALL, **overrides})
    trainer = build_trainer(config, train_data)
    trainer.prepare_backbone(train_data)
    torch.nn.init.normal_(trainer.model.content.encoders["genre"].weight.data)  # token embeddings start at zero
    return trainer.model, train_data


def test_warm_up_is_one_differentiable_gradient_step(planted_k0, in_tmp):
    model, train_data = _trained_backbone(planted_k0, in_tmp, cold_lr=0.5)
    model.train()
    items = model.warm_items[:16]
    users = model.first_buyers[items]
    negatives = model.meta_embedding(model.warm_items[-16:].unsqueeze(1).expand(-1, model.warmup_shots))
    mask = torch.ones_like(users, dtype=torch.bool)
    phi = model.meta_embedding(items)
    loss_a = model.support_loss(phi, users, negatives, mask)
    warmed = model.warm_up(phi, loss_a, create_graph=True)

    grad = torch.autograd.grad(loss_a.sum(), phi, retain_graph=True)[0]
    assert torch.allclose(warmed, phi - 0.5 * grad)
    assert not torch.allclose(warmed, phi)

    # the warm-up loss reaches the generator through the updated embedding, second-order terms included
    train = TrainingInteractions(train_data._dataset)
    later = train.item_users[train.item_ptr[items] + model.warmup_shots].unsqueeze(1)  # a buyer outside D_a
    loss_b = model.support_loss(warmed, later, negatives[:, :1], torch.ones_like(later, dtype=torch.bool)).sum()
    full = torch.autograd.grad(loss_b, model.generator.weight, retain_graph=True)[0]
    first_order = phi - 0.5 * grad.detach()
    loss_fo = model.support_loss(first_order, later, negatives[:, :1], torch.ones_like(later, dtype=torch.bool)).sum()
    approx = torch.autograd.grad(loss_fo, model.generator.weight)[0]
    assert full.abs().sum() > 0
    assert not torch.allclose(full, approx)


def test_meta_loss_trains_generator_not_backbone(planted_k0, in_tmp):
    model, train_data = _trained_backbone(planted_k0, in_tmp, alpha=0.0)  # the warm-up loss alone
    model.backbone.requires_grad_(True)  # even unfrozen, the loss must not reach the backbone
    model.zero_grad()
    model.train()
    model.calculate_loss(next(iter(train_data))).backward()
    assert model.generator.weight.grad.abs().sum() > 0
    assert model.content.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())


def test_serving_embeddings_by_training_interaction_count(planted_k2, in_tmp):
    model, _ = _trained_backbone(planted_k2, in_tmp)
    model.eval()
    table = model.score_tables()[1]
    warm = model.warm_items[:5]
    assert torch.equal(table[warm], model.backbone.item_embedding.weight[warm])

    few = torch.nonzero(model.item_count == 2).squeeze(1)
    assert len(few) > 0
    with torch.enable_grad():
        phi = model.meta_embedding(few)
        mask = torch.arange(model.max_shots) < 2
        negatives = model.meta_embedding(model.support_negatives[few]).detach()  # scored as generated, like phi
        loss = model.support_loss(phi, model.support[few], negatives, mask.expand(len(few), -1))
        expected = phi - model.cold_lr * torch.autograd.grad(loss.sum(), phi)[0]
    assert torch.allclose(table[few], expected, atol=1e-6)
    assert not torch.allclose(table[few], phi.detach())

    with torch.no_grad():
        model.backbone.item_embedding.weight[few] += 5.0
        model.eval()
        assert torch.allclose(model.score_tables()[1][few], table[few])  # a few-shot id vector is never read


def test_zero_shot_item_gets_the_generated_embedding(planted_k0, in_tmp):
    model, _ = _trained_backbone(planted_k0, in_tmp)
    model.eval()
    cold = torch.nonzero(model.item_count[1:] == 0).squeeze(1) + 1
    with torch.no_grad():
        # the table generates every item in one batch, this line the cold ones: equal to float rounding
        assert torch.allclose(model.score_tables()[1][cold], model.meta_embedding(cold), atol=1e-6)


def test_training_beats_untrained(planted_k0):
    name, data_path = planted_k0
    untrained = train_and_test("MetaEmb", name, data_path, epochs=0, **SMALL)
    trained = train_and_test("MetaEmb", name, data_path, epochs=8, **SMALL)
    assert trained["ndcg@10"] > untrained["ndcg@10"]
