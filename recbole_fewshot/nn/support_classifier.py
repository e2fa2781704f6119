"""Vartak et al.'s user-as-task frame, shared by :mod:`~recbole_fewshot.model.lwa` and
:mod:`~recbole_fewshot.model.nlba`.

Reference: Vartak, Thiagarajan, Miranda, Bratman and Larochelle. "A Meta-Learning Perspective on
Cold-Start Recommendations for Items." NeurIPS 2017. The models' docstrings list the departures.

Each user is a task. Items are seen only through their content: ``F(j)`` is an MLP on the shared
:class:`~recbole_fewshot.nn.content.ItemContentEncoder`. A user's support set is their training history:
positives (their last ``max_history_len`` training items) and negatives (warm items, i.e. items with a
training interaction, that the user never interacted with, weighted by training count to the power
``negative_sampling_power``). The class representatives are ``R^1_u`` = mean ``F`` of the positives
and ``R^0_u`` = mean ``F`` of the negatives; a subclass turns them into the user's classifier, which
scores any item (a new one included) from its content. A new item's K support interactions are
training interactions like any other: they enter their users' histories, nothing more.

* Training, one episode per row of RecBole's pairwise batch: the queries are the row's item (label 1)
  and one negative drawn for the row (label 0); the support is the user's history without the query
  item, and ``negative_support_size`` further draws without the query negative. Every draw is fresh.
  Loss: binary cross-entropy on the queries. RecBole's own sampled negative item is not used.
* Evaluation: ``R^1_u`` is the mean over the history (nothing left out) and ``R^0_u`` the exact weighted mean over
  the user's negatives (what the training draws estimate), so scores are deterministic. Every user's
  classifier and every item's ``F`` are computed once per evaluation (``CACHED``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_fewshot.model.abstract_recommender import ColdStartRecommender

RESAMPLING_ROUNDS = 10  # redraws of a negative that hit an item of the user's before it is dropped


def _masked_mean(index: torch.Tensor, mask: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Mean of ``table`` rows ``index`` ([N, S]) where ``mask`` holds, per row; zero for an empty row."""
    weights = mask.to(table.dtype)
    total = F.embedding_bag(index, table, mode="sum", per_sample_weights=weights)
    return total / weights.sum(-1, keepdim=True).clamp_min(1.0)


class UserTaskClassifier(ColdStartRecommender):
    r"""Each user is a task whose classifier comes from the class representatives of their history.

    Subclasses define ``adapt`` (class representatives to user-specific parameters) and ``classify``
    (those parameters and item vectors ``F(j)`` to logits, broadcasting). The score tables are every
    user's classifier and every item's ``F``.
    """

    NO_CONTENT_EFFECT = "every item gets the same score"
    SETTINGS = ("negative_support_size",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size

        self.register_buffer("history", self.train_interactions.history, persistent=False)
        # distinct training (user, item) pairs as sorted keys user * n_items + item
        inter = dataset.inter_feat
        keys = np.unique(inter[dataset.uid_field].numpy().astype(np.int64) * self.n_items
                         + inter[dataset.iid_field].numpy().astype(np.int64))
        self.register_buffer("seen_keys", torch.as_tensor(keys, dtype=torch.long), persistent=False)
        # each item's weight as a negative: training count ** power, 0 for items without one
        counts = self.item_count.double()
        pool = torch.where(counts > 0, counts.clamp_min(1.0) ** config["negative_sampling_power"], 0.0)
        self.register_buffer("pool_weight", pool.float(), persistent=False)

        self.content = self.build_content_encoder(dataset, config)
        layers, width = [], d
        for size in config["item_hidden_size"]:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.item_network = nn.Sequential(*layers, nn.Linear(width, d))  # F on top of the content vector

    # --- subclass interface ---------------------------------------------------------------------
    def adapt(self, r0: torch.Tensor, r1: torch.Tensor) -> list[torch.Tensor]:
        """User-specific parameters from the negative and positive class representatives ``[..., d]``."""
        raise NotImplementedError

    def classify(self, params: list[torch.Tensor], item_vec: torch.Tensor) -> torch.Tensor:
        """Logits of items ``F(j)`` ``[..., d]`` under user classifiers ``params`` (broadcasting)."""
        raise NotImplementedError

    def score_table(self, params: list[torch.Tensor], table: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_items]`` of every item of ``table`` under each of B users' ``params``."""
        return self.classify([p.unsqueeze(1) for p in params], table.unsqueeze(0))

    # --- items ----------------------------------------------------------------------------------
    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """``F(j)`` of ``items`` from their content alone, ``[*items.shape, d]``; each distinct item once."""
        unique, inverse = torch.unique(items.reshape(-1), return_inverse=True)
        return self.item_network(self.content(unique))[inverse].view(*items.shape, self.embedding_size)

    # --- users ----------------------------------------------------------------------------------
    def has_seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether user ``users`` (broadcast against ``items``) interacted with ``items`` in training."""
        keys = users * self.n_items + items
        if not len(self.seen_keys):
            return torch.zeros_like(keys, dtype=torch.bool)
        at = torch.searchsorted(self.seen_keys, keys).clamp(max=len(self.seen_keys) - 1)
        return self.seen_keys[at] == keys

    def sample_negatives(self, users: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` negatives per user, ``[len(users), size]``: items drawn with replacement in proportion to
        ``pool_weight`` (torch's generator), redrawn while the user interacted with them; and which draws
        are kept (a draw still hitting the user's items after ``RESAMPLING_ROUNDS`` is not)."""
        shape = (len(users), size)
        if not self.pool_weight.any():  # no item has a training interaction: no negatives
            return users.new_zeros(shape), torch.zeros(shape, dtype=torch.bool, device=users.device)
        items = torch.multinomial(self.pool_weight, shape[0] * shape[1], replacement=True).view(shape)
        bad = self.has_seen(users.unsqueeze(1), items)
        for _ in range(RESAMPLING_ROUNDS):
            if not bad.any():
                break
            redrawn = torch.multinomial(self.pool_weight, int(bad.sum()), replacement=True)
            items = items.masked_scatter(bad, redrawn)
            # only the redrawn entries are checked again (masked_scatter fills them in row-major order)
            bad = bad.masked_scatter(bad, self.has_seen(users[bad.nonzero(as_tuple=True)[0]], redrawn))
        return items, ~bad

    def representatives(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation class representatives ``(R^0_u, R^1_u)`` of ``users`` (``[*users.shape, d]`` each)."""
        table = self.item_vectors(torch.arange(self.n_items, device=users.device))
        r0, r1 = self._representatives(users.reshape(-1), table)
        return r0.view(*users.shape, -1), r1.view(*users.shape, -1)

    def _representatives(self, users: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``R^1``: mean ``F`` of the history; ``R^0``: ``pool_weight``-weighted mean ``F`` of the items with a
        training interaction that the user has none with (every item's, less the user's own)."""
        history = self.history[users]
        r1 = _masked_mean(history, history > 0, table)
        weight = self.pool_weight
        seen_users, seen_items = self.seen_keys // self.n_items, self.seen_keys % self.n_items
        seen_sum = table.new_zeros(self.n_users, self.embedding_size).index_add_(
            0, seen_users, table[seen_items] * weight[seen_items].unsqueeze(1))
        seen_weight = weight.new_zeros(self.n_users).index_add_(0, seen_users, weight[seen_items])
        negative_sum = (weight.unsqueeze(1) * table).sum(0) - seen_sum[users]
        r0 = negative_sum / (weight.sum() - seen_weight[users]).clamp_min(1e-6).unsqueeze(1)
        return r0, r1

    def compute_score_tables(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every user's classifier and every item's ``F``."""
        table = self.item_vectors(torch.arange(self.n_items, device=self.history.device))
        users = torch.arange(self.n_users, device=self.history.device)
        return self.adapt(*self._representatives(users, table)), table

    # --- RecBole interface ----------------------------------------------------------------------
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        history = self.history[user]
        negatives, kept = self.sample_negatives(user, self.negative_support_size + 1)
        neg_item = negatives[:, 0]  # the query negative; the other draws are the support negatives
        width = history.shape[1]
        items = torch.cat([history, negatives, pos_item.unsqueeze(1)], dim=1)
        unique, inverse = torch.unique(items, return_inverse=True)  # each distinct item encoded once
        table = self.item_vectors(unique)
        # the episode's queries never sit in its support
        r1 = _masked_mean(inverse[:, :width], (history > 0) & (history != pos_item.unsqueeze(1)), table)
        support_kept = kept[:, 1:] & (negatives[:, 1:] != neg_item.unsqueeze(1))
        r0 = _masked_mean(inverse[:, width + 1: -1], support_kept, table)
        queries = table[torch.stack([inverse[:, -1], inverse[:, width]])]  # [2, B, d]: positive, negative
        logits = self.classify(self.adapt(r0, r1), queries)
        labels = torch.zeros_like(logits)
        labels[0] = 1.0
        weights = torch.ones_like(logits)
        weights[1] = kept[:, 0].to(logits.dtype)  # a query negative that could not be drawn carries no loss
        return F.binary_cross_entropy_with_logits(logits, labels, weights, reduction="sum") / weights.sum()

    def predict(self, interaction):
        user = interaction[self.USER_ID]
        item = interaction[self.ITEM_ID]
        params, table = self.score_tables()
        return self.classify([p[user] for p in params], table[item])

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        params, table = self.score_tables()
        return self.score_table([p[user] for p in params], table).view(-1)
