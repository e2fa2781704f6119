"""LWA: an item's classifier weights are the documented function of its support users; training helps."""

from __future__ import annotations

from pathlib import Path

import torch
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, init_seed

from recbole_fewshot.data.split import read_manifest


def build(name: str, data_path: Path, **overrides):
    config = Config(model="LWA", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(data_path.parent / "saved"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("LWA")(config, train_data._dataset)
    with torch.no_grad():  # make both classes matter
        model.positive_weight.fill_(0.8)
        model.negative_weight.fill_(-0.6)
    return model.eval(), train_data._dataset


def expected_weights(model, dataset, item: int, positives: list[int]) -> torch.Tensor:
    """omega_1 * mean(content, F(positives)) + omega_0 * mean(F(negatives)), F from the training table."""
    inter = dataset.inter_feat
    table = model.item_embedding.weight

    def f(user: int) -> torch.Tensor:
        items = inter["item_id"][inter["user_id"] == user]
        return table[items].mean(0)

    negatives = model.neg_support[item, : model.neg_support_len[item]].tolist()
    r1 = torch.stack([model.content(torch.tensor([item]))[0]] + [f(u) for u in positives]).mean(0)
    r0 = torch.stack([f(u) for u in negatives]).mean(0)
    return model.positive_weight * r1 + model.negative_weight * r0


def test_item_weights_are_the_function_of_its_support_users(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, dataset = build(name, data_path, max_shots=5)  # room in the support set for one more user
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    item = int(dataset.token2id("item_id", manifest["test_new_items"][0]))
    inter = dataset.inter_feat
    buyers = inter["user_id"][inter["item_id"] == item].tolist()
    negatives = set(model.neg_support[item, : model.neg_support_len[item]].tolist())
    assert len(buyers) == 3 and len(negatives) > 0 and not negatives & set(buyers)

    users = torch.arange(1, model.n_users)
    with torch.no_grad():
        weights = model.item_weights(torch.tensor([item]))[0]
        assert torch.allclose(weights, expected_weights(model, dataset, item, buyers), atol=1e-6)
        before = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)

        newcomer = next(u for u in range(1, model.n_users) if u not in buyers and u not in negatives)
        model.support[item, 3] = newcomer
        model.support_len[item] = 4
        model.eval()  # drop the cached item classifiers
        weights = model.item_weights(torch.tensor([item]))[0]
        after = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)

    assert torch.allclose(weights, expected_weights(model, dataset, item, buyers + [newcomer]), atol=1e-6)
    changed = (after != before).any(0)
    assert changed[item] and changed.sum() == 1  # only that item's scores move


def test_zero_shot_positive_class_is_the_content_vector(in_tmp):
    name, data_path = planted_split(in_tmp, shots=0)
    model, dataset = build(name, data_path)
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    item = torch.tensor(dataset.token2id("item_id", manifest["test_new_items"][:1]))
    with torch.no_grad():
        r0, r1 = model.representatives(item)
        assert model.support_len[item].item() == 0
        assert torch.allclose(r1, model.content(item)) and r1.abs().sum() > 0
        assert torch.allclose(model.item_weights(item), expected_weights(model, dataset, int(item), []), atol=1e-6)


def test_full_sort_agrees_with_pairwise_predict_without_the_scored_user(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, _ = build(name, data_path)
    item = 7
    user = int(model.neg_support[item, 0])  # a user in the item's negative support
    with torch.no_grad():
        full = model.full_sort_predict(Interaction({"user_id": torch.tensor([user])}))
        pairs = model.predict(Interaction({"user_id": torch.full((model.n_items,), user),
                                           "item_id": torch.arange(model.n_items)}))
        r0, _ = model.representatives(torch.tensor([item]), exclude=torch.tensor([user]))
        kept = model.neg_support[item, : model.neg_support_len[item]]
        kept = kept[kept != user]
    assert torch.allclose(full[1:], pairs[1:], atol=1e-5)
    assert torch.allclose(r0[0], model.user_vectors(kept).mean(0), atol=1e-6)


def test_training_beats_untrained(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    untrained = train_and_test("LWA", name, data_path, epochs=0)
    trained = train_and_test("LWA", name, data_path, epochs=5)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05
