"""Nothing of the valid/test queries reaches training through RecBole's pipeline on a split."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import build_pipeline, build_trainer, fast_config
from planted import train_and_test
from recbole_fewshot.data.atomic import read_atomic, write_atomic
from recbole_fewshot.data.dataloader import NewItemFullSortEvalDataLoader
from recbole_fewshot.data.split import SourceDataset, SplitSpec, materialize, read_manifest

pytestmark = pytest.mark.usefixtures("in_tmp")
U, I = "user_id", "item_id"


def query_pairs(name: str, data_path: Path, phase: str) -> set[tuple[str, str]]:
    table, _ = read_atomic(Path(data_path) / name / f"{name}.{phase}.inter")
    return set(zip(table[U], table[I]))


def token_pairs(dataset, inter_feat) -> set[tuple[str, str]]:
    users = dataset.id2token(U, inter_feat[U].numpy())
    items = dataset.id2token(I, inter_feat[I].numpy())
    return set(zip(users.tolist(), items.tolist()))


@pytest.fixture(params=["k0", "k2"])
def split(request):
    return request.getfixturevalue(f"planted_{request.param}")


def test_training_data_holds_no_query_pairs(split, in_tmp):
    name, data_path = split
    _, dataset, train_data, valid_data, test_data = build_pipeline("BPR", name, data_path, in_tmp)
    train = token_pairs(dataset, train_data._dataset.inter_feat)
    valid_queries, test_queries = query_pairs(name, data_path, "valid"), query_pairs(name, data_path, "test")
    assert valid_queries and test_queries
    assert not train & (valid_queries | test_queries)
    assert token_pairs(dataset, valid_data._dataset.inter_feat) == valid_queries
    assert token_pairs(dataset, test_data._dataset.inter_feat) == test_queries
    assert train == query_pairs(name, data_path, "train")


def test_train_sampler_excludes_nothing_but_training_pairs(split, in_tmp):
    """used_ids of the train phase are the training pairs: query pairs are not known to the sampler."""
    name, data_path = split
    _, dataset, train_data, _, _ = build_pipeline("BPR", name, data_path, in_tmp)
    used = train_data._sampler.used_ids
    used_pairs = {(int(u), int(i)) for u, items in enumerate(used) for i in items}
    train_ids = set(zip(train_data._dataset.inter_feat[U].tolist(), train_data._dataset.inter_feat[I].tolist()))
    assert used_pairs == train_ids
    queries = query_pairs(name, data_path, "valid") | query_pairs(name, data_path, "test")
    query_ids = {(int(dataset.token2id(U, u)), int(dataset.token2id(I, i))) for u, i in queries}
    assert not used_pairs & query_ids


@pytest.mark.parametrize("repeatable", [False, True])
def test_popularity_negatives_come_from_training_only(planted_k0, in_tmp, repeatable):
    name, data_path = planted_k0
    manifest = read_manifest(Path(data_path) / name / f"{name}.fewshot.json")
    _, dataset, train_data, _, _ = build_pipeline(
        "BPR", name, data_path, in_tmp, repeatable=repeatable,
        train_neg_sample_args={"distribution": "popularity", "sample_num": 1, "alpha": 1.0})
    sampler = train_data._sampler
    assert sampler.distribution == "popularity"
    train_counts = Counter(train_data._dataset.inter_feat[I].tolist())
    new_ids = set(dataset.token2id(I, manifest["valid_new_items"] + manifest["test_new_items"]).tolist())
    assert set(sampler.prob) == set(train_counts)
    assert not set(sampler.prob) & new_ids  # K=0: new items have no training interactions
    np.random.seed(0)
    negatives = sampler.sample_by_key_ids(np.zeros(4000, dtype=np.int64), 1).tolist()
    assert not set(negatives) & new_ids


def test_float_features_are_not_normalised_over_query_rows(planted_k2, in_tmp):
    name, data_path = planted_k2
    config, dataset, *_ = build_pipeline("BPR", name, data_path, in_tmp)
    assert config["normalize_all"] is False
    items, _ = read_atomic(Path(data_path) / name / f"{name}.item")
    raw = dict(zip(items[I], items["price"].astype(float)))
    loaded = dataset.item_feat
    tokens = dataset.id2token(I, loaded[I].numpy()[1:])
    prices = loaded["price"].numpy()[1:]
    assert np.allclose(prices, [raw[t] for t in tokens], atol=1e-5)
    assert prices.max() > 1  # min-max scaling would map into [0, 1]


def test_recbole_caches_are_keyed_by_the_split_name(planted_source, tmp_path, in_tmp):
    source = SourceDataset("planted", planted_source / "planted")
    spec = SplitSpec(shots=2, max_shots=3, new_item_ratio=0.3)
    name, _ = materialize(source, spec, tmp_path / "splits")
    checksum = source.checksum()
    assert name.endswith(checksum[:8]) and "k2" in name and "s2020" in name
    config, *_ = build_pipeline("BPR", name, tmp_path / "splits", in_tmp, save_dataset=True, save_dataloaders=True)
    saved = Path(config["checkpoint_dir"])
    assert (saved / f"{name}-Dataset.pth").is_file()
    assert (saved / f"{name}-for-BPR-dataloader.pth").is_file()
    # the same parameters on changed source data: another name, so those caches are never reused
    inter = planted_source / "planted" / "planted.inter"
    table, header = read_atomic(inter)
    write_atomic(table.iloc[:-50], header, inter)
    name2, _ = materialize(source, spec, tmp_path / "splits")
    assert name2 != name
    config2, dataset2, train2, *_ = build_pipeline("BPR", name2, tmp_path / "splits", in_tmp,
                                                  save_dataset=True, save_dataloaders=True)
    assert (saved / f"{name2}-Dataset.pth").is_file()
    assert token_pairs(dataset2, train2._dataset.inter_feat) == query_pairs(name2, tmp_path / "splits", "train")
    # and other split parameters give other names as well
    for other in (SplitSpec(shots=1, max_shots=3, new_item_ratio=0.3), SplitSpec(shots=2, max_shots=3, seed=1),
                  SplitSpec(shots=2, max_shots=4, new_item_ratio=0.3), SplitSpec(shots=2, policy="random", max_shots=3)):
        assert other.split_name("planted", checksum) != spec.split_name("planted", checksum)


# --- evaluation ranks only the phase's new items -------------------------------------------------

@pytest.mark.parametrize("model", ["BPR", "Pop"])
def test_top_k_holds_only_test_new_items(planted_k2, in_tmp, model):
    name, data_path = planted_k2
    manifest = read_manifest(Path(data_path) / name / f"{name}.fewshot.json")
    config, dataset, train_data, valid_data, test_data = build_pipeline(model, name, data_path, in_tmp)
    assert isinstance(test_data, NewItemFullSortEvalDataLoader)
    trainer = build_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    trainer.model.eval()
    test_new = set(dataset.token2id(I, manifest["test_new_items"]).tolist())
    k = 10
    assert len(test_new) > k
    users = 0
    with torch.no_grad():
        for batch in test_data:
            trainer.tot_item_num = dataset.item_num
            _, scores, _, _ = trainer._full_sort_batch_eval(batch)
            top_scores, top_items = torch.topk(scores, k, dim=-1)
            finite = torch.isfinite(top_scores)
            assert finite.float().mean() > 0.9  # a user's own history masks only a few candidates
            assert set(top_items[finite].tolist()) <= test_new
            assert set(torch.nonzero(torch.isfinite(scores))[:, 1].tolist()) <= test_new
            users += len(scores)
    assert users == len(set(test_data._dataset.inter_feat[U].tolist()))


def test_without_the_restriction_warm_items_compete(planted_k2, in_tmp):
    """Control for the test above: with fewshot_candidates: all the same model ranks warm items too."""
    name, data_path = planted_k2
    manifest = read_manifest(Path(data_path) / name / f"{name}.fewshot.json")
    config, dataset, train_data, valid_data, test_data = build_pipeline(
        "Pop", name, data_path, in_tmp, fewshot_candidates="all")
    assert not isinstance(test_data, NewItemFullSortEvalDataLoader)
    trainer = build_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    test_new = set(dataset.token2id(I, manifest["test_new_items"]).tolist())
    batch = next(iter(test_data))
    trainer.tot_item_num = dataset.item_num
    _, scores, _, _ = trainer._full_sort_batch_eval(batch)
    assert not set(torch.topk(scores, 10, dim=-1).indices.flatten().tolist()) <= test_new


# --- item ids carry nothing about queries ----------------------------------------------------------

K = 20
DISCOUNT = 1 / np.log2(np.arange(2, K + 2))


class ZeroShotRanking:
    """NDCG@K (RecBole's definition) of fixed rankings of the test-new items at K=0, where no
    user has a test-new item in their history, so every evaluated user ranks all of them."""

    def __init__(self, name: str, data_path: Path, manifest: dict):
        test, _ = read_atomic(Path(data_path) / name / f"{name}.test.inter")
        self.items = np.array(manifest["test_new_items"])
        item_index = {token: i for i, token in enumerate(self.items)}
        users = {token: i for i, token in enumerate(test[U].unique())}
        self.hits = np.zeros((len(users), len(self.items)))
        self.hits[test[U].map(users).to_numpy(), test[I].map(item_index).to_numpy()] = 1
        positives = self.hits.sum(1).astype(int)
        self.idcg = np.array([DISCOUNT[: min(p, K)].sum() for p in positives])

    def ndcg(self, orders: np.ndarray) -> np.ndarray:
        """orders: (n_rankings, n_items) item indices, best first."""
        weights = np.zeros((len(orders), len(self.items)))
        np.put_along_axis(weights, orders[:, :K], DISCOUNT[None, :], axis=1)
        return ((self.hits @ weights.T) / self.idcg[:, None]).mean(0)

    def null(self, n: int = 2000, seed: int = 0) -> tuple[float, float]:
        """Mean and standard deviation of NDCG@K over uniformly random fixed rankings."""
        rng = np.random.default_rng(seed)
        values = self.ndcg(np.stack([rng.permutation(len(self.items)) for _ in range(n)]))
        return float(values.mean()), float(values.std())

    def oracle(self) -> float:
        """Ranking by the test queries' own popularity: what leaked ids could at most give."""
        return float(self.ndcg(np.argsort(-self.hits.sum(0), kind="stable")[None])[0])


def recbole_item_ids(name: str, data_path: Path, workdir: Path, tokens) -> np.ndarray:
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(model="Pop", dataset=name, config_dict=fast_config(data_path, workdir))
    return np.asarray(create_dataset(config).token2id(I, list(tokens)))


def test_recbole_item_ids_rank_test_new_items_at_random_level(ml100k_k0_splits, in_tmp):
    z_ascending, z_descending, z_oracle, ratios = [], [], [], []
    for name, data_path, manifest in ml100k_k0_splits:
        ranking = ZeroShotRanking(name, data_path, manifest)
        ids = recbole_item_ids(name, data_path, in_tmp, ranking.items)
        mean, std = ranking.null()
        ascending = ranking.ndcg(np.argsort(ids)[None])[0]  # torch.topk's tie order, either way round
        descending = ranking.ndcg(np.argsort(-ids)[None])[0]
        oracle = ranking.oracle()
        z_ascending.append((ascending - mean) / std)
        z_descending.append((descending - mean) / std)
        z_oracle.append((oracle - mean) / std)
        ratios.append(max(ascending, descending) / oracle)
    bound = 3 / math.sqrt(len(ml100k_k0_splits))  # three standard errors of a mean of z-scores
    assert abs(np.mean(z_ascending)) < bound, z_ascending
    assert abs(np.mean(z_descending)) < bound, z_descending
    assert np.mean(z_oracle) > 3 * bound, z_oracle  # the check has power: leaked ids would show
    assert max(ratios) < 0.6, ratios


@pytest.mark.slow
def test_random_and_pop_at_zero_shots_score_at_random_level(ml100k_k0_splits, in_tmp):
    z = {"Random": [], "Pop": []}
    oracle_z = []
    for name, data_path, manifest in ml100k_k0_splits:
        ranking = ZeroShotRanking(name, data_path, manifest)
        mean, std = ranking.null()
        oracle_z.append((ranking.oracle() - mean) / std)
        for model in z:
            result = train_and_test(model, name, data_path, epochs=1, topk=[K], metrics=["NDCG"],
                                    valid_metric=f"NDCG@{K}", checkpoint_dir=str(in_tmp / "saved"))
            z[model].append((result[f"ndcg@{K}"] - mean) / std)
    bound = 3 / math.sqrt(len(ml100k_k0_splits))
    for model, values in z.items():
        assert abs(np.mean(values)) < bound, (model, values)
        assert np.mean(values) < np.mean(oracle_z) - 3 * bound, (model, values, oracle_z)
