"""Property-based tests of the few-shot split on generated interaction tables (pure pandas, no RecBole)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recbole_fewshot.data.split import FewShotSplitError, SplitSpec, split_interactions

U, I, T = "user_id", "item_id", "timestamp"
# Example counts come from the hypothesis profile (tests/conftest.py: "fast" by default,
# HYPOTHESIS_PROFILE=thorough for many more).
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw, with_time: bool = True):
    """An interaction table as read from an atomic file (all strings): items of very different
    popularity, repeated (user, item) pairs at other times, many timestamp ties, shuffled rows.

    Hypothesis draws the shape; numpy fills it in from a drawn seed (drawing every cell through
    hypothesis is many times slower and buys little shrinking here)."""
    n_users = draw(st.integers(6, 25), label="n_users")
    n_items = draw(st.integers(8, 30), label="n_items")
    n_times = draw(st.sampled_from([3, 20, 1000]), label="n_times")  # few distinct times: many ties
    repeat = draw(st.sampled_from([0.0, 0.2]), label="repeat share")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="table seed"))
    rows = []
    for item in range(n_items):
        for user in rng.permutation(n_users)[: rng.integers(0, n_users + 1)]:
            for _ in range(1 + int(rng.random() < repeat)):
                rows.append((f"u{user}", f"i{item}", str(int(rng.integers(0, n_times + 1)))))
    assume(rows)
    table = pd.DataFrame([rows[i] for i in rng.permutation(len(rows))], columns=[U, I, T])
    return table if with_time else table.drop(columns=[T])


@st.composite
def specs(draw, policy=None):
    max_shots = draw(st.integers(0, 4))
    return SplitSpec(
        shots=draw(st.integers(0, max_shots)),
        policy=policy or draw(st.sampled_from(["time", "random"])),
        new_item_ratio=draw(st.sampled_from([0.2, 0.3, 0.5, 0.8])),
        valid_share=draw(st.sampled_from([0.3, 0.5, 0.7])),
        max_shots=max_shots,
        seed=draw(st.integers(0, 2**31)),
    )


def try_split(table, spec, time_field=T):
    """The split, or ``assume`` away inputs that legitimately have too few eligible items."""
    try:
        return split_interactions(table, U, I, time_field, spec)
    except FewShotSplitError as error:
        assert "too few eligible items" in str(error)
        counts = table.drop_duplicates([U, I]).groupby(I).size()
        n_eligible = int((counts >= spec.max_shots + 1).sum())
        n_new = round(spec.new_item_ratio * n_eligible)
        n_valid = round(spec.valid_share * n_new)
        assert n_new < 2 or n_valid < 1 or n_valid >= n_new, "refused a table that has enough eligible items"
        assume(False)


def first_times(table) -> pd.Series:
    """Earliest time of every (user, item) pair: the interaction the split keeps for a repeated pair."""
    return table.assign(_t=table[T].astype(float)).groupby([U, I])["_t"].min()


def new_items(split) -> set:
    return set(split.valid_new_items) | set(split.test_new_items)


@SETTINGS
@given(tables(), specs())
def test_exactly_k_support_interactions_per_new_item(table, spec):
    split = try_split(table, spec)
    train_counts = split.train.groupby(I).size()
    for item in new_items(split):
        assert train_counts.get(item, 0) == spec.shots, item
    assert split.stats["valid_support_interactions"] == spec.shots * len(split.valid_new_items)
    assert split.stats["test_support_interactions"] == spec.shots * len(split.test_new_items)


@SETTINGS
@given(tables(), specs())
def test_support_precedes_query_in_time(table, spec):
    split = try_split(table, spec)
    train_time = split.train.assign(_t=split.train[T].astype(float))
    for phase, items in (("valid", split.valid_new_items), ("test", split.test_new_items)):
        query = getattr(split, phase)
        query_time = query.assign(_t=query[T].astype(float)).groupby(I)["_t"].min()
        support_time = train_time[train_time[I].isin(items)].groupby(I)["_t"].max()
        for item in items:
            assert item in query_time.index, f"{phase}-new item {item} has no query interaction"
            if item in support_time.index:
                assert support_time[item] <= query_time[item], item


@SETTINGS
@given(tables(), specs())
def test_valid_and_test_new_items_are_disjoint_and_own_their_phase(table, spec):
    split = try_split(table, spec)
    valid, test = set(split.valid_new_items), set(split.test_new_items)
    assert valid and test
    assert not valid & test
    assert set(split.valid[I]) <= valid
    assert set(split.test[I]) <= test
    assert set(split.valid[I]) == valid and set(split.test[I]) == test  # each new item has queries


@SETTINGS
@given(tables(), specs())
def test_no_query_interaction_is_in_train(table, spec):
    split = try_split(table, spec)
    train_triples = set(map(tuple, split.train[[U, I, T]].to_numpy()))
    train_pairs = set(map(tuple, split.train[[U, I]].to_numpy()))
    for phase in ("valid", "test"):
        query = getattr(split, phase)
        for user, item, time in query[[U, I, T]].to_numpy():
            assert (user, item, time) not in train_triples
            assert (user, item) not in train_pairs  # not even at another time
    valid_pairs = set(map(tuple, split.valid[[U, I]].to_numpy()))
    test_pairs = set(map(tuple, split.test[[U, I]].to_numpy()))
    assert not valid_pairs & test_pairs


@SETTINGS
@given(tables(), specs())
def test_every_deduplicated_interaction_lands_in_exactly_one_phase(table, spec):
    split = try_split(table, spec)
    parts = pd.concat([split.train, split.valid, split.test])
    assert not parts.duplicated([U, I]).any()
    kept = parts.assign(_t=parts[T].astype(float)).set_index([U, I])["_t"].sort_index()
    expected = first_times(table).sort_index()
    assert kept.index.equals(expected.index)
    assert (kept.to_numpy() == expected.to_numpy()).all()  # a repeated pair keeps its first time
    assert list(parts.columns) == list(table.columns)


@SETTINGS
@given(tables(), specs())
def test_new_items_have_at_least_max_shots_plus_one_interactions(table, spec):
    split = try_split(table, spec)
    users_per_item = table.drop_duplicates([U, I]).groupby(I).size()
    for item in new_items(split):
        assert users_per_item[item] >= spec.max_shots + 1
    n_eligible = int((users_per_item >= spec.max_shots + 1).sum())
    assert split.stats["eligible_items"] == n_eligible
    assert len(new_items(split)) == round(spec.new_item_ratio * n_eligible)


@SETTINGS
@given(tables(), specs())
def test_warm_items_keep_all_interactions_in_train(table, spec):
    split = try_split(table, spec)
    dedup = table.drop_duplicates([U, I])
    warm = dedup[~dedup[I].isin(new_items(split))]
    train_pairs = set(map(tuple, split.train[[U, I]].to_numpy()))
    assert set(map(tuple, warm[[U, I]].to_numpy())) <= train_pairs
    assert len(split.train) == len(warm) + spec.shots * len(new_items(split))


@SETTINGS
@given(tables(), specs())
def test_same_new_items_for_every_k_at_fixed_seed_and_max_shots(table, spec):
    reference = try_split(table, spec)
    for shots in range(spec.max_shots + 1):
        other = split_interactions(table, U, I, T, SplitSpec(
            shots=shots, policy=spec.policy, new_item_ratio=spec.new_item_ratio,
            valid_share=spec.valid_share, max_shots=spec.max_shots, seed=spec.seed))
        assert other.valid_new_items == reference.valid_new_items
        assert other.test_new_items == reference.test_new_items
        # the support of a smaller K is a prefix of the support of a larger K
        if shots <= spec.shots:
            support = set(map(tuple, other.train[other.train[I].isin(new_items(other))][[U, I]].to_numpy()))
            ref_support = set(map(tuple, reference.train[reference.train[I].isin(new_items(reference))][[U, I]].to_numpy()))
            assert support <= ref_support


@SETTINGS
@given(tables(), specs())
def test_deterministic_for_a_seed(table, spec):
    first = try_split(table, spec)
    second = split_interactions(table.copy(), U, I, T, spec)
    for phase in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(first, phase), getattr(second, phase))
    assert first.valid_new_items == second.valid_new_items
    assert first.test_new_items == second.test_new_items
    assert first.stats == second.stats


@SETTINGS
@given(tables(with_time=False), specs(policy="random"))
def test_random_policy_without_timestamps(table, spec):
    split = try_split(table, spec, time_field=None)
    for item in new_items(split):
        assert (split.train[I] == item).sum() == spec.shots
    dedup = table.drop_duplicates([U, I])
    assert len(split.train) + len(split.valid) + len(split.test) == len(dedup)


def test_time_policy_puts_latest_launches_into_test():
    """Policy time: new items are the latest launches, and test-new items launch after valid-new ones."""
    rows = []
    for item in range(20):
        for user in range(6):
            rows.append((f"u{user}", f"i{item}", str(100 * item + user)))
    table = pd.DataFrame(rows, columns=[U, I, T])
    split = split_interactions(table, U, I, T, SplitSpec(shots=1, max_shots=3, new_item_ratio=0.4, valid_share=0.5))
    assert sorted(split.valid_new_items) == sorted(f"i{i}" for i in range(12, 16))
    assert sorted(split.test_new_items) == sorted(f"i{i}" for i in range(16, 20))


@pytest.mark.parametrize("seed", [0, 1])
def test_seed_changes_random_policy(seed):
    rows = [(f"u{u}", f"i{i}", str(u)) for i in range(40) for u in range(5)]
    table = pd.DataFrame(rows, columns=[U, I, T])
    a = split_interactions(table, U, I, T, SplitSpec(shots=1, max_shots=3, policy="random", seed=seed))
    b = split_interactions(table, U, I, T, SplitSpec(shots=1, max_shots=3, policy="random", seed=seed + 100))
    assert (a.valid_new_items, a.test_new_items) != (b.valid_new_items, b.test_new_items)
