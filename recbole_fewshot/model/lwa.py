r"""LWA: Linear Weight Adaptation, a per-user logistic regression on item content adapted from the user's history.

Reference:
    Manasi Vartak, Arvind Thiagarajan, Conrado Miranda, Jeshua Bratman and Hugo Larochelle. "A
    Meta-Learning Perspective on Cold-Start Recommendations for Items." NeurIPS 2017.

Each user is a task. An item is seen only through its content, ``F(j)`` (a learned network). The
user's history is summarised by class representatives, ``R^1_u`` (mean ``F`` of items they engaged
with) and ``R^0_u`` (of items they did not); LWA makes them the weights of a logistic regression,
``P(u likes j) = sigmoid(b + (omega_0 R^0_u + omega_1 R^1_u) . F(j))``, with learned scalars
``omega`` and bias ``b`` shared by all users. ``F``, ``omega`` and ``b`` are meta-learned across users
with the log loss, so any item (new ones included) is scored from its content, without a gradient step.
Support sets, episodes and caching: :class:`~recbole_fewshot.nn.support_classifier.UserTaskClassifier`.

Departures from the paper:

* Negatives: tweets had impression logs (shown, not engaged); implicit feedback has none, so a user's
  negative class is the items with a training interaction that the user never interacted with, drawn
  in proportion to training count ** ``negative_sampling_power`` (a stand-in for what was shown): fresh
  draws in every training episode, the exact weighted mean at evaluation (deterministic).
* ``F`` is an MLP on every loaded item feature (the shared ``ItemContentEncoder``), not the paper's
  tweet and author features; layer sizes are ours.
* The positive class is the user's last ``max_history_len`` training items, not the whole history.
* Episodes are the rows of RecBole's pairwise batches: one query positive (left out of the support)
  and one drawn query negative per row, rather than a split of each user's history.
* The initialisation ``omega_1 = 1``, ``omega_0 = 0``, ``b = 0`` is ours (the paper gives none).
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_fewshot.nn.support_classifier import UserTaskClassifier


class LWA(UserTaskClassifier):
    r"""Linear Weight Adaptation: ``sigmoid(b + (omega_0 R^0_u + omega_1 R^1_u) . F(j))``."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.positive_weight = nn.Parameter(torch.ones(()))
        self.negative_weight = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def adapt(self, r0: torch.Tensor, r1: torch.Tensor) -> list[torch.Tensor]:
        return [self.positive_weight * r1 + self.negative_weight * r0]

    def classify(self, params: list[torch.Tensor], item_vec: torch.Tensor) -> torch.Tensor:
        return (params[0] * item_vec).sum(-1) + self.bias

    def score_table(self, params: list[torch.Tensor], table: torch.Tensor) -> torch.Tensor:
        return params[0] @ table.T + self.bias
