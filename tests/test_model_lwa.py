"""LWA: each user is a task; an item is scored from its content by the user's history-adapted weights."""

from __future__ import annotations

from pathlib import Path

import torch
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, get_trainer, init_seed

from recbole_fewshot.data.split import read_manifest

ATOL = 1e-5  # float32 sums of the same values taken in another order


def build(name: str, data_path: Path, epochs: int = 0, **overrides):
    """LWA on a planted split, trained for ``epochs`` epochs (0: untrained), in eval mode, and its training split."""
    config = Config(model="LWA", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(data_path.parent / "saved"),
        "epochs": epochs, **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("LWA")(config, train_data._dataset)
    if epochs:
        get_trainer(config["MODEL_TYPE"], "LWA")(config, model).fit(train_data, valid_data, saved=False)
    else:
        with torch.no_grad():  # make both classes matter
            model.positive_weight.fill_(0.8)
            model.negative_weight.fill_(-0.6)
    return model.eval(), train_data._dataset


def all_scores(model) -> torch.Tensor:
    users = torch.arange(1, model.n_users)
    with torch.no_grad():
        return model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)


def test_items_of_identical_content_score_identically_whatever_their_buyers(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, dataset = build(name, data_path)
    inter = dataset.inter_feat
    a, b = 4, 7  # two warm items, each with its own content and buyers
    buyers = [set(inter["user_id"][inter["item_id"] == item].tolist()) for item in (a, b)]
    assert buyers[0] and buyers[1] and buyers[0] != buyers[1]
    before = all_scores(model)
    assert not torch.allclose(before[:, a], before[:, b], atol=ATOL)
    for field in model.content.fields:  # b takes a's content, keeps its buyers
        getattr(model.content, f"feature_{field}")[b] = getattr(model.content, f"feature_{field}")[a]
    model.eval()  # drop the cached tables
    after = all_scores(model)
    assert torch.allclose(after[:, a], after[:, b], atol=ATOL)


def test_class_representatives_are_the_history_means_and_follow_the_history(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, dataset = build(name, data_path)
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
    model, _ = build(name, data_path)
    user = 9
    with torch.no_grad():
        full = model.full_sort_predict(Interaction({"user_id": torch.tensor([user])}))
        assert model._eval_tables is not None
        pairs = model.predict(Interaction({"user_id": torch.full((model.n_items,), user),
                                           "item_id": torch.arange(model.n_items)}))
        r0, r1 = model.representatives(torch.tensor([user]))
        f = model.item_vectors(torch.arange(model.n_items))
        direct = f @ (model.positive_weight * r1[0] + model.negative_weight * r0[0]) + model.bias
    assert torch.allclose(full, pairs, atol=ATOL) and torch.allclose(full, direct, atol=1e-4)
    model.train()
    assert model._eval_tables is None


def test_negatives_are_items_with_training_rows_that_the_user_never_interacted_with(in_tmp):
    name, data_path = planted_split(in_tmp, shots=0)
    model, dataset = build(name, data_path)
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
    model, _ = build(name, data_path)
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


def test_zero_shot_items_of_the_genre_of_the_users_history_rank_first_after_training(in_tmp):
    """A history of one genre, of warm items or of new items no training row ever named: the user's
    zero-shot test items of that genre outrank all the others (content, not ids, carries the history)."""
    name, data_path = planted_split(in_tmp, shots=0)
    model, dataset = build(name, data_path, epochs=20)
    manifest = read_manifest(data_path / name / f"{name}.fewshot.json")
    test_new = dataset.token2id("item_id", manifest["test_new_items"]).tolist()
    valid_new = dataset.token2id("item_id", manifest["valid_new_items"]).tolist()
    warm = torch.unique(dataset.inter_feat["item_id"]).tolist()
    assert not set(warm) & set(test_new + valid_new)  # zero-shot: never in a training history
    genre = [dataset.id2token("genre", int(g)) for g in dataset.item_feat["genre"]]
    user = 1
    for source in (warm, valid_new):
        for liked in ("g0", "g1", "g2"):
            history = [i for i in source if genre[i] == liked][:20]
            assert len(history) >= 5
            model.history[user] = 0
            model.history[user, : len(history)] = torch.tensor(history)
            model.eval()  # drop the cached tables
            scores = all_scores(model)[user - 1, test_new]
            same = torch.tensor([genre[i] == liked for i in test_new])
            assert scores[same].min() > scores[~same].max(), (liked, source is warm)


def test_training_beats_untrained_at_zero_shots(in_tmp):
    name, data_path = planted_split(in_tmp, shots=0)
    untrained = train_and_test("LWA", name, data_path, epochs=0)
    trained = train_and_test("LWA", name, data_path, epochs=20)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05
