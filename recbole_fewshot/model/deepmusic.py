r"""DeepMusic: content regressed onto the item factors of a warm latent-factor model.

Reference:
    Aäron van den Oord, Sander Dieleman, Benjamin Schrauwen. "Deep content-based music
    recommendation." NeurIPS 2013.

Mechanism: a warm matrix-factorisation model gives user factors ``x_u`` and item factors ``y_i``. A
content network ``f`` is trained to predict ``y_i`` from the item's content by minimising the mean
squared error ``||f(content_i) - y_i||^2`` with the factors held fixed. An item without usage data is
scored ``x_u . f(content_i)``; a warm item keeps ``x_u . y_i``.

Here an item is cold when it has at most ``max_shots`` training interactions (every new item, whose
K support interactions are too few for reliable factors). The method has no way to use a cold item's
K support interactions: they only enter the warm factor model as any training interaction does.

Departures from the paper:

* the warm factors come from BPR matrix factorisation (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`,
  pretrained or loaded by ``WarmBackboneTrainer``) instead of weighted matrix factorisation of play counts;
* content is every RecBole item feature, encoded by the shared
  :class:`~recbole_fewshot.nn.content.ItemContentEncoder` followed by an MLP, instead of a
  convolutional network (or bag-of-words MLP) on audio spectrograms; layer sizes and dropout are ours;
* the regression targets are the positive items of each training batch that have more than
  ``max_shots`` interactions, so items weigh by popularity, rather than one example per song;
* optimisation is Adam through RecBole's trainer, with early stopping on the few-shot validation
  ranking, instead of the paper's SGD schedule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.model.layers import MLPLayers
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import BPRBackbone


class DeepMusic(WarmBackboneRecommender):
    r"""A content MLP regressed (MSE) onto frozen warm BPR item factors; cold items use its predictions."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.content = self.build_content_encoder(dataset, config)
        sizes = [d, *config["mlp_hidden_size"]]  # PyTorch's default initialisation (non-zero biases)
        self.regressor = nn.Sequential(
            MLPLayers(sizes, dropout=config["dropout_prob"], activation="relu"), nn.Linear(sizes[-1], d)
        )
        self.backbone = BPRBackbone(self.n_users, self.n_items, d)

    def predicted_factors(self, items: torch.Tensor) -> torch.Tensor:
        """Item factors predicted from content, shape ``[*items.shape, embedding_size]``."""
        return self.regressor(self.content(items))

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """Predicted factors of cold items, backbone factors of warm ones."""
        warm = self.backbone.item_embedding(items)
        return torch.where(self.is_cold(items).unsqueeze(-1), self.predicted_factors(items), warm)

    def calculate_loss(self, interaction):
        items = interaction[self.ITEM_ID]
        items = items[~self.is_cold(items)]
        if not len(items):  # a batch of cold positives only: nothing to regress onto
            return self.regressor[-1].weight.sum() * 0.0
        with torch.no_grad():
            target = self.backbone.item_embedding(items)
        return F.mse_loss(self.predicted_factors(items), target)
