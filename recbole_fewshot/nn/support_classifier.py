"""Vartak et al.'s support-set classifier frame, shared by :mod:`~recbole_fewshot.model.lwa` and
:mod:`~recbole_fewshot.model.nlba`.

Reference: Vartak, Thiagarajan, Miranda, Bratman and Larochelle. "A Meta-Learning Perspective on
Cold-Start Recommendations for Items." NeurIPS 2017. The models' docstrings list the departures.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_fewshot.nn.caches import DerivedCaches
from recbole_fewshot.nn.content import ItemContentEncoder
from recbole_fewshot.nn.interactions import TrainingInteractions


def sample_non_buyers(train: TrainingInteractions, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` training non-buyers per item, uniformly with replacement ([n_items, size], 0-padded), and their number.

    Items bought by (nearly) every user may get fewer; the padding item 0 gets none.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = train.n_users, train.n_items
    items = np.repeat(np.arange(n_items), train.item_count.numpy())
    bought = np.unique(items.astype(np.int64) * n_users + train.item_users.numpy())
    rows = np.arange(n_items, dtype=np.int64)[:, None] * n_users
    users = rng.integers(1, n_users, size=(n_items, size)) if n_users > 1 else np.zeros((n_items, size), np.int64)
    bad = np.isin(rows + users, bought) | (users == 0)
    for _ in range(50):
        if not bad.any():
            break
        users[bad] = rng.integers(1, max(n_users, 2), size=int(bad.sum()))
        bad = np.isin(rows + users, bought) | (users == 0)
    bad[0] = True
    order = np.argsort(bad, axis=1, kind="stable")  # kept users first
    users = np.where(np.take_along_axis(bad, order, 1), 0, np.take_along_axis(users, order, 1))
    return torch.as_tensor(users, dtype=torch.long), torch.as_tensor((~bad).sum(1), dtype=torch.long)


class SupportSetClassifier(DerivedCaches, GeneralRecommender):
    r"""Vartak et al.'s frame: an item is the classifier induced by its positive and negative support users.

    Subclasses define ``classifier`` (class representatives to item-specific parameters) and
    ``apply_classifier`` (user embeddings and those parameters to logits, broadcasting).
    """

    input_type = InputType.PAIRWISE
    CACHED = ("_eval_tables",)  # the item classifiers: dropped by train()/eval() and load_state_dict

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = config["embedding_size"]
        self.embedding_size = d
        self.max_shots = config["max_shots"]

        train = TrainingInteractions(dataset, config["max_history_len"])
        self.register_buffer("history", train.history, persistent=False)
        support, support_len = train.support_matrix(self.max_shots)
        self.register_buffer("support", support, persistent=False)
        self.register_buffer("support_len", support_len, persistent=False)
        neg_support, neg_support_len = sample_non_buyers(train, config["neg_support_size"], config["seed"])
        self.register_buffer("neg_support", neg_support, persistent=False)
        self.register_buffer("neg_support_len", neg_support_len, persistent=False)

        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.content = ItemContentEncoder(dataset, d, config["item_content_fields"])
        self.loss = nn.BCEWithLogitsLoss()
        self._eval_tables: tuple | None = None

    # --- subclass interface ---------------------------------------------------------------------
    def classifier(self, r0: torch.Tensor, r1: torch.Tensor) -> list[torch.Tensor]:
        """Item-specific parameters from the negative and positive class representatives ``[..., d]``."""
        raise NotImplementedError

    def apply_classifier(self, user_vec: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        """Logits of users ``[..., d]`` under item classifiers ``params`` (broadcasting)."""
        raise NotImplementedError

    # --- users ----------------------------------------------------------------------------------
    def user_vectors(self, users: torch.Tensor, masked_items: torch.Tensor | None = None) -> torch.Tensor:
        """F(u): mean item embedding of each user's training history without ``masked_items``, ``[*users.shape, d]``."""
        history = self.history[users]
        if masked_items is not None:
            history = history * (history != masked_items.unsqueeze(-1))
        flat = history.reshape(-1, history.shape[-1])
        pooled = F.embedding_bag(flat, self.item_embedding.weight, mode="mean", padding_idx=0)
        return pooled.view(*users.shape, self.embedding_size)

    # --- items ----------------------------------------------------------------------------------
    @staticmethod
    def _members(users: torch.Tensor, length: torch.Tensor, exclude: torch.Tensor | None,
                 shots: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Support users and their mask, without ``exclude`` and cut to the first ``shots`` remaining."""
        positions = torch.arange(users.shape[-1], device=users.device)
        valid = positions < length.unsqueeze(-1)
        if exclude is not None:
            valid = valid & (users != exclude.unsqueeze(-1))
        if shots is not None:
            order = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)
            users, valid = users.gather(-1, order), valid.gather(-1, order)
            valid = valid & (positions < shots.unsqueeze(-1))
        return users, valid

    def _class_mean(self, users: torch.Tensor, valid: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Mean F over the valid ``users`` of each row (and ``extra`` as one more member); zero if empty."""
        unique, inverse = torch.unique(users, return_inverse=True)  # each distinct user encoded once
        width = users.shape[-1]
        total = F.embedding_bag(inverse.reshape(-1, width), self.user_vectors(unique), mode="sum",
                                per_sample_weights=valid.reshape(-1, width).float())
        total = total.view(*users.shape[:-1], self.embedding_size)
        count = valid.sum(-1, keepdim=True).float()
        if extra is not None:
            total, count = total + extra, count + 1
        return total / count.clamp_min(1.0)

    def representatives(self, items: torch.Tensor, exclude: torch.Tensor | None = None,
                        shots: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Class representatives ``(R^0, R^1)`` of ``items`` (``[*items.shape, d]`` each).

        ``exclude``: a user per item left out of both classes; ``shots``: positive support size per item.
        """
        pos, pos_valid = self._members(self.support[items], self.support_len[items], exclude, shots)
        neg, neg_valid = self._members(self.neg_support[items], self.neg_support_len[items], exclude, None)
        content = self.content(items) if self.content.has_content else None
        return self._class_mean(neg, neg_valid), self._class_mean(pos, pos_valid, content)

    def _pair_scores(self, users: torch.Tensor, items: torch.Tensor, user_vec: torch.Tensor,
                     shots: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of (user, item) pairs, the user left out of the item's support."""
        return self.apply_classifier(user_vec, self.classifier(*self.representatives(items, users, shots)))

    # --- RecBole interface ----------------------------------------------------------------------
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        user_vec = self.user_vectors(user, masked_items=pos_item)
        scores, labels = [], []
        for items, label in ((pos_item, 1.0), (neg_item, 0.0)):
            shots = torch.randint(0, self.max_shots + 1, items.shape, device=items.device)
            scores.append(self._pair_scores(user, items, user_vec, shots))
            labels.append(torch.full_like(scores[-1], label))
        return self.loss(torch.cat(scores), torch.cat(labels))

    def predict(self, interaction):
        user = interaction[self.USER_ID]
        item = interaction[self.ITEM_ID]
        return self._pair_scores(user, item, self.user_vectors(user))

    def _all_items(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Every user's F and every item's classifier (stored supports), computed once per evaluation."""
        if self._eval_tables is None or self.training:
            users = torch.arange(self.n_users, device=self.history.device)
            items = torch.arange(self.n_items, device=self.history.device)
            tables = (self.user_vectors(users), self.classifier(*self.representatives(items)))
            if self.training:
                return tables
            self._eval_tables = tables
        return self._eval_tables

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        user_table, params = self._all_items()
        user_vec = user_table[user]
        scores = self.apply_classifier(user_vec.unsqueeze(1), [p.unsqueeze(0) for p in params])
        # Pairs whose user sits in the item's stored support are rescored without that user.
        in_support = torch.zeros_like(scores, dtype=torch.bool)
        for members, length in ((self.support, self.support_len), (self.neg_support, self.neg_support_len)):
            _, valid = self._members(members, length, None, None)
            in_support |= ((members.unsqueeze(0) == user.view(-1, 1, 1)) & valid.unsqueeze(0)).any(-1)
        rows, items = in_support.nonzero(as_tuple=True)
        if len(rows):
            scores[rows, items] = self._pair_scores(user[rows], items, user_vec[rows])
        return scores.view(-1)
