"""MWUF: the shifting network reads training buyers only, scaling reads features only; training helps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, get_trainer, init_seed

from recbole_fewshot.data.atomic import read_atomic
from recbole_fewshot.data.split import read_manifest


def build(name: str, data_path: Path, **overrides):
    config = Config(model="MWUF", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(data_path.parent / "saved"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    model = get_model("MWUF")(config, train_data._dataset)
    return config, model, (train_data, valid_data, test_data)


def buyers(data_path: Path, name: str, phase: str) -> dict[str, set[str]]:
    table, _ = read_atomic(data_path / name / f"{name}.{phase}.inter")
    return {item: set(group["user_id"]) for item, group in table.groupby("item_id")}


def test_shifting_network_aggregates_training_buyers_only(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    _, model, (train_data, _, _) = build(name, data_path)
    dataset = train_data._dataset
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    train = buyers(data_path, name, "train")
    queries = {**buyers(data_path, name, "valid"), **buyers(data_path, name, "test")}

    def aggregated(token: str) -> set[str]:
        users, valid = model.shift_users(torch.tensor([dataset.token2id("item_id", token)]))
        return set(dataset.id2token("user_id", users[valid].numpy()).tolist())

    new_items = manifest["valid_new_items"] + manifest["test_new_items"]
    for token in new_items:
        assert aggregated(token) == train[token] and len(train[token]) == 3
        assert not aggregated(token) & queries[token]
    for token in dataset.id2token("item_id", torch.arange(1, dataset.item_num).numpy()):
        assert aggregated(token) <= train.get(token, set())


def test_scaling_depends_on_item_features_only(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    _, model, _ = build(name, data_path)
    model.eval()
    items = torch.arange(1, model.n_items)
    with torch.no_grad():
        torch.nn.init.normal_(model.content.encoders["genre"].weight)  # token embeddings start at zero
        before = model.scaling(items)
        shift_before = model.shifting(items)
        torch.nn.init.normal_(model.backbone.user_embedding.weight)
        torch.nn.init.normal_(model.backbone.item_embedding.weight)
        torch.nn.init.normal_(model.cold_offset.weight)
        model.support.copy_(model.support[torch.randperm(model.n_items)])
        assert torch.equal(model.scaling(items), before)
        assert not torch.allclose(model.shifting(items), shift_before)
        model.content.feature_genre[5] = model.content.feature_genre[5] % (model.content.feature_genre.max()) + 1
        after = model.scaling(items)
    changed = (after != before).any(-1)
    assert changed[4] and changed.sum() == 1  # row 4 is item id 5


def test_zero_shot_item_is_content_scaling_of_mean_embedding(in_tmp):
    name, data_path = planted_split(in_tmp, shots=0)
    _, model, (train_data, _, _) = build(name, data_path)
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    item = torch.tensor(train_data._dataset.token2id("item_id", manifest["test_new_items"][:1]))
    with torch.no_grad():
        mean = model.backbone.item_embedding.weight[model.item_count > 0].mean(0)
        expected = model.scaling(item) * mean
        assert torch.allclose(model.item_representation(item), expected, atol=1e-6)


def test_training_beats_untrained(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    untrained = train_and_test("MWUF", name, data_path, epochs=0)
    # 256-row backbone batches: the planted split's 3k training rows make few 2048-row steps per epoch
    trained = train_and_test("MWUF", name, data_path, epochs=15, backbone_train_batch_size=256, learning_rate=0.01)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05


def test_pretrained_backbone_from_recbole_bpr_checkpoint(in_tmp):
    from recbole.quick_start import run_recbole

    name, data_path = planted_split(in_tmp, shots=3)
    saved = in_tmp / "bpr"
    run_recbole(model="BPR", dataset=name, config_dict={
        "data_path": str(data_path), "checkpoint_dir": str(saved), "epochs": 1, "embedding_size": 16,
        "show_progress": False, "state": "ERROR", "topk": [10], "valid_metric": "NDCG@10"})
    (checkpoint,) = saved.glob("BPR-*.pth")
    bpr = torch.load(checkpoint, weights_only=False, map_location="cpu")["state_dict"]

    config, model, (train_data, valid_data, test_data) = build(
        name, data_path, epochs=1, pretrained_backbone=str(checkpoint), backbone_epochs=50)
    trainer = get_trainer(config["MODEL_TYPE"], "MWUF")(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    for field in ("user_embedding", "item_embedding"):
        weight = getattr(model.backbone, field).weight
        assert torch.equal(weight, bpr[f"{field}.weight"]) and not weight.requires_grad
    assert trainer.evaluate(test_data, load_best_model=False)["ndcg@10"] >= 0

    _, wrong_size, (train_data, valid_data, _) = build(name, data_path, pretrained_backbone=str(checkpoint),
                                                       embedding_size=8)
    with pytest.raises(ValueError, match="embedding_size"):
        get_trainer(config["MODEL_TYPE"], "MWUF")(config, wrong_size).fit(train_data, valid_data, saved=False)


def _rows_with_negatives(model, dataset, support: bool, n_rows: int = 64):
    """Training rows (user, item) that are (or are not) support rows of their item, each paired with a
    negative item that is no row's positive in the batch."""
    users = dataset.inter_feat[dataset.uid_field]
    items = dataset.inter_feat[dataset.iid_field]
    members, valid = model.shift_users(items)
    is_support = ((members == users.unsqueeze(-1)) & valid).any(-1)
    chosen = torch.nonzero(is_support == support).squeeze(1)[:n_rows]
    assert len(chosen) >= 8, "the planted split has too few rows of this kind"
    user, pos = users[chosen], items[chosen]
    others = torch.tensor([i for i in range(1, model.n_items) if i not in set(pos.tolist())])
    neg = others[torch.arange(len(chosen)) % len(others)]
    return user, pos, neg


def _perturbed_mwuf(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    _, model, (train_data, _, _) = build(name, data_path)
    torch.manual_seed(0)
    with torch.no_grad():  # cold embeddings away from the mean, so a cold or warmed negative differs from its base
        torch.nn.init.normal_(model.cold_offset.weight, std=0.5)
        torch.nn.init.normal_(model.content.encoders["genre"].weight)
    return model, train_data._dataset


def _loss_after_backward(in_tmp, support: bool):
    """The perturbed model, rows of support (L_cold) or query (L_warm) pairs with negatives, and their loss,
    backpropagated."""
    model, dataset = _perturbed_mwuf(in_tmp)
    user, pos, neg = _rows_with_negatives(model, dataset, support=support)
    loss = model.calculate_loss(Interaction({model.USER_ID: user, model.ITEM_ID: pos, model.NEG_ITEM_ID: neg}))
    loss.backward()
    return model, user, pos, neg, loss


def test_cold_loss_scores_negatives_with_their_frozen_base_vector(in_tmp):
    model, user, pos, neg, loss = _loss_after_backward(in_tmp, support=True)
    grad = model.cold_offset.weight.grad
    assert torch.count_nonzero(grad[neg]) == 0, "L_cold trained a negative item's cold embedding"
    assert (grad[pos].abs().sum(-1) > 0).all()
    assert model.backbone.item_embedding.weight.grad is None, "the base model stays untouched"
    with torch.no_grad():
        u = model.backbone.user_embedding(user)
        expected = model.loss((u * model.cold_embedding(pos)).sum(-1), (u * model.backbone.item_embedding(neg)).sum(-1))
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)  # same terms, another order of summation


def test_warm_loss_scores_negatives_with_their_frozen_base_vector(in_tmp):
    model, user, pos, neg, loss = _loss_after_backward(in_tmp, support=False)
    assert model.cold_offset.weight.grad is None or torch.count_nonzero(model.cold_offset.weight.grad) == 0
    assert model.backbone.item_embedding.weight.grad is None
    with torch.no_grad():
        u = model.backbone.user_embedding(user)
        warmed = model.warm_embedding(pos)
        expected = model.loss((u * warmed).sum(-1), (u * model.backbone.item_embedding(neg)).sum(-1))
        warmed_negatives = model.loss((u * warmed).sum(-1), (u * model.warm_embedding(neg)).sum(-1))
    assert not torch.allclose(expected, warmed_negatives, rtol=1e-3), "the test cannot tell the two apart"
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
