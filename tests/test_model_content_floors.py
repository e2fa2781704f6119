"""The content floors ContentProfile, ContentKNN and ContentRidge: scores against numbers computed by hand.

Every expected number is built here with numpy from the training split's item features and
interactions alone (content codes, profiles, neighbours, co-purchases, the ridge normal equations), and
compared with the model's scores within a stated tolerance: the model computes in float32 (float64 for
its cosines and its ridge solve), the hand computation in float64.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from planted import planted_split, train_and_test
from recbole.data.interaction import Interaction

from conftest import build_pipeline, build_trainer
from recbole_fewshot import registry

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # float32 scores against float64 hand computations
FLOORS = ["ContentProfile", "ContentKNN", "ContentRidge"]
BACKBONE_FLOORS = ["ContentKNN", "ContentRidge"]
THRESHOLDS = 16  # the content pipeline's default content_thresholds
FAST_BACKBONE = {"backbone_epochs": 3}


def build(model: str, split, workdir, **overrides):
    """The untrained model (its backbone at its random start) and its training dataset, in eval mode."""
    name, data_path = split
    config, _, train_data, _, _ = build_pipeline(model, name, data_path, workdir, **overrides)
    return build_trainer(config, train_data).model.eval(), train_data._dataset


def all_scores(model) -> np.ndarray:
    users = torch.arange(1, model.n_users)
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({model.USER_ID: users}))
    return scores.view(len(users), -1).double().numpy()


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def hand_content(dataset, fields=("genre", "tags", "price")) -> np.ndarray:
    """Content vectors by hand: genre one-hot, tags bag, price as [z-score, 1[price >= quantile] ...],
    each unit-normalised, concatenated (row 0, the padding item, is zero). Columns may be ordered
    otherwise than the model's: cosines and ridge predictions do not depend on the order."""
    feat = dataset.item_feat
    n = dataset.item_num
    parts = []
    if "genre" in fields:
        genre = feat["genre"].numpy()
        parts.append(unit_rows((genre[:, None] == np.unique(genre[1:])[None, :]).astype(float)))
    if "tags" in fields:
        tags = feat["tags"].numpy()
        vocabulary = np.unique(tags[tags > 0])
        bag = np.stack([(tags == token).sum(1) for token in vocabulary], axis=1).astype(float)
        assert (bag[1:] > 0).sum(0).min() >= 5, "every tag is on 5 items: the pipeline keeps every tag"
        parts.append(unit_rows(bag))
    if "price" in fields:
        price = feat["price"].numpy().astype(np.float64)
        real = price[1:]
        quantiles = np.quantile(real, np.linspace(0, 1, THRESHOLDS + 2)[1:-1]).astype(np.float32)
        z = np.clip((price - real.mean()) / real.std(ddof=1), -5, 5)
        code = np.concatenate([z[:, None], (price[:, None].astype(np.float32) >= np.unique(quantiles)).astype(float)], 1)
        code[0] = 0.0
        parts.append(unit_rows(code))
    content = np.concatenate(parts, axis=1)
    content[0] = 0.0
    assert content.shape[0] == n
    return content


def training_pairs(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) training pairs, and every item's training interaction count."""
    users = dataset.inter_feat[dataset.uid_field].numpy()
    items = dataset.inter_feat[dataset.iid_field].numpy()
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    return pairs, np.bincount(items, minlength=dataset.item_num)


def cold_and_warm(counts: np.ndarray, max_shots: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(len(counts))
    return ids[(counts <= max_shots) & (ids > 0)], ids[counts > max_shots]


def backbone(model) -> tuple[np.ndarray, np.ndarray]:
    return (model.backbone.user_embedding.weight.detach().double().numpy(),
            model.backbone.item_embedding.weight.detach().double().numpy())


def expected_backbone_scores(model, vectors: dict[int, np.ndarray]) -> np.ndarray:
    """Backbone user vector . item vector, with ``vectors`` replacing the backbone vectors of cold items."""
    users, items = backbone(model)
    items = items.copy()
    for item, vector in vectors.items():
        items[item] = vector
    return users[1:] @ items.T


def nearest_by_hand(content: np.ndarray, item: int, warm: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` warm items of highest cosine to ``item`` (rounded to 9 decimals), ties to the lower id."""
    similarity = np.round(unit_rows(content[warm]) @ unit_rows(content[[item]])[0], 9)
    return warm[np.lexsort((warm, -similarity))[:k]]


# --- registry -------------------------------------------------------------------------------------

def test_floors_are_registered_plugin_models_with_their_trainers():
    import recbole.trainer

    models = registry.plugin_models()
    for name in FLOORS:
        assert name in models
        assert registry.model_config_file(name) is not None
    assert not registry.has_backbone("ContentProfile")
    for name in BACKBONE_FLOORS:
        assert registry.has_backbone(name)
        assert hasattr(recbole.trainer, f"{name}Trainer")


# --- ContentProfile -------------------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
def test_content_profile_scores_are_the_cosines_computed_by_hand(planted_k2, in_tmp):
    model, dataset = build("ContentProfile", planted_k2, in_tmp)
    content = hand_content(dataset)
    pairs, _ = training_pairs(dataset)
    profiles = np.zeros((dataset.user_num, content.shape[1]))
    for user in range(1, dataset.user_num):
        history = pairs[pairs[:, 0] == user, 1]
        assert len(history) > 0
        profiles[user] = content[history].mean(0)
    expected = unit_rows(profiles)[1:] @ unit_rows(content).T
    # item 0 is RecBole's padding item (never ranked), whose features RecBole fills with the column means
    np.testing.assert_allclose(all_scores(model)[:, 1:], expected[:, 1:], **TOLERANCE)


@pytest.mark.usefixtures("in_tmp")
def test_content_profile_on_tokens_scores_the_tf_idf_cosines_computed_by_hand(planted_k2, in_tmp):
    model, dataset = build("ContentProfile", planted_k2, in_tmp, content_vectors="tokens")
    genre, tags = dataset.item_feat["genre"].numpy(), dataset.item_feat["tags"].numpy()
    carried = [{("genre", int(genre[i]))} | {("tags", int(t)) for t in tags[i] if t} for i in range(dataset.item_num)]
    items_with = {}
    for tokens in carried[1:]:  # row 0 is the padding item
        for token in tokens:
            items_with[token] = items_with.get(token, 0) + 1
    kept = sorted(token for token, count in items_with.items() if count >= 2)
    idf = np.array([max(math.log((dataset.item_num - 1) / (1 + items_with[t])), 0.0) for t in kept])
    vectors = unit_rows(np.array([[t in tokens for t in kept] for tokens in carried], dtype=float) * idf)
    pairs, _ = training_pairs(dataset)
    profiles = np.stack([vectors[pairs[pairs[:, 0] == user, 1]].mean(0) for user in range(1, dataset.user_num)])
    expected = unit_rows(profiles) @ vectors.T
    np.testing.assert_allclose(all_scores(model)[:, 1:], expected[:, 1:], **TOLERANCE)


def test_content_profile_names_a_bad_content_vectors_setting(planted_k2, in_tmp):
    with pytest.raises(ValueError, match="content_vectors must be one of codes, tokens"):
        build("ContentProfile", planted_k2, in_tmp, content_vectors="words")


@pytest.mark.usefixtures("in_tmp")
def test_content_profile_without_item_features_scores_zero_and_warns(tmp_path, in_tmp, caplog):
    split = planted_split(tmp_path / "plain", shots=2, with_features=False)
    with caplog.at_level(logging.WARNING):
        model, _ = build("ContentProfile", split, in_tmp)
    assert "no item features" in caplog.text
    scores = all_scores(model)
    assert scores.shape == (model.n_users - 1, model.n_items) and not scores.any()


# --- ContentKNN -----------------------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
def test_content_knn_cold_items_take_the_mean_of_their_content_neighbours(planted_k2, in_tmp):
    # genre and tags only: items of a group share their content, so the neighbours are the lowest-id warm
    # items of the cold item's group (the tie rule), and no cosine is near another
    fields = ["genre", "tags"]
    model, dataset = build("ContentKNN", planted_k2, in_tmp, item_content_fields=fields, knn_k=3, **FAST_BACKBONE)
    content = hand_content(dataset, fields)
    _, counts = training_pairs(dataset)
    cold, warm = cold_and_warm(counts, model.max_shots)
    assert len(cold) >= 10 and len(warm) >= 10
    _, items = backbone(model)
    vectors = {int(i): items[nearest_by_hand(content, i, warm, 3)].mean(0) for i in cold}
    np.testing.assert_allclose(all_scores(model), expected_backbone_scores(model, vectors), **TOLERANCE)


@pytest.mark.usefixtures("in_tmp")
def test_content_knn_neighbours_are_the_nearest_warm_items_by_hand(planted_k2, in_tmp):
    # every field: the price makes the cosines differ within a group; the set of neighbours' cosines must be
    # the k highest (compared as values, so no float tie at the k-th place can decide the test)
    k = 5
    model, dataset = build("ContentKNN", planted_k2, in_tmp, knn_k=k, **FAST_BACKBONE)
    unit = unit_rows(hand_content(dataset))
    _, counts = training_pairs(dataset)
    cold, warm = cold_and_warm(counts, model.max_shots)
    np.testing.assert_array_equal(model.cold_items.numpy(), cold)
    neighbours = model.neighbours.numpy()
    assert neighbours.shape == (len(cold), k)
    for row, item in enumerate(cold):
        assert set(neighbours[row]) <= set(warm)
        chosen = np.sort(unit[neighbours[row]] @ unit[item])
        best = np.sort(unit[warm] @ unit[item])[-k:]
        np.testing.assert_allclose(chosen, best, rtol=0, atol=1e-6)


@pytest.mark.usefixtures("in_tmp")
def test_content_knn_blends_the_support_buyers_co_purchases_by_hand(planted_k2, in_tmp):
    fields, k, weight = ["genre", "tags"], 3, 0.5
    model, dataset = build("ContentKNN", planted_k2, in_tmp, item_content_fields=fields, knn_k=k,
                           support_weight=weight, **FAST_BACKBONE)
    content = hand_content(dataset, fields)
    pairs, counts = training_pairs(dataset)
    cold, warm = cold_and_warm(counts, model.max_shots)
    _, items = backbone(model)
    bought = np.zeros((dataset.user_num, dataset.item_num))
    bought[pairs[:, 0], pairs[:, 1]] = 1.0
    vectors, blended = {}, 0
    for item in cold:
        neighbour_mean = items[nearest_by_hand(content, item, warm, k)].mean(0)
        buyers = np.nonzero(bought[:, item])[0]
        co_bought = bought[buyers][:, warm].sum(0)  # per warm item, how many of the buyers bought it
        if co_bought.sum() == 0:
            vectors[int(item)] = neighbour_mean
            continue
        buyer_mean = co_bought @ items[warm] / co_bought.sum()
        share = weight * len(buyers) / (1 + weight * len(buyers))
        vectors[int(item)] = (1 - share) * neighbour_mean + share * buyer_mean
        blended += 1
    assert blended >= 10, "the K = 2 split's new items have buyers"
    np.testing.assert_allclose(all_scores(model), expected_backbone_scores(model, vectors), **TOLERANCE)

    ignored, _ = build("ContentKNN", planted_k2, in_tmp, item_content_fields=fields, knn_k=k, **FAST_BACKBONE)
    neighbours_only = {int(i): items[nearest_by_hand(content, i, warm, k)].mean(0) for i in cold}
    np.testing.assert_allclose(all_scores(ignored), expected_backbone_scores(ignored, neighbours_only), **TOLERANCE)


# --- ContentRidge ---------------------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("ridge_lambda", [1.0, 30.0])
def test_content_ridge_solves_the_normal_equations_by_hand(planted_k2, in_tmp, ridge_lambda):
    model, dataset = build("ContentRidge", planted_k2, in_tmp, ridge_lambda=ridge_lambda, **FAST_BACKBONE)
    inputs = np.concatenate([hand_content(dataset), np.ones((dataset.item_num, 1))], axis=1)
    _, counts = training_pairs(dataset)
    cold, warm = cold_and_warm(counts, model.max_shots)
    _, items = backbone(model)
    x, y = inputs[warm], items[warm]
    weights = np.linalg.solve(x.T @ x + ridge_lambda * np.eye(x.shape[1]), x.T @ y)
    vectors = dict(zip(cold.tolist(), inputs[cold] @ weights))
    np.testing.assert_allclose(all_scores(model), expected_backbone_scores(model, vectors), **TOLERANCE)


# --- both backbone floors -------------------------------------------------------------------------

@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("name", BACKBONE_FLOORS)
def test_warm_items_keep_their_backbone_vector_and_cold_items_never_read_theirs(name, planted_k2, in_tmp):
    buyers = {"support_weight": 1.0} if name == "ContentKNN" else {}  # ContentKNN reads its buyers' items too
    model, dataset = build(name, planted_k2, in_tmp, **buyers, **FAST_BACKBONE)
    _, counts = training_pairs(dataset)
    cold, warm = cold_and_warm(counts, model.max_shots)
    users, items = backbone(model)
    before = all_scores(model)
    np.testing.assert_allclose(before[:, warm], users[1:] @ items[warm].T, **TOLERANCE)

    with torch.no_grad():
        model.backbone.item_embedding.weight[torch.as_tensor(cold)] = math.nan
    model.train()
    model.eval()  # a new evaluation: the item table is rebuilt from the changed backbone
    after = all_scores(model)
    assert np.isfinite(after).all()
    np.testing.assert_array_equal(after, before)


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("name", BACKBONE_FLOORS)
def test_backbone_floors_without_item_features_warn_and_still_score(name, tmp_path, in_tmp, caplog):
    split = planted_split(tmp_path / "plain", shots=2, with_features=False)
    with caplog.at_level(logging.WARNING):
        model, dataset = build(name, split, in_tmp, **FAST_BACKBONE)
    assert "no item features" in caplog.text
    _, counts = training_pairs(dataset)
    cold, warm = cold_and_warm(counts, model.max_shots)
    _, items = backbone(model)
    if name == "ContentKNN":  # no content neighbours (and buyers ignored): a zero vector
        shared = np.zeros(items.shape[1])
    else:  # the bias column alone: the warm vectors' sum over (number of warm items + ridge_lambda)
        shared = items[warm].sum(0) / (len(warm) + model.ridge_lambda)
    vectors = {int(i): shared for i in cold}
    np.testing.assert_allclose(all_scores(model), expected_backbone_scores(model, vectors), **TOLERANCE)


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("name", FLOORS)
def test_predict_agrees_with_full_sort_predict(name, planted_k2, in_tmp):
    model, _ = build(name, planted_k2, in_tmp, **FAST_BACKBONE)
    full = torch.as_tensor(all_scores(model))
    generator = torch.Generator().manual_seed(0)
    users = torch.randint(1, model.n_users, (500,), generator=generator)
    items = torch.randint(0, model.n_items, (500,), generator=generator)
    with torch.no_grad():
        pairs = model.predict(Interaction({model.USER_ID: users, model.ITEM_ID: items})).double()
    torch.testing.assert_close(pairs, full[users - 1, items], **TOLERANCE)


@pytest.mark.usefixtures("in_tmp")
@pytest.mark.parametrize("name", BACKBONE_FLOORS)
def test_backbone_floors_train_the_backbone_then_one_epoch(name, planted_k2, in_tmp):
    split_name, data_path = planted_k2
    config, _, train_data, valid_data, _ = build_pipeline(name, split_name, data_path, in_tmp, epochs=4,
                                                          **FAST_BACKBONE)
    trainer = build_trainer(config, train_data)
    start = trainer.model.backbone.item_embedding.weight.detach().clone()
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    assert len(trainer.train_loss_dict) == 1 and trainer.train_loss_dict[0] == 0.0
    assert not torch.equal(trainer.model.backbone.item_embedding.weight, start), "the backbone was trained"


@pytest.mark.parametrize("shots", [0, 3])
@pytest.mark.parametrize("name", FLOORS)
def test_zero_and_few_shot_runs_evaluate(name, shots, tmp_path, in_tmp):
    split_name, data_path = planted_split(tmp_path / "split", shots=shots)
    result = train_and_test(name, split_name, data_path, epochs=1, **FAST_BACKBONE)
    assert 0.0 <= result["ndcg@10"] <= 1.0
