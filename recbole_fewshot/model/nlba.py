r"""NLBA: Non-Linear Bias Adaptation, a shared network on item content whose biases are adapted per user.

Reference:
    Manasi Vartak, Arvind Thiagarajan, Conrado Miranda, Jeshua Bratman and Hugo Larochelle. "A
    Meta-Learning Perspective on Cold-Start Recommendations for Items." NeurIPS 2017.

As in LWA, each user is a task summarised by class representatives ``R^1_u`` / ``R^0_u``, the mean
content vector ``F`` of the items the user engaged with / did not. Instead of adapting the weights of
a linear model, NLBA keeps the weights of a non-linear classifier (an MLP on the item's ``F(j)``)
shared by all users and adapts its biases: every hidden layer ``l`` and the output get the
user-specific bias ``V^l [R^0_u; R^1_u] + c^l``, a learned linear function of the representatives,

    h^l = ReLU(W^l h^{l-1} + V^l [R^0_u; R^1_u] + c^l),  h^0 = F(j),  logit = w . h^L + v [R^0_u; R^1_u] + c,

trained with the log loss across users, so a user's history adapts the classifier without a gradient
step and any item is scored from its content. Support sets, episodes and caching:
:class:`~recbole_fewshot.nn.support_classifier.UserTaskClassifier`.

Departures from the paper:

* Negatives: items with a training interaction that the user never interacted with (no impression
  logs in implicit feedback), drawn in proportion to training count ** ``negative_sampling_power``:
  fresh draws in every training episode, the exact weighted mean at evaluation.
* ``F`` is an MLP on every loaded item feature (``ItemContentEncoder``), not tweet and author features.
* The positive class is the user's last ``max_history_len`` training items, not the whole history.
* Episodes are the rows of RecBole's pairwise batches (query positive left out of the support, one
  drawn query negative), rather than a split of each user's history.
* Which layers get adapted biases (here every hidden layer and the output) and the layer sizes are our
  reading; the paper does not publish them for this setting.
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_fewshot.nn.support_classifier import UserTaskClassifier


class NLBA(UserTaskClassifier):
    r"""Shared MLP over ``F(j)`` whose every bias is a linear function of the user's class representatives."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        sizes = [self.embedding_size] + list(config["mlp_hidden_size"])
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.output = nn.Linear(sizes[-1], 1, bias=False)
        # One adapter per hidden layer and one for the output: [R^0; R^1] -> that layer's bias.
        self.adapters = nn.ModuleList(nn.Linear(2 * self.embedding_size, b) for b in sizes[1:] + [1])

    def adapt(self, r0: torch.Tensor, r1: torch.Tensor) -> list[torch.Tensor]:
        representatives = torch.cat([r0, r1], dim=-1)
        return [adapter(representatives) for adapter in self.adapters]

    def classify(self, params: list[torch.Tensor], item_vec: torch.Tensor) -> torch.Tensor:
        hidden = item_vec
        for layer, bias in zip(self.layers, params[:-1]):
            hidden = torch.relu(layer(hidden) + bias)
        return self.output(hidden).squeeze(-1) + params[-1].squeeze(-1)
