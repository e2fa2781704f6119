"""An evaluator independent of both ColdRec and RecBole, for scores over one phase's new items.

Protocol, the project's own (`fewshot_candidates: new`): every user with at least one interaction in
the phase is ranked over that phase's new items only; items in the user's training history are removed
from the ranking; Recall@N = hits / positives and binary NDCG@N with the ideal DCG over
min(positives, N). Tied scores are ordered at random (a fresh random key per user and item), and the
figures are averaged over a few such draws, so a model that gives many items the same score is not
helped or hurt by the items' order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PhaseRanking:
    """The ground truth of one phase: users, candidate items, positives and training history as a
    users x candidates layout."""

    users: np.ndarray  # user index of each row
    items: np.ndarray  # item index of each column
    positives: np.ndarray  # bool [users, items]: the user's interactions in the phase
    history: np.ndarray  # bool [users, items]: candidates already in the user's training history


def phase_ranking(test_pairs: np.ndarray, train_pairs: np.ndarray, candidates: np.ndarray) -> PhaseRanking:
    """The ranking task of a phase from its (user, item) pairs, the training pairs and its new items."""
    users = np.unique(test_pairs[:, 0])
    items = np.asarray(candidates)
    row = {u: r for r, u in enumerate(users)}
    column = {i: c for c, i in enumerate(items)}
    positives = np.zeros((len(users), len(items)), dtype=bool)
    for user, item in test_pairs:
        positives[row[user], column[item]] = True
    history = np.zeros_like(positives)
    for user, item in train_pairs:
        if user in row and item in column:
            history[row[user], column[item]] = True
    return PhaseRanking(users, items, positives, history)


def rank_metrics(scores: np.ndarray, task: PhaseRanking, top_n: int = 20, tie_draws: int = 10) -> dict:
    """Recall@N and NDCG@N of ``scores`` [users, items] on ``task``, mean over ``tie_draws`` random
    orders of tied scores; also the NDCG range over the draws."""
    scores = np.where(task.history, -np.inf, np.asarray(scores, dtype=np.float64))
    n_positives = task.positives.sum(axis=1)
    discount = 1.0 / np.log2(np.arange(2, top_n + 2))
    ideal = np.cumsum(discount)[np.minimum(n_positives, top_n) - 1]
    recalls, ndcgs = [], []
    for draw in range(tie_draws):
        tie_key = np.random.RandomState(1000 + draw).rand(*scores.shape)
        top = np.lexsort((tie_key, -scores), axis=1)[:, :top_n]
        hits = np.take_along_axis(task.positives, top, axis=1)
        recalls.append(float(np.mean(hits.sum(axis=1) / n_positives)))
        ndcgs.append(float(np.mean((hits * discount).sum(axis=1) / ideal)))
    return {f"recall@{top_n}": float(np.mean(recalls)), f"ndcg@{top_n}": float(np.mean(ndcgs)),
            f"ndcg@{top_n}_range_over_tie_draws": [min(ndcgs), max(ndcgs)], "users": int(len(task.users))}
