"""Heater: randomized training mixes pretrained and content-mapped vectors, the gates of the mixture of
experts sum to one, new items are scored from content only, and training beats an untrained model."""

from __future__ import annotations

import torch
from conftest import build_pipeline, build_trainer
from planted import train_and_test

SMALL = {"max_shots": 3, "backbone_epochs": 5, "backbone_learning_rate": 0.01}


def _trained_backbone(planted, workdir, **overrides):
    name, data_path = planted
    config, _, train_data, _, _ = build_pipeline("Heater", name, data_path, workdir, **{**SMALL, **overrides})
    trainer = build_trainer(config, train_data)
    trainer.prepare_backbone(train_data)
    return trainer.model, train_data


def test_randomized_training_mixes_pretrained_and_mapped_vectors(planted_k2, in_tmp):
    model, _ = _trained_backbone(planted_k2, in_tmp)
    model.train()
    warm = model.warm_items
    few = torch.nonzero((model.item_count > 0) & (model.item_count <= model.max_shots)).squeeze(1)
    pretrained = model.standardised_backbone()[1]
    with torch.no_grad():
        inputs, mapped, is_warm = model.randomized_inputs(warm)
        from_pretrained = (inputs == pretrained[warm]).all(1)
        from_mapped = (inputs == mapped).all(1)
        assert bool((from_pretrained ^ from_mapped).all())  # each row is one or the other
        assert int(from_mapped.sum()) == int(model.dropout_prob * len(warm))
        assert bool(is_warm.all())
        swapped_again = (model.randomized_inputs(warm)[0] == mapped).all(1)
        assert not torch.equal(swapped_again, from_mapped)  # a fresh draw per batch
        # items with few interactions always take the content path
        inputs, mapped, is_warm = model.randomized_inputs(few)
        assert torch.equal(inputs, mapped) and not bool(is_warm.any())


def test_gates_sum_to_one_and_experts_differ(planted_k0, in_tmp):
    model, _ = _trained_backbone(planted_k0, in_tmp, n_experts=4)
    with torch.no_grad():
        torch.nn.init.normal_(model.experts.gate.weight)
        content = model.content(torch.arange(1, model.n_items))
        gates = model.experts.gates(content)
    assert gates.shape == (model.n_items - 1, 4)
    assert torch.allclose(gates.sum(1), torch.ones(len(gates)), atol=1e-6) and bool((gates > 0).all())
    assert not torch.allclose(gates, gates[:1].expand_as(gates))  # item-specific mixtures
    mixture = torch.tanh((gates.unsqueeze(-1) * torch.stack([e(content) for e in model.experts.experts], 1)).sum(1))
    assert torch.allclose(model.experts(content), mixture, atol=1e-6)


def test_new_items_are_scored_from_content_and_the_backbone_is_never_trained(planted_k0, in_tmp):
    model, train_data = _trained_backbone(planted_k0, in_tmp)
    model.backbone.requires_grad_(True)  # even unfrozen, the loss must not reach the backbone
    model.zero_grad()
    model.train()
    model.calculate_loss(next(iter(train_data))).backward()
    assert all(p.grad is None for p in model.backbone.parameters())

    cold = int(torch.nonzero(model.item_count[1:] == 0)[0]) + 1
    model.eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.content.encoders["genre"].weight.data)  # token embeddings start at zero
        before = model.score_tables()[1][cold].clone()
        model.backbone.item_embedding.weight[cold] += 5.0
        model.eval()
        assert torch.equal(model.score_tables()[1][cold], before)
        genre = model.content.feature_genre
        genre[cold] = genre[genre != genre[cold]].max()
        model.eval()
        assert not torch.equal(model.score_tables()[1][cold], before)


def test_similarity_constraint_pulls_the_mapping_toward_pretrained_vectors(planted_k0, in_tmp):
    model, train_data = _trained_backbone(planted_k0, in_tmp, alpha=1.0)
    batch = next(iter(train_data))
    model.train()
    losses = []
    for alpha in (0.0, 1.0):
        model.alpha = alpha
        torch.manual_seed(0)
        losses.append(model.calculate_loss(batch))
    torch.manual_seed(0)
    user, item = batch[model.USER_ID], batch[model.ITEM_ID]
    negatives = model.warm_items[torch.randint(len(model.warm_items), (len(user) * model.neg_samples,))]
    items = torch.cat([item, negatives])
    warm = model.item_count[items] > model.max_shots
    gap = ((model.mapped(items) - model.standardised_backbone()[1][items]) ** 2).sum(-1)[warm].sum()
    assert torch.allclose(losses[1] - losses[0], gap, rtol=1e-4)


def test_training_beats_untrained(planted_k0):
    name, data_path = planted_k0
    untrained = train_and_test("Heater", name, data_path, epochs=0, **SMALL)
    trained = train_and_test("Heater", name, data_path, epochs=6, **SMALL)
    assert trained["ndcg@10"] > untrained["ndcg@10"]
