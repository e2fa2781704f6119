"""FewShotRec: shapes, masks, training-only support, episodes, onboarding, learning on a planted pattern."""

from __future__ import annotations

import logging
import re

import pandas as pd
import pytest
import torch
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.transform import construct_transform
from recbole.utils import get_flops, get_model, init_seed

from recbole_fewshot.data.atomic import read_atomic
from recbole_fewshot.data.split import read_manifest


def build(tmp_path, shots=3, **overrides):
    name, data_path = planted_split(tmp_path, shots=shots)
    config = Config(model="FewShotRec", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(tmp_path / "saved"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model("FewShotRec")(config, train._dataset)
    return model, train._dataset, dataset, config, (train, valid, test), data_path / name, name


def test_shapes_and_cold_items_ignore_their_id(tmp_path):
    model, train, *_ = build(tmp_path)
    model.eval()
    users = torch.tensor([1, 2, 3])
    from recbole.data.interaction import Interaction

    scores = model.full_sort_predict(Interaction({"user_id": users}))
    assert scores.shape == (3 * model.n_items,)
    pair = model.predict(Interaction({"user_id": users, "item_id": torch.tensor([1, 2, 3])}))
    assert pair.shape == (3,)
    cold = torch.nonzero((model.item_count <= model.max_shots) & (torch.arange(model.n_items) > 0)).squeeze(1)
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
    assert len(cold) and len(warm)
    before = model.item_representation(torch.cat([cold, warm])).clone()
    with torch.no_grad():
        model.item_embedding.weight[cold] += 1.0
    after = model.item_representation(torch.cat([cold, warm]))
    assert torch.equal(before, after), "a few-shot item's id must not be used"
    with torch.no_grad():
        model.item_embedding.weight[warm] += 1.0
    after = model.item_representation(torch.cat([cold, warm]))
    assert not torch.allclose(before[len(cold):], after[len(cold):]), "warm items blend in their id"


def test_evaluation_encodes_every_user_once_and_training_resets_it(tmp_path):
    from recbole.data.interaction import Interaction

    model, *_ = build(tmp_path, behaviour_encoder="gru")
    model.eval()
    model.USER_TABLE_CHUNK = 3  # several encoder calls, one table
    users = torch.tensor([4, 1, 2, 4])
    calls = []
    model.encoder.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    table = model.all_item_table()
    scores = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    assert calls == [3] * (model.n_users // 3) + ([model.n_users % 3] if model.n_users % 3 else []), "every user, in chunks"
    model.full_sort_predict(Interaction({"user_id": users[:2]}))
    assert len(calls) == -(-model.n_users // 3), "kept for the rest of the evaluation"
    with torch.no_grad():
        direct = model.user_representation(users, table) @ table.T
    overlap = model.buyer_overlap.score_all(users, model.support, model.support_len,
                                            (1 - model.id_gate(model.all_items()).squeeze(1)) * (model.all_items() > 0))
    assert torch.allclose(scores, direct + overlap, atol=1e-5), "the table holds what a batch would encode"
    with torch.no_grad():
        model.encoder.gru.weight_hh_l0.add_(0.5)
    assert torch.equal(model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1), scores)
    model.train()
    model.eval()
    moved = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    assert not torch.allclose(moved, scores), "train()/eval() rebuilds it from the current weights"


def test_support_sets_equal_the_training_split(tmp_path):
    model, train, full, config, _, folder, name = build(tmp_path, shots=3)
    inter, _ = read_atomic(folder / f"{name}.train.inter")
    inter["time"] = inter["timestamp"].astype(float)
    manifest = read_manifest(folder / f"{name}.fewshot.json")
    queries = pd.concat([read_atomic(folder / f"{name}.{p}.inter")[0] for p in ("valid", "test")])
    for token in manifest["valid_new_items"] + manifest["test_new_items"]:
        item = int(train.token2id("item_id", token))
        stored = model.support[item, : model.support_len[item]].tolist()
        expected = inter[inter.item_id == token].sort_values("time")["user_id"].tolist()
        assert [train.id2token("user_id", u) for u in stored] == expected
        assert len(stored) == 3
        query_users = set(queries[queries.item_id == token]["user_id"])
        buyers = {train.id2token("user_id", int(u)) for u in model.item_users[model.item_ptr[item]: model.item_ptr[item + 1]]}
        assert not buyers & query_users


def test_episodes_never_include_the_scored_user(tmp_path):
    model, *_ = build(tmp_path, meta_ratio=1.0)
    model.train()
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
    torch.manual_seed(0)
    for _ in range(20):
        items = warm[torch.randint(len(warm), (256,))]
        users = torch.stack([model.item_users[model.item_ptr[i]] for i in items])  # a real buyer of each item
        episode, shots = model.episodes(items)
        support, lengths = model.training_support(users, items, episode, shots)
        assert episode.all()
        assert (lengths <= shots).all()
        for row in range(len(items)):
            chosen = support[row, : lengths[row]]
            assert (chosen > 0).all()
            assert users[row] not in chosen.tolist()
    assert lengths.float().std() > 0, "K' is drawn from 0..max_shots"


def test_training_rows_reuse_the_stored_item_vector_only_where_it_is_the_same(tmp_path):
    model, *_ = build(tmp_path, meta_ratio=0.5)
    model.train()
    torch.manual_seed(0)
    items = torch.randint(1, model.n_items, (512,))
    users = torch.where(torch.rand(512) < 0.5, model.support[items, 0], torch.randint(1, model.n_users, (512,)))
    episode = (torch.rand(512) < 0.3) & (model.item_count[items] > model.max_shots)
    shots = torch.randint(0, model.max_shots + 1, (512,))
    fast, generated, *_ = model.training_item_representation(users, items, episode, shots)
    assert generated.shape == (int(episode.sum()), model.embedding_size)
    support, support_len = model.training_support(users, items, torch.zeros_like(episode), shots)
    reference = model._blend(items, model.cold_item_embedding(model.content(items), support, support_len))
    plain = ~episode
    assert (users[plain].unsqueeze(1) == model.support[items[plain]]).any(), "some rows must drop their own user"
    assert torch.allclose(fast[plain], reference[plain], atol=1e-6)
    assert not torch.allclose(fast[episode], reference[episode]), "episode rows hide the id and resample"


def test_episode_rows_hide_both_ids_and_train_the_cold_module(tmp_path):
    model, train, *_ = build(tmp_path, meta_ratio=1.0)
    model.train()
    item = torch.nonzero(model.item_count > model.max_shots).squeeze(1)[0]
    items = item.repeat(8)
    users = model.item_users[model.item_ptr[item]: model.item_ptr[item] + 8]  # real buyers, each scored once
    episode, shots = model.episodes(items)
    torch.manual_seed(0)
    vectors, generated, *_ = model.training_item_representation(users, items, episode, shots)
    with torch.no_grad():
        model.item_embedding.weight[item] += 100.0
    torch.manual_seed(0)  # the same sampled supports again
    again, *_ = model.training_item_representation(users, items, episode, shots)
    assert torch.allclose(vectors, again, atol=1e-4), "an episode item must not read its id embedding"
    model.zero_grad()
    model.alignment_loss(items[episode], generated).backward()
    assert model.fuse[0].weight.grad.abs().sum() > 0
    assert model.item_embedding.weight.grad is None, "the id is the alignment's target, not an input"


@pytest.mark.parametrize("settings", [{"support_users": "embedding"}, {"support_users": "history"},
                                      {"buyer_overlap": True}])
def test_onboarding_matches_full_sort_and_uses_support(tmp_path, settings):
    model, train, full, config, _, folder, name = build(tmp_path, shots=3, **settings)
    model.eval()
    manifest = read_manifest(folder / f"{name}.fewshot.json")
    items, _ = read_atomic(folder / f"{name}.item")
    token = manifest["test_new_items"][0]
    item = int(train.token2id("item_id", token))
    row = items[items.item_id == token].iloc[0].to_dict()
    support = [train.id2token("user_id", int(u)) for u in model.support[item, : model.support_len[item]]]
    onboarded = model.onboard([row], [support])
    assert torch.allclose(onboarded.embedding[0], model.all_item_table()[item], atol=1e-5)
    users = ["u1", "u2", "u3"]
    scores = model.score_onboarded(users, onboarded)
    user_ids = torch.tensor([int(train.token2id("user_id", u)) for u in users])
    from recbole.data.interaction import Interaction

    full_sort = model.full_sort_predict(Interaction({"user_id": user_ids})).view(len(users), -1)[:, item]
    assert torch.allclose(scores[:, 0], full_sort, atol=1e-5)
    assert len(support) == model.max_shots == 3  # the split's max_shots
    fewer = model.onboard([row], [support[:-1]])
    assert not torch.allclose(fewer.embedding, onboarded.embedding), "adding a support user changes the item"
    assert not torch.allclose(model.score_onboarded(users, fewer), scores), "and its scores"
    with pytest.raises(ValueError, match=r"users \['nobody'\] are not user_id tokens"):
        model.score_onboarded(["u1", "nobody"], onboarded)


def test_history_support_users_read_their_training_history(tmp_path):
    model, train, *_ = build(tmp_path, shots=3, support_users="history")
    assert not hasattr(model, "support_user_embedding")
    model.eval()
    users = torch.arange(1, model.n_users)
    before = model.support_user_vectors(users).clone()
    model.USER_TABLE_CHUNK = 3
    model.eval()
    # two chunkings of one GRU agree to float rounding (the order of the reductions differs), hence atol
    assert torch.allclose(model.support_user_vectors(users), before, atol=1e-6), "encoded in chunks, same table"
    cached = model.support_user_vectors(users).clone()
    warm = int(torch.nonzero(model.item_count > model.max_shots)[0])
    readers = (model.history[users] == warm).any(dim=1)
    assert readers.any() and not readers.all()
    with torch.no_grad():
        model.item_embedding.weight[warm] += 1.0
    assert torch.equal(model.support_user_vectors(users), cached), "kept until the next train()/eval()"
    model.eval()
    after = model.support_user_vectors(users)
    changed = (after - cached).abs().sum(dim=1) > 1e-6  # same chunking as the cached table: non-readers keep their bits
    assert torch.equal(changed, readers), "a support user is their own training history"
    with pytest.raises(ValueError, match="support_users"):
        build(tmp_path / "bad", support_users="ids")


def test_gru_history_mean_carries_the_prefix_mean_of_the_history(tmp_path):
    model, *_ = build(tmp_path, gru_history_mean=True)
    model.eval()
    users = torch.tensor([1, 2, 3])
    history = model.history[users]
    embedded = model.item_representation(history.view(-1)).view(*history.shape, -1) * (history > 0).unsqueeze(-1)
    states = model.encode_history(history, embedded)
    assert states.shape == (3, history.shape[1], 2 * model.embedding_size)
    steps = torch.arange(1, history.shape[1] + 1).view(1, -1, 1)
    assert torch.allclose(states[..., model.embedding_size:], embedded.cumsum(dim=1) / steps, atol=1e-6)
    plain, *_ = build(tmp_path / "plain", gru_history_mean=False)
    assert plain.encode_history(history, embedded).shape[-1] == model.embedding_size


@pytest.mark.parametrize("encoder", ["gru", "cnn"])
def test_training_beats_untrained_on_planted_pattern(tmp_path, encoder):
    name, data_path = planted_split(tmp_path, shots=0)
    untrained = train_and_test("FewShotRec", name, data_path, epochs=0, behaviour_encoder=encoder)
    trained = train_and_test("FewShotRec", name, data_path, epochs=8, behaviour_encoder=encoder, learning_rate=0.005)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05


@pytest.mark.parametrize("key, value", [
    ("behaviour_encoder", "lstm"), ("support_aggregation", "sum"), ("episode_negatives", "hard"),
    ("max_shots", -1), ("max_history_len", 0), ("embedding_size", 0), ("meta_ratio", 1.5), ("meta_ratio", "lots"),
    ("dropout_prob", 1.0), ("alignment_weight", -0.1), ("warm_epochs", -1), ("cnn_filters", 0),
    ("cnn_heights", []), ("cnn_heights", [2, 0]), ("cnn_heights", 3), ("buyer_overlap", "yes"),
    ("gru_history_mean", 1), ("warm_epochs", 2.5),
])
def test_a_setting_out_of_range_is_named_with_its_allowed_values(tmp_path, key, value):
    with pytest.raises(ValueError, match=rf"FewShotRec: {key} must be .*got {re.escape(repr(value))}.*FewShotRec.yaml"):
        build(tmp_path, **{key: value})


def test_the_settings_ranges_admit_their_edges(tmp_path):
    model, *_ = build(tmp_path, meta_ratio=1, dropout_prob=0.0, max_shots=0, alignment_weight=0, warm_epochs=0,
                      support_aggregation="none", cnn_heights=[1])
    assert model.max_shots == 0 and model.support.shape[1] == 0


def test_runs_without_item_features_and_says_so(tmp_path, caplog):
    name, data_path = planted_split(tmp_path, shots=3, with_features=False)
    with caplog.at_level(logging.WARNING):
        result = train_and_test("FewShotRec", name, data_path, epochs=1)
    assert 0.0 <= result["ndcg@10"] <= 1.0
    assert any("no item features" in r.getMessage() for r in caplog.records)


def test_flops_probe_and_determinism(tmp_path):
    model, train, full, config, *_ = build(tmp_path)
    assert get_flops(model, full, config["device"], logging.getLogger(), construct_transform(config)) > 0
    name, data_path = planted_split(tmp_path / "again", shots=3)
    first = train_and_test("FewShotRec", name, data_path, epochs=1)
    second = train_and_test("FewShotRec", name, data_path, epochs=1)
    assert first == second


def test_cold_negatives_carry_no_loss(tmp_path):
    # K = 3: new items have 3 training interactions; they, like every item with at most max_shots
    # training interactions, are never negatives
    model, train, *_ = build(tmp_path, shots=3, alignment_weight=0.0, meta_ratio=0.0)
    model.train()
    from recbole.data.interaction import Interaction

    cold = torch.nonzero(model.item_count <= model.max_shots).squeeze(1)
    cold = cold[cold > 0]
    assert (model.item_count[cold] == 3).any()
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
    users = model.item_users[model.item_ptr[warm[:4]]]
    batch = {"user_id": users, "item_id": warm[:4]}
    for start in range(0, len(cold) - 3, 4):
        assert model.calculate_loss(Interaction({**batch, "neg_item_id": cold[start:start + 4]})).item() == 0.0
    assert model.calculate_loss(Interaction({**batch, "neg_item_id": warm[-4:]})).item() > 0.0


def test_cold_negatives_switch_keeps_few_shot_but_not_unsold_negatives(tmp_path):
    from recbole.data.interaction import Interaction

    for shots, cold_count in ((0, 0), (3, 3)):  # K = 0: new items unsold; K = 3: three sales each
        model, *_ = build(tmp_path / str(shots), shots=shots, alignment_weight=0.0, meta_ratio=0.0, cold_negatives=True)
        model.train()
        cold = torch.nonzero(model.item_count == cold_count).squeeze(1)
        cold = cold[cold > 0]
        warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
        assert len(cold) >= 4
        users = model.item_users[model.item_ptr[warm[:4]]]
        loss = model.calculate_loss(Interaction({"user_id": users, "item_id": warm[:4], "neg_item_id": cold[:4]}))
        assert (loss.item() > 0.0) == (cold_count > 0)


def test_in_batch_negatives_pair_episode_rows_and_drop_clashes(tmp_path):
    model, *_ = build(tmp_path, meta_ratio=0.5, episode_negatives="in_batch")
    model.train()
    torch.manual_seed(0)
    users = torch.randint(1, model.n_users, (512,))
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
    pos = warm[torch.randint(len(warm), (512,))]
    neg = torch.randint(1, model.n_items, (512,))
    episode, _ = model.episodes(pos)
    assert 1 < episode.sum() < 512
    new_neg, usable = model.in_batch_negatives(users, pos, neg, episode)
    assert torch.equal(new_neg[~episode], neg[~episode]) and usable[~episode].all(), "other rows keep RecBole's"
    assert set(new_neg[episode].tolist()) <= set(pos[episode].tolist())
    assert sorted(new_neg[episode].tolist()) == sorted(pos[episode].tolist()), "a pairing of the episode rows"
    in_history = (model.history[users] == new_neg.unsqueeze(1)).any(dim=1) | (new_neg == pos)
    assert torch.equal(usable[episode], ~in_history[episode])
    assert in_history[episode].any(), "the planted data has clashes to drop"
    sampled = build(tmp_path / "sampled", meta_ratio=0.5)[0]
    assert sampled.in_batch_negatives(users, pos, neg, episode)[0] is neg, "the default keeps RecBole's negatives"


def test_tokens_on_too_few_items_read_as_padding(tmp_path):
    from recbole_fewshot.nn.content import _tokens_on_enough_items

    values = torch.tensor([[1, 2, 0], [1, 3, 3], [2, 0, 0]])
    assert _tokens_on_enough_items(values, 4, 2).tolist() == [0, 1, 1, 0], "token 3 twice on one item is one item"
    assert _tokens_on_enough_items(torch.tensor([1, 1, 2]), 3, 2).tolist() == [0, 1, 0]
    # planted items: each of 3 genres (and tag t<g>) on about 67 of 200 items, the tag "common" on all
    model, train, *_ = build(tmp_path, content_min_items=100)
    every = build(tmp_path / "every", content_min_items=1)[0]
    common = train.token2id("tags", "common")
    assert torch.equal(every.content.feature_tags, train.item_feat["tags"])
    assert torch.equal(every.content.feature_genre, train.item_feat["genre"])
    tags = model.content.feature_tags
    assert set(tags.unique().tolist()) == {0, common} and (tags == common).sum(1).eq(1)[1:].all()
    assert model.content.feature_genre.eq(0).all()
    raw = model.content.features_from_raw(train.field2token_id, [{"genre": "g0", "tags": "t0 common", "price": 2.0}])
    assert raw["genre"].tolist() == [0] and sorted(raw["tags"][0].tolist())[-2:] == [0, common]
    with pytest.raises(ValueError, match="content_min_items"):
        build(tmp_path / "bad", content_min_items=0)


def _naive_overlap_features(pairs: set, n_items: int, user: int, item: int, buyers: list[int]) -> list[float]:
    """The two overlap features of (user, item) from training pairs, by their definition, unscaled: the
    mean over buyers of the share of the buyer's items the user has too (other than ``item``), plainly
    and weighted by 1 / sqrt(popularity)."""
    history = {v: {j for (w, j) in pairs if w == v} for v in [user] + buyers}
    popularity = [0] * n_items
    for _, j in pairs:
        popularity[j] += 1
    idf = [max(p, 1) ** -0.5 for p in popularity]
    plain = idf_share = 0.0
    for buyer in buyers:
        shared = (history[user] & history[buyer]) - {item}
        plain += len(shared) / len(history[buyer])
        idf_share += sum(idf[j] for j in shared) / sum(idf[j] for j in history[buyer])
    return [plain / max(len(buyers), 1), idf_share / max(len(buyers), 1)]


def test_buyer_overlap_reads_the_training_split_and_leaves_out_the_scored_item(tmp_path):
    model, train, full, config, _, folder, name = build(tmp_path, shots=3, buyer_overlap=True)
    overlap = model.buyer_overlap
    pairs = set(zip(train.inter_feat["user_id"].tolist(), train.inter_feat["item_id"].tolist()))
    bought = overlap.bought.indices()
    assert set(zip(bought[0].tolist(), bought[1].tolist())) == pairs, "the training pairs, nothing else"
    for phase in ("valid", "test"):  # so no query pair of a new item can reach the term
        queries, _ = read_atomic(folder / f"{name}.{phase}.inter")
        query_pairs = {(int(train.token2id("user_id", u)), int(train.token2id("item_id", i)))
                       for u, i in zip(queries.user_id, queries.item_id)}
        assert query_pairs and not query_pairs & pairs

    everyone = overlap.for_users(torch.arange(1, model.n_users)).shares[:, :, 1:]
    assert torch.allclose(everyone.mean(dim=(1, 2)), torch.ones(2), atol=1e-4), "scaled to mean 1 over user pairs"

    torch.manual_seed(0)
    positives = sorted(pairs)[::37][:12]  # rows whose user bought the item: it must not count
    users = torch.tensor([u for u, _ in positives] + list(range(1, 13)))
    items = torch.tensor([i for _, i in positives] + torch.randint(1, model.n_items, (12,)).tolist())
    support, support_len = model.support[items], model.support_len[items]
    naive = torch.tensor([_naive_overlap_features(pairs, model.n_items, int(u), int(i), b[:k].tolist())
                          for u, i, b, k in zip(users, items, support, support_len)], dtype=torch.float64)
    assert (naive > 0).any(dim=0).all()
    for feature in range(2):
        with torch.no_grad():  # a random weight per support size for this feature, none for the other
            overlap.logit.copy_(torch.randn_like(overlap.logit))
            overlap.logit[1 - feature] = -60.0
        read = overlap.score(overlap.for_users(users), items, support, support_len).double() \
            / overlap.logit[feature].exp()[support_len]
        ratio = (read / naive[:, feature])[naive[:, feature] > 0]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4), "the definition, up to one scale"
        assert torch.allclose(read[naive[:, feature] == 0], torch.zeros(1, dtype=torch.float64), atol=1e-7)


def test_buyer_overlap_full_sort_matches_rows_and_only_few_shot_items_read_it(tmp_path):
    model, *_ = build(tmp_path, shots=3, buyer_overlap=True)
    model.eval()
    from recbole.data.interaction import Interaction

    with torch.no_grad():
        model.buyer_overlap.logit.add_(1.0)
    users = torch.arange(1, 9)
    full_sort = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    grid_users = users.repeat_interleave(model.n_items - 1)
    grid_items = torch.arange(1, model.n_items).repeat(len(users))
    pointwise = model.predict(Interaction({"user_id": grid_users, "item_id": grid_items})).view(len(users), -1)
    assert torch.allclose(full_sort[:, 1:], pointwise, atol=1e-4)
    assert model.buyer_overlap._evaluation is not None, "every user's scores, once per evaluation"
    model.buyer_overlap.MAX_TABLE_FLOATS = 0  # a catalogue too large for the tables: each batch's rows
    model.eval()
    assert model.buyer_overlap._evaluation is None, "eval() drops the cache"
    uncached = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
    assert model.buyer_overlap._evaluation is None
    assert torch.allclose(uncached, full_sort, atol=1e-5)
    term = full_sort - model.user_representation(users, model.all_item_table()) @ model.all_item_table().T
    few_shot = (model.item_count <= model.max_shots) & (model.item_count > 0)
    assert (term[:, few_shot].abs() > 0).any(), "few-shot items read their buyers' overlap"
    assert (term[:, model.item_count == 0].abs() < 1e-6).all(), "an item without buyers has none"
    open_share = 1 - model.id_gate(torch.arange(model.n_items)).squeeze(1)
    assert torch.allclose(term[:, 1:], term[:, 1:] * (open_share[1:] > 0), atol=1e-6)


def test_buyer_overlap_trains_and_switches_off(tmp_path):
    from recbole.data.interaction import Interaction

    plain = build(tmp_path / "off", buyer_overlap=False)[0].eval()
    assert plain.buyer_overlap is None
    users = torch.arange(1, 5)
    table = plain.all_item_table()
    # the evaluation encodes every user in one batch, this line four: equal to float rounding
    assert torch.allclose(plain.full_sort_predict(Interaction({"user_id": users})),
                          (plain.user_representation(users, table) @ table.T).view(-1), atol=1e-5), \
        "off: the dot product alone"
    model, *_ = build(tmp_path, shots=3, meta_ratio=1.0)
    assert model.buyer_overlap is not None, "on by default"
    model.train()
    warm = torch.nonzero(model.item_count > model.max_shots).squeeze(1)
    users = model.item_users[model.item_ptr[warm[:64]]]
    negatives = warm.flip(0)[:64]
    model.calculate_loss(Interaction({"user_id": users, "item_id": warm[:64], "neg_item_id": negatives})).backward()
    assert model.buyer_overlap.logit.grad[:, 1:].abs().sum() > 0, "episode rows train the weights"
