r"""NLBA: Non-Linear Bias Adaptation, a shared neural network whose biases are adapted per item.

Reference:
    Manasi Vartak, Arvind Thiagarajan, Conrado Miranda, Jeshua Bratman and Hugo Larochelle. "A
    Meta-Learning Perspective on Cold-Start Recommendations for Items." NeurIPS 2017.

Mechanism (Vartak et al.): as in LWA, an item ``t`` is represented only by its history,
summarised by the class representatives ``R^0_t`` (mean embedding of its negative users) and
``R^1_t`` (of its positive users). Instead of adapting the weights of a linear model, NLBA keeps the
weights of a non-linear classifier (an MLP on the user embedding ``F(u)``) shared by all items and
adapts its biases: every hidden layer ``l`` and the output get the item-specific bias
``V^l [R^0_t; R^1_t] + c^l``, a learned linear function of the representatives,

    h^l = ReLU(W^l h^{l-1} + V^l [R^0_t; R^1_t] + c^l),   logit = w . h^L + v [R^0_t; R^1_t] + c,

trained with the log loss across items, so a new item is adapted by its support set alone.

User embeddings, positive and negative support sets, the exclusion of the scored user and the
zero-shot case are those of :class:`~recbole_fewshot.model.lwa.SupportSetClassifier` (see LWA): the
positive support is the item's first ``max_shots`` training buyers, the negative support is
``neg_support_size`` sampled training non-buyers, and item content is one pseudo-member of the
positive class, so at K = 0 the bias comes from the content vector and the sampled non-buyers.

Departures from the paper:

* Negative support from sampled non-buyers, not logged non-engagements (implicit feedback).
* ``F`` is the mean embedding of the user's training history, not the production user features.
* Item content as a pseudo-member of the positive class is an addition (no content in the paper).
* Training samples a support size K' ~ U{0..max_shots} per row; negatives of the log loss are
  RecBole's sampled negative items.
* Layer sizes (``mlp_hidden_size``) are not the paper's (unpublished for this setting).
"""

from __future__ import annotations

import torch
from recbole.model.init import xavier_normal_initialization
from torch import nn

from recbole_fewshot.nn.support_classifier import SupportSetClassifier


class NLBA(SupportSetClassifier):
    r"""Shared MLP over ``F(u)`` whose every bias is a linear function of the item's class representatives."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        sizes = [self.embedding_size] + list(config["mlp_hidden_size"])
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.output = nn.Linear(sizes[-1], 1, bias=False)
        # One adapter per hidden layer and one for the output: [R^0; R^1] -> that layer's bias.
        self.adapters = nn.ModuleList(nn.Linear(2 * self.embedding_size, b) for b in sizes[1:] + [1])
        self.apply(xavier_normal_initialization)

    def classifier(self, r0: torch.Tensor, r1: torch.Tensor) -> list[torch.Tensor]:
        representatives = torch.cat([r0, r1], dim=-1)
        return [adapter(representatives) for adapter in self.adapters]

    def apply_classifier(self, user_vec: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        hidden = user_vec
        for layer, bias in zip(self.layers, params[:-1]):
            hidden = torch.relu(layer(hidden) + bias)
        return (self.output(hidden) + params[-1]).squeeze(-1)

    def item_biases(self, items: torch.Tensor) -> list[torch.Tensor]:
        """Item-specific biases of every layer (output last) from the stored support sets of ``items``."""
        return self.classifier(*self.representatives(items))
