"""User-grouped training batches: every row once per epoch, users kept together, shards that agree."""

from __future__ import annotations

import numpy as np
import pytest
import recbole.trainer
from conftest import build_pipeline, build_trainer

from recbole_fewshot.trainer import FewShotRecTrainer
from recbole_fewshot.trainer.user_grouped import UserGroupedBatches

pytestmark = pytest.mark.usefixtures("in_tmp")


@pytest.fixture
def train_data(planted_k2, in_tmp):
    name, data_path = planted_k2
    _, _, train_data, _, _ = build_pipeline("FewShotRec", name, data_path, in_tmp, train_batch_size=64)
    return train_data


def rows_of(batches: UserGroupedBatches) -> list[np.ndarray]:
    return [np.asarray(rows) for rows in batches.batches]


def test_fewshotrec_trains_on_user_grouped_batches():
    assert recbole.trainer.FewShotRecTrainer is FewShotRecTrainer


def test_every_row_once_per_epoch_and_users_together(train_data):
    dataset = train_data._dataset
    users = dataset.inter_feat[dataset.uid_field].numpy()
    batches = UserGroupedBatches(train_data, epoch=0, seed=2020)
    rows = rows_of(batches)
    assert sorted(np.concatenate(rows).tolist()) == list(range(len(users)))
    assert len(batches) == int(np.ceil(len(users) / train_data.step))
    distinct_per_batch = [len(np.unique(users[r])) for r in rows]
    n_users = len(np.unique(users))
    assert sum(distinct_per_batch) <= n_users + len(rows) - 1, "a user's rows are split only at batch edges"
    shuffled = [len(np.unique(users[r])) for r in np.array_split(np.random.default_rng(0).permutation(len(users)), len(rows))]
    assert sum(distinct_per_batch) < sum(shuffled) / 2
    batch = next(iter(batches))
    assert batch[dataset.uid_field].tolist() == users[rows[0]].tolist()
    assert train_data.neg_prefix + dataset.iid_field in batch.interaction, "negatives come from RecBole's sampler"


def test_order_is_seeded_and_changes_every_epoch(train_data):
    first = rows_of(UserGroupedBatches(train_data, epoch=0, seed=2020))
    again = rows_of(UserGroupedBatches(train_data, epoch=0, seed=2020))
    later = rows_of(UserGroupedBatches(train_data, epoch=1, seed=2020))
    assert all((a == b).all() for a, b in zip(first, again))
    assert not all(len(a) == len(b) and (a == b).all() for a, b in zip(first, later))


def test_processes_share_out_users_and_make_the_same_number_of_batches(train_data):
    dataset = train_data._dataset
    users = dataset.inter_feat[dataset.uid_field].numpy()
    shards = [UserGroupedBatches(train_data, epoch=3, seed=2020, rank=rank, world_size=2) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) > 1
    rows = [np.concatenate(rows_of(shard)) for shard in shards]
    assert sorted(np.concatenate(rows).tolist()) == list(range(len(users)))
    assert not set(users[rows[0]]) & set(users[rows[1]]), "each user is trained by one process"


def test_fit_reads_the_backbone_and_the_transfer_before_the_episodes(planted_k2, in_tmp):
    name, data_path = planted_k2
    config, _, train_data, valid_data, _ = build_pipeline(
        "FewShotRec", name, data_path, in_tmp, epochs=1, train_batch_size=64, backbone_epochs=5)
    trainer = build_trainer(config, train_data)
    model = trainer.model
    seen = []
    train_step = model.calculate_loss

    def recording_step(interaction):
        seen.append(float(model.ridge_weight.abs().sum()))
        return train_step(interaction)

    model.calculate_loss = recording_step
    trainer.fit(train_data, valid_data, saved=False)
    assert len(seen) == len(UserGroupedBatches(train_data, 0, config["seed"])), "one epoch of user-grouped batches"
    assert all(value > 0 for value in seen), "the content map is read from the backbone before the first episode"
    assert model.backbone_best_epoch is not None and not model.backbone.user_embedding.weight.requires_grad
