"""Shared pieces of the content floors: models with nothing to learn beyond a warm backbone.

``ContentProfile``, ``ContentKNN`` and ``ContentRidge`` are training-free or closed-form. Their content
is ``ItemContentEncoder.content_vectors`` (fixed codes, no learned weight), computed once per model from
the item table. ``BackboneFloor`` holds what the two backbone floors share: the warm BPR backbone, the
cold/warm split of items by training count, a zero training loss, and an item table built in closed form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import BPRBackbone
from recbole_fewshot.nn.content import ItemContentEncoder
from recbole_fewshot.nn.interactions import TrainingInteractions
from recbole_fewshot.trainer import BackboneFloorTrainer


def item_content_vectors(dataset, fields: Sequence[str] | None) -> torch.Tensor:
    """Every item's training-free content vector (``ItemContentEncoder.content_vectors``) less the columns
    that are zero for every item (tokens on too few items), which change no cosine and no ridge prediction,
    ``[n_items, D]``; ``D`` is 0 when the dataset has no item features."""
    encoder = ItemContentEncoder(dataset, 1, fields)  # only its fixed codes are read, not its learned layers
    with torch.no_grad():
        content = encoder.content_vectors(torch.arange(dataset.item_num))
    return content[:, content.abs().sum(0) > 0]


def with_bias(codes: torch.Tensor) -> torch.Tensor:
    """Content codes ``[N, D]`` with a bias column of ones, ``[N, D + 1]``: the inputs of a content ridge map."""
    return torch.cat([codes, codes.new_ones(len(codes), 1)], dim=1)


def ridge_map(codes: torch.Tensor, targets: torch.Tensor, ridge_lambda: float) -> torch.Tensor:
    """``W = (X^T X + ridge_lambda I)^{-1} X^T Y`` with ``X = with_bias(codes)`` (every column penalised, the
    bias too), solved in float64: the closed-form ridge regression of content onto ``targets``, ``[D + 1, d]``."""
    inputs = with_bias(codes.double())
    gram = inputs.T @ inputs
    penalty = ridge_lambda * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + penalty, inputs.T @ targets.double())


def training_pairs(train: TrainingInteractions) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct (user, item) pairs of the training interactions, as two id tensors."""
    items = torch.repeat_interleave(torch.arange(train.n_items), train.item_count)
    pairs = torch.unique(train.item_users * train.n_items + items)
    return pairs // train.n_items, pairs % train.n_items


class BackboneFloor(WarmBackboneRecommender):
    """Base of a floor on the warm BPR backbone, trained (or loaded) by ``BackboneFloorTrainer``.

    A warm item keeps its backbone vector; every cold item gets ``cold_vectors()`` instead, which never
    reads a cold item's own backbone vector. Scores are backbone user vector . item vector. Nothing is
    trained after the backbone: the loss is zero (it touches one dummy parameter so RecBole's trainer
    runs, as RecBole's ``Pop`` does).
    """

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL
    trainer_class = BackboneFloorTrainer

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        cold = self.is_cold(torch.arange(self.n_items))
        cold[0] = False  # RecBole's padding item
        self.register_buffer("cold_items", torch.nonzero(cold).view(-1), persistent=False)
        self.backbone = BPRBackbone(self.n_users, self.n_items, config["embedding_size"])
        self.fake_loss = nn.Parameter(torch.zeros(1))

    def cold_vectors(self) -> torch.Tensor:
        """The vectors of ``cold_items`` (in that order), ``[len(cold_items), embedding_size]``."""
        raise NotImplementedError

    def compute_score_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's user vectors, and every item's vector in closed form."""
        with torch.no_grad():
            table = self.backbone.item_embedding.weight.clone()
            table[self.cold_items] = self.cold_vectors().to(table.dtype)
        return self.backbone.user_embedding.weight, table

    def calculate_loss(self, interaction) -> torch.Tensor:
        return self.fake_loss.sum() * 0.0
