"""LWA and NLBA alike: each user is a task, and an item is seen only through its content."""

from __future__ import annotations

import pytest
import torch
from planted import planted_split, train_and_test
from user_task import ATOL, all_scores, build

from recbole_fewshot.data.split import read_manifest

MODELS = pytest.mark.parametrize("model_name", ["LWA", "NLBA"])


@MODELS
def test_items_of_identical_content_score_identically_whatever_their_buyers(in_tmp, model_name):
    name, data_path = planted_split(in_tmp, shots=3)
    model, dataset = build(model_name, name, data_path)
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


@MODELS
def test_zero_shot_items_of_the_genre_of_the_users_history_rank_first_after_training(in_tmp, model_name):
    """A history of one genre, of warm items or of new items no training row ever named: the user's
    zero-shot test items of that genre outrank all the others (content, not ids, carries the history)."""
    name, data_path = planted_split(in_tmp, shots=0)
    model, dataset = build(model_name, name, data_path, epochs=20)
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


@MODELS
def test_training_beats_untrained_at_zero_shots(in_tmp, model_name):
    name, data_path = planted_split(in_tmp, shots=0)
    untrained = train_and_test(model_name, name, data_path, epochs=0)
    trained = train_and_test(model_name, name, data_path, epochs=20)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05
