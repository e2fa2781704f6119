r"""LWA: Linear Weight Adaptation, an item-specific linear classifier adapted from its support set.

Reference:
    Manasi Vartak, Arvind Thiagarajan, Conrado Miranda, Jeshua Bratman and Hugo Larochelle. "A
    Meta-Learning Perspective on Cold-Start Recommendations for Items." NeurIPS 2017.

Mechanism (Vartak et al.): an item ``t`` is never an embedding of its own; it is the
classifier its history induces. Users are embedded by a learned function ``F``; the item's history
splits into positive users (who engaged) and negative users (who did not), and each class is
summarised by its representative, the mean user embedding ``R^1_t`` and ``R^0_t``. LWA turns them
into the weights of a logistic regression, ``w_t = omega_1 R^1_t + omega_0 R^0_t`` (learned scalars
``omega``, global bias ``b``) and scores ``P(u likes t) = sigmoid(F(u) . w_t + b)``. Everything is
meta-learned across items with the log loss, so a new item is adapted by its support set alone,
without a gradient step.

Here (shared with :mod:`recbole_fewshot.model.nlba` through
:class:`~recbole_fewshot.nn.support_classifier.SupportSetClassifier`):

* ``F(u)``: mean of learned item embeddings over the user's last ``max_history_len`` training items;
* positive support: the item's first ``max_shots`` training buyers (a new item's K buyers);
* negative support: ``neg_support_size`` users sampled uniformly (with replacement, seeded by
  ``seed``) among the item's non-buyers in the training split, drawn once when the model is built;
* the user being scored is never in the support set of the item it is scored against (as at test time,
  where query users are not support users), so training rows and evaluation pairs drop it.

Zero-shot items (K = 0): the item content (every loaded item feature,
:class:`~recbole_fewshot.nn.content.ItemContentEncoder`) enters the positive class as one learned
pseudo-member, ``R^1_t = (content_t + sum F(s)) / (1 + |support|)``; with no buyers, ``R^1_t`` is the
content vector alone and the negative class representative still comes from sampled non-buyers.

Departures from the paper:

* Tweets had impression logs, so negatives were users shown the tweet who did not engage; implicit
  feedback has none, so the negative support is sampled non-buyers (noisy negatives), drawn once.
* The paper's user embeddings come from user features of the Twitter production model; here ``F`` is
  the mean embedding of the user's training history (the scored item masked out in training).
* Item content as a pseudo-member of the positive class is an addition (the paper has no content and
  no zero-shot case).
* Training samples, per row, a support size K' ~ U{0..max_shots} (the first K' buyers other than the
  scored user), imitating histories of every length; the paper trained on impressions in time order.
* Negative examples of the log loss are RecBole's sampled negative items (one per positive), not
  logged non-engagements.
"""

from __future__ import annotations

import torch
from recbole.model.init import xavier_normal_initialization
from torch import nn

from recbole_fewshot.nn.support_classifier import SupportSetClassifier


class LWA(SupportSetClassifier):
    r"""Linear Weight Adaptation: ``sigmoid(F(u) . (omega_1 R^1_t + omega_0 R^0_t) + b)``."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.positive_weight = nn.Parameter(torch.ones(()))
        self.negative_weight = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(()))
        self.apply(xavier_normal_initialization)

    def classifier(self, r0: torch.Tensor, r1: torch.Tensor) -> list[torch.Tensor]:
        return [self.positive_weight * r1 + self.negative_weight * r0]

    def apply_classifier(self, user_vec: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        return (user_vec * params[0]).sum(-1) + self.bias

    def item_weights(self, items: torch.Tensor) -> torch.Tensor:
        """The weight vectors ``w_t`` of ``items`` from their stored support sets, ``[*items.shape, d]``."""
        return self.classifier(*self.representatives(items))[0]
