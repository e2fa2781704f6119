"""CLCRec: user-item and representation-level InfoNCE objectives, temperature-scaled; content for cold items."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_seed


def build(tmp_path: Path, **overrides):
    name, data_path = planted_split(tmp_path, shots=0)
    config = Config(model="CLCRec", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved"), "num_neg": 8,
        **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return get_model("CLCRec")(config, train_data._dataset).to(config["device"]), train_data


def batch_items(model, batch):
    user = batch[model.USER_ID]
    items = torch.cat([batch[model.ITEM_ID].unsqueeze(1), model.sample_negatives(len(user))], dim=1)
    return user, items, model.hybrid_mask(items)


def grad_norm(model, loss, parameters) -> float:
    model.zero_grad()
    loss.backward(retain_graph=True)
    return sum(float(p.grad.abs().sum()) for p in parameters if p.grad is not None)


def test_both_contrastive_objectives_train_their_parameters(tmp_path):
    # token fields only: the gradient must reach the token embeddings through every layer
    model, train_data = build(tmp_path, item_content_fields=["genre", "tags"])
    user, items, hybrid = batch_items(model, next(iter(train_data)).to(model.device))
    assert hybrid.any() and (~hybrid).any()
    user_item, representation, _ = model.contrastive_losses(user, items, hybrid)
    content = list(model.encoder.parameters()) + [model.content.encoders["genre"].weight]  # down to the tokens

    # R-E: item id embeddings against content embeddings; users take no part
    assert grad_norm(model, representation, [model.item_embedding.weight]) > 0
    assert grad_norm(model, representation, content) > 0
    assert grad_norm(model, representation, [model.user_embedding.weight]) == 0
    # U-I: users against items entering by id or (hybrid) by content
    assert grad_norm(model, user_item, [model.user_embedding.weight]) > 0
    assert grad_norm(model, user_item, [model.item_embedding.weight]) > 0
    assert grad_norm(model, user_item, content) > 0


def test_temperature_scales_both_objectives(tmp_path):
    model, train_data = build(tmp_path)
    user, items, hybrid = batch_items(model, next(iter(train_data)).to(model.device))
    with torch.no_grad():
        user_e, item_e = model.user_embedding(user), model.item_embedding(items)
        content_e = model.content_embedding(items)
        ui_logits = ((torch.where(hybrid.unsqueeze(-1), content_e, item_e) @ user_e.unsqueeze(-1)).squeeze(-1))
        re_logits = (F.normalize(content_e, dim=-1) @ F.normalize(item_e[:, 0], dim=-1).unsqueeze(-1)).squeeze(-1)
        warm = ~model.is_cold(items[:, 0])
        assert warm.any()
        target = torch.zeros(len(user), dtype=torch.long)
        losses = {}
        for temperature in (0.2, 2.0):
            model.temperature = temperature
            user_item, representation, _ = model.contrastive_losses(user, items, hybrid)
            torch.testing.assert_close(user_item, F.cross_entropy(ui_logits / temperature, target))
            torch.testing.assert_close(representation, F.cross_entropy(re_logits[warm] / temperature, target[warm]))
            losses[temperature] = (float(user_item), float(representation))
    assert losses[0.2][0] != losses[2.0][0] and losses[0.2][1] != losses[2.0][1]


def test_calculate_loss_mixes_objectives_by_lambda(tmp_path):
    model, train_data = build(tmp_path, contrastive_weight=0.3, reg_weight=0.05)
    batch = next(iter(train_data)).to(model.device)
    torch.manual_seed(7)
    loss = model.calculate_loss(batch)
    torch.manual_seed(7)
    user_item, representation, l2 = model.contrastive_losses(*batch_items(model, batch))
    torch.testing.assert_close(loss, 0.3 * representation + 0.7 * user_item + 0.05 * l2)


def test_cold_training_items_enter_by_content_and_never_anchor(tmp_path):
    # K = 3: new items have 3 training interactions, and their id embeddings must get no gradient
    name, data_path = planted_split(tmp_path, shots=3)
    config = Config(model="CLCRec", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved"), "num_neg": 8})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("CLCRec")(config, train_data._dataset)
    few = torch.nonzero((model.item_count > 0) & (model.item_count <= model.max_shots)).view(-1)
    assert len(few) > 0
    user = torch.arange(1, len(few) + 1) % (model.n_users - 1) + 1
    items = torch.cat([few.unsqueeze(1), model.sample_negatives(len(few))], dim=1)
    hybrid = model.hybrid_mask(items)
    assert hybrid[:, 0].all()
    user_item, representation, _ = model.contrastive_losses(user, items, hybrid)
    model.zero_grad()
    (user_item + representation).backward()
    assert model.item_embedding.weight.grad[few].abs().sum() == 0
    assert model.user_embedding.weight.grad.abs().sum() > 0
    # negatives come from warm items only, as the authors' cold items never enter training
    negatives = model.sample_negatives(500)
    assert (model.item_count[negatives] > model.max_shots).all()


def test_cold_items_are_represented_by_content(tmp_path):
    model, _ = build(tmp_path)
    model.eval()
    cold = torch.nonzero(model.item_count[1:] == 0).view(-1) + 1
    warm = torch.nonzero(model.item_count > model.max_shots).view(-1)
    users = torch.tensor([1, 2], device=model.device)
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
        user_e = model.user_embedding(users)
        torch.testing.assert_close(scores[:, cold], user_e @ model.content_embedding(cold).T)
        torch.testing.assert_close(scores[:, warm], user_e @ model.item_embedding(warm).T)


def test_training_beats_untrained_on_planted_pattern(tmp_path):
    name, data_path = planted_split(tmp_path, shots=0)
    untrained = train_and_test("CLCRec", name, data_path, epochs=0)
    trained = train_and_test("CLCRec", name, data_path, epochs=5)
    assert trained["ndcg@10"] > untrained["ndcg@10"]
