"""Trainer feeding a model user-grouped training batches, for models that encode each batch's users."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from recbole.trainer import Trainer


class UserGroupedBatches:
    """The rows of RecBole's training loader, batched so that each user's rows sit together.

    Every epoch the users are shuffled (seeded by ``seed`` and the epoch), their rows laid out user
    after user and cut into batches of the loader's size; each batch is built by the loader's own
    ``collate_fn`` (rows, transform, negative sampling). A model that encodes every distinct user of a
    batch then encodes each user about once per epoch instead of once per batch. In distributed mode
    each process takes every ``world_size``-th user, and all processes make the same number of batches.
    """

    shuffle = False  # the trainer must not call ``sampler.set_epoch``: the epoch is passed here

    def __init__(self, loader, epoch: int, seed: int, rank: int = 0, world_size: int = 1):
        self.loader = loader
        dataset = loader._dataset
        users = dataset.inter_feat[dataset.uid_field].numpy()
        rng = np.random.default_rng([seed, epoch])
        rank_of_user = rng.permutation(dataset.user_num)
        order = np.lexsort((rng.permutation(len(users)), rank_of_user[users]))
        owner = rank_of_user[users[order]] % world_size
        rows_per_process = np.bincount(owner, minlength=world_size)
        n_batches = max(1, min(math.ceil(rows_per_process.max() / loader.step), rows_per_process.min()))
        self.batches = np.array_split(order[owner == rank], n_batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator:
        for rows in self.batches:
            yield self.loader.collate_fn(rows)


class UserGroupedTrainer(Trainer):
    """RecBole's Trainer, training on :class:`UserGroupedBatches` instead of shuffled rows.

    Only the order of rows into batches changes: the same rows, negatives drawn by the same sampler,
    and RecBole's own loop, evaluation, early stopping and checkpoints.
    """

    epochs_trained = 0  # seeds each epoch's user order, counting epochs trained before ``fit`` too

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        single = self.config["single_spec"]
        self.epochs_trained += 1
        batches = UserGroupedBatches(
            train_data, self.epochs_trained, self.config["seed"],
            rank=0 if single else torch.distributed.get_rank(),
            world_size=1 if single else torch.distributed.get_world_size(),
        )
        return super()._train_epoch(batches, epoch_idx, loss_func, show_progress)
