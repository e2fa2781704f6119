"""NLBA: each user is a task; a shared network scores an item's content, with biases adapted from the user's history."""

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
    """NLBA on a planted split, trained for ``epochs`` epochs (0: untrained), in eval mode, and its training split."""
    config = Config(model="NLBA", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(data_path.parent / "saved"),
        "epochs": epochs, **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("NLBA")(config, train_data._dataset)
    if epochs:
        get_trainer(config["MODEL_TYPE"], "NLBA")(config, model).fit(train_data, valid_data, saved=False)
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


def test_user_biases_are_a_function_of_the_history_only(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, _ = build(name, data_path)
    users = torch.tensor([2, 6])
    with torch.no_grad():
        r0, r1 = model.representatives(users)
        biases = model.adapt(r0, r1)
        assert len(biases) == len(model.layers) + 1
        for adapter, bias in zip(model.adapters, biases):  # the documented function: V^l [R^0; R^1] + c^l
            assert torch.allclose(adapter(torch.cat([r0, r1], -1)), bias, atol=ATOL)
        assert all(not torch.allclose(bias[0], bias[1], atol=ATOL) for bias in biases)
        full = model.full_sort_predict(Interaction({"user_id": users})).view(2, -1)
        pairs = model.predict(Interaction({"user_id": users.repeat_interleave(model.n_items),
                                           "item_id": torch.arange(model.n_items).repeat(2)})).view(2, -1)
        assert torch.allclose(full, pairs, atol=ATOL)

        # User 6 takes user 2's history: same R^1, so every bias moves (R^0 still reads 6's training items).
        before = all_scores(model)
        model.history[6] = model.history[2]
        model.eval()
        r0_new, r1_new = model.representatives(users)
        changed = model.adapt(r0_new, r1_new)
        after = all_scores(model)
    assert torch.allclose(r1_new[1], r1[0], atol=ATOL) and torch.allclose(r0_new, r0, atol=ATOL)
    for old, new in zip(biases, changed):
        assert torch.allclose(old[0], new[0], atol=ATOL) and not torch.allclose(old[1], new[1], atol=ATOL)
    moved = ~torch.isclose(after, before, atol=ATOL).all(1)
    assert moved[6 - 1] and moved.sum() == 1


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
    untrained = train_and_test("NLBA", name, data_path, epochs=0)
    trained = train_and_test("NLBA", name, data_path, epochs=20)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.1
