"""Token affinity: tf-idf token vectors of items over the tokens on two or more items, users' profiles."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from recbole_fewshot.data.atomic import write_atomic
from recbole_fewshot.nn.affinity import TokenProfiles, fit_logistic_weight
from recbole_fewshot.nn.content import ItemContentEncoder

TITLES = {"i1": "solo many", "i2": "pair many", "i3": "pair many", "i4": "many", "i5": "other", "i6": "other thing"}
BOUGHT = {"u1": ["i1", "i2"], "u2": ["i3", "i4", "i4"], "u3": ["i5"]}


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    import sys

    from recbole.config import Config
    from recbole.data import create_dataset

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    folder = tmp_path / "tiny"
    folder.mkdir()
    rows = [(u, i, str(t)) for t, (u, i) in enumerate((u, i) for u, items in BOUGHT.items() for i in items)]
    write_atomic(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                 ["user_id:token", "item_id:token", "timestamp:float"], folder / "tiny.inter")
    write_atomic(pd.DataFrame({"item_id": list(TITLES), "title": list(TITLES.values()), "price": ["1.0"] * len(TITLES)}),
                 ["item_id:token", "title:token_seq", "price:float"], folder / "tiny.item")
    config = Config(model="Pop", dataset="tiny", config_dict={
        "data_path": str(tmp_path), "load_col": None, "user_inter_num_interval": None, "item_inter_num_interval": None,
        "eval_args": {"split": {"RS": [1.0, 0.0, 0.0]}, "order": "TO", "group_by": None, "mode": "full"}})
    train = create_dataset(config).build()[0]  # every interaction trains
    assert len(train) == sum(map(len, BOUGHT.values()))
    return train, TokenProfiles(train, ItemContentEncoder(train, 4))


def expected_vector(title: str) -> torch.Tensor:
    """By hand: the tokens on two or more items ("many" on 4, "pair" and "other" on 2), weighted by idf."""
    kept = {"many": 4, "pair": 2, "other": 2}
    weights = {token: math.log(len(TITLES) / (1 + count)) for token, count in kept.items()}
    return torch.nn.functional.normalize(torch.tensor([weights[t] if t in title.split() else 0.0 for t in sorted(kept)]), dim=0)


def vector_of(dataset, profiles, item: str) -> torch.Tensor:
    """The item's vector with its columns in token order (the profiles' columns follow the token ids)."""
    tokens = dataset.field2id_token["title"]
    kept = sorted(t for t in ("many", "pair", "other"))
    columns = {token: rank for rank, token in enumerate(sorted(kept, key=lambda t: list(tokens).index(t)))}
    row = profiles.item_vectors[dataset.token2id("item_id", item)]
    return torch.stack([row[columns[t]] for t in kept])


def test_an_item_is_the_idf_weighted_unit_vector_of_its_tokens_on_two_or_more_items(profiles):
    dataset, profiles = profiles
    assert profiles.width == 3, "a token on one item ('solo', 'thing') gets no column: it would be a fingerprint"
    for item, title in TITLES.items():
        assert torch.allclose(vector_of(dataset, profiles, item), expected_vector(title), atol=1e-6), item


def test_a_profile_is_the_unit_sum_of_the_users_distinct_items_less_the_one_left_out(profiles):
    dataset, profiles = profiles
    vectors = profiles.item_vectors
    ids = {i: dataset.token2id("item_id", i) for i in TITLES}
    u2 = torch.tensor([dataset.token2id("user_id", "u2")])
    by_hand = torch.nn.functional.normalize(vectors[ids["i3"]] + vectors[ids["i4"]], dim=0)  # i4 twice counts once
    assert torch.allclose(profiles.profiles(u2)[0], by_hand, atol=1e-6)
    left_out = profiles.affinity(u2, torch.tensor([ids["i2"]]), left_out=torch.tensor([ids["i3"]]))
    assert float(left_out) == pytest.approx(float(vectors[ids["i4"]] @ vectors[ids["i2"]]), abs=1e-6)


def test_raw_features_give_the_vector_of_the_same_item(profiles):
    dataset, profiles = profiles
    raw = profiles.vectors_from_raw(dataset.field2token_id, [{"title": "pair many"}, {"title": "solo unknown"}])
    assert torch.allclose(raw[0], profiles.item_vectors[dataset.token2id("item_id", "i2")], atol=1e-6)
    assert torch.equal(raw[1], torch.zeros(profiles.width)), "no token on two or more items: no vector"


def test_the_logistic_fit_is_the_likelihoods_maximum():
    margin = torch.tensor([2.0, -1.0, 0.5, -0.3, 1.0, -2.0])
    gain = torch.tensor([0.2, 0.9, -0.4, 0.5, 0.1, 0.3])
    grid = torch.linspace(-5, 5, 20001, dtype=torch.float64)
    likelihood = torch.nn.functional.logsigmoid(margin.double() + grid.unsqueeze(1) * gain.double()).sum(1)
    assert fit_logistic_weight(margin, gain) == pytest.approx(float(grid[likelihood.argmax()]), abs=1e-3)
