"""A warm BPR matrix-factorisation backbone for the cold-start models that start from one.

DropoutNet, Heater, MetaEmb, MWUF, DeepMusic, ALDI, ... take pretrained user and item vectors of a
warm recommender as input. ``WarmBackboneTrainer`` trains this backbone first in the same run (or loads
it from ``pretrained_backbone: <RecBole BPR checkpoint>``), freezes it, then trains the model.
"""

from __future__ import annotations

import torch
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import BPRLoss
from torch import nn


class BPRBackbone(nn.Module):
    """User and item embeddings trained with the BPR loss (Rendle et al., UAI 2009), as RecBole's BPR."""

    def __init__(self, n_users: int, n_items: int, embedding_size: int):
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, embedding_size)
        self.item_embedding = nn.Embedding(n_items, embedding_size)
        self.loss = BPRLoss()
        self.apply(xavier_normal_initialization)

    def bpr_loss(self, user: torch.Tensor, pos_item: torch.Tensor, neg_item: torch.Tensor) -> torch.Tensor:
        user_e = self.user_embedding(user)
        pos = (user_e * self.item_embedding(pos_item)).sum(-1)
        neg = (user_e * self.item_embedding(neg_item)).sum(-1)
        return self.loss(pos, neg)

    def load_bpr_state_dict(self, state_dict: dict) -> None:
        """Copy the embeddings of a RecBole ``BPR`` checkpoint's state_dict (same dataset, same ids)."""
        for name in ("user_embedding.weight", "item_embedding.weight"):
            if name not in state_dict:
                raise ValueError(f"pretrained_backbone: the checkpoint has no {name}; it must be a RecBole BPR checkpoint")
            target = getattr(self, name.split(".")[0]).weight
            if state_dict[name].shape != target.shape:
                raise ValueError(
                    f"pretrained_backbone: {name} has shape {tuple(state_dict[name].shape)}, this dataset needs "
                    f"{tuple(target.shape)}: train the backbone on the same split with the same embedding_size"
                )
            with torch.no_grad():
                target.copy_(state_dict[name])

    def freeze(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad_(False)


def standardise(vectors: torch.Tensor, rows: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    """``vectors`` standardised per dimension over ``rows`` (a boolean mask), clipped to ``[-clip, clip]`` if given.

    DropoutNet and Heater feed standardised backbone vectors to their towers.
    """
    reference = vectors[rows] if int(rows.sum()) > 1 else vectors
    standard = (vectors - reference.mean(0)) / reference.std(0).clamp_min(1e-6)
    return standard if clip is None else standard.clamp(-clip, clip)


def truncated_normal_init(*modules: nn.Module) -> None:
    """The DropoutNet/Heater authors' initialisation of every Linear layer: N(0, 0.01) cut at 2 std, zero bias."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.01, a=-0.02, b=0.02)
                nn.init.zeros_(layer.bias)
