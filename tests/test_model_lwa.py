"""LWA: each user is a task; an item is scored from its content by the user's history-adapted weights."""

from __future__ import annotations

import torch
from planted import planted_split
from recbole.data.interaction import Interaction
from user_task import ATOL, all_scores, build


def test_class_representatives_are_the_history_means_and_follow_the_history(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, dataset = build("LWA", name, data_path)
    inter = dataset.inter_feat
    user = 5
    with torch.no_grad():
        table = model.item_vectors(torch.arange(model.n_items))
        history = model.history[user][model.history[user] > 0]
        seen = set(inter["item_id"][inter["user_id"] == user].tolist())
        weight = model.pool_weight.clone()
        weight[list(seen)] = 0.0
        r0, r1 = model.representatives(torch.tensor([user]))
        assert torch.allclose(r1[0], table[history].mean(0), atol=ATOL)
        assert torch.allclose(r0[0], (weight.unsqueeze(1) * table).sum(0) / weight.sum(), atol=ATOL)
        before = all_scores(model)

        # Another history (ten warm items the user never interacted with): another R^1, the same R^0 (the
        # training split is unchanged), the user's scores move and nobody else's.
        others = [i for i in range(1, model.n_items) if i not in seen and model.pool_weight[i] > 0][:10]
        model.history[user] = 0
        model.history[user, : len(others)] = torch.tensor(others)
        model.eval()
        r0_new, r1_new = model.representatives(torch.tensor([user]))
        after = all_scores(model)
    assert torch.allclose(r1_new[0], table[others].mean(0), atol=ATOL) and not torch.allclose(r1_new, r1, atol=ATOL)
    assert torch.allclose(r0_new, r0, atol=ATOL)
    moved = ~torch.isclose(after, before, atol=ATOL).all(1)
    assert moved[user - 1] and moved.sum() == 1


def test_full_sort_agrees_with_pairwise_predict_and_is_cached(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, _ = build("LWA", name, data_path)
    user = 9
    with torch.no_grad():
        full = model.full_sort_predict(Interaction({"user_id": torch.tensor([user])}))
        assert model._score_tables is not None
        pairs = model.predict(Interaction({"user_id": torch.full((model.n_items,), user),
                                           "item_id": torch.arange(model.n_items)}))
        r0, r1 = model.representatives(torch.tensor([user]))
        f = model.item_vectors(torch.arange(model.n_items))
        direct = f @ (model.positive_weight * r1[0] + model.negative_weight * r0[0]) + model.bias
    assert torch.allclose(full, pairs, atol=ATOL) and torch.allclose(full, direct, atol=1e-4)
    model.train()
    assert model._score_tables is None


def test_negatives_are_items_with_training_rows_that_the_user_never_interacted_with(in_tmp):
    name, data_path = planted_split(in_tmp, shots=0)
    model, dataset = build("LWA", name, data_path)
    inter = dataset.inter_feat
    warm = set(inter["item_id"].tolist())
    users = torch.arange(1, model.n_users)
    torch.manual_seed(0)
    items, kept = model.sample_negatives(users, 100)
    assert kept.all()
    for user, row in zip(users.tolist(), items.tolist()):
        seen = set(inter["item_id"][inter["user_id"] == user].tolist())
        assert set(row) <= warm - seen  # zero-shot new items are never drawn


def test_the_query_item_is_not_in_its_episode_support(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, _ = build("LWA", name, data_path)
    model.train()
    users = torch.tensor([3, 8])
    queries = model.history[users, 0].clone()  # each user's first history item is their row's query
    batch = Interaction({"user_id": users, "item_id": queries, "neg_item_id": torch.tensor([1, 2])})
    torch.manual_seed(0)
    loss = model.calculate_loss(batch)
    for user, item in zip(users, queries):  # the query items leave their users' histories
        model.history[user][model.history[user] == item] = 0
    torch.manual_seed(0)  # the same negatives
    assert torch.allclose(model.calculate_loss(batch), loss, atol=1e-6)
