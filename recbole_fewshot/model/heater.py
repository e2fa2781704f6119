r"""Heater: randomized training and a mixture-of-experts transformation of item content.

Zhu, Sefati, Saadatpanah and Caverlee, "Recommendation for New Users and New Items via Randomized
Training and Mixture-of-Experts Transformation", SIGIR 2020.

Pretrained collaborative vectors (separate training) are combined with a content transformation
trained jointly with the recommender. An item's content ``c`` is mapped into the pretrained space by a
mixture of experts, ``V~ = tanh(sum_t g_t(c) f_t(c))`` with ``n_experts`` expert MLPs ``f_t`` and a
softmax gate ``g(c)`` (the gates sum to one), so that different items get differently weighted,
"personalised" transformations. A similarity constraint ``alpha * sum ||V~ - V||^2`` pulls the mapped
vector toward the pretrained one. Randomized training: for a ``dropout_prob`` share of the training
rows the item's pretrained vector ``V`` is replaced by ``V~``, so the layers above (a dense + batch norm +
tanh layer and a linear output per side) learn to score both. The model regresses interaction labels
(1 for a training interaction, 0 for ``neg_samples`` sampled warm items) with squared error.

At evaluation an item with more than ``max_shots`` training interactions uses its pretrained vector;
every other item -- zero-shot, or a K-shot new item -- uses ``V~``: Heater has no way to read a few
interactions, so those of a K-shot item only shape training (its rows always take the content path).

Departures from the paper:

* the pretrained model is BPR matrix factorisation (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`)
  trained on the same split (the authors also use BPR vectors);
* item cold start only: the user side reads the user's pretrained vector alone (no user content, no
  user experts);
* content is every loaded RecBole item feature, encoded by the shared
  :class:`~recbole_fewshot.nn.content.ItemContentEncoder` and trained end to end, rather than fixed
  precomputed vectors (tf-idf + SVD in the authors' code);
* the authors' released code gates the experts with tanh; here the gate is a softmax;
* rows of items with at most ``max_shots`` interactions always take the content path and are left out
  of the similarity constraint, since their pretrained vectors are unreliable;
* Adam (RecBole's learner; the L2 penalty via ``weight_decay``) instead of SGD with momentum and step decay.
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import truncated_normal_init


class MixtureOfExperts(nn.Module):
    """``tanh(sum_t softmax(W c)_t * f_t(c))`` with tanh-MLP experts ``f_t``."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int, n_experts: int):
        super().__init__()
        self.experts = nn.ModuleList()
        for _ in range(n_experts):
            layers, width = [], in_dim
            for size in hidden + [out_dim]:
                layers += [nn.Linear(width, size), nn.Tanh()]
                width = size
            self.experts.append(nn.Sequential(*layers))
        self.gate = nn.Linear(in_dim, n_experts)

    def gates(self, content: torch.Tensor) -> torch.Tensor:
        """Expert weights [N, n_experts], summing to one per row."""
        return torch.softmax(self.gate(content), dim=-1)

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        experts = torch.stack([expert(content) for expert in self.experts], dim=1)  # [N, T, d]
        return torch.tanh((self.gates(content).unsqueeze(-1) * experts).sum(1))


def top_layers(in_dim: int, out_dim: int) -> nn.Sequential:
    """The authors' shared top: dense + batch norm + tanh, then a linear output."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.Tanh(), nn.Linear(out_dim, out_dim))


class Heater(WarmBackboneRecommender):
    r"""Pretrained vectors, randomly swapped for a mixture-of-experts content mapping during training."""

    NO_CONTENT_EFFECT = "every new item gets the same vector"
    STANDARDISE_CLIP = (5.0, 1.0)  # users to +-5, items to +-1 (the range of the tanh mapping)
    REQUIRES_WARM_ITEMS = True
    SETTINGS = ("dropout_prob", "neg_samples", "alpha")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.build_backbone_and_content(dataset, config)
        self.experts = MixtureOfExperts(d, list(config["expert_hidden_size"]), d, config["n_experts"])
        self.user_layers = top_layers(d, config["output_size"])
        self.item_layers = top_layers(d, config["output_size"])
        self.loss = nn.MSELoss()
        truncated_normal_init(self.experts, self.user_layers, self.item_layers)

    def mapped(self, items: torch.Tensor) -> torch.Tensor:
        """The mixture-of-experts content mapping ``V~`` of ``items`` (computed once per distinct item)."""
        unique, inverse = torch.unique(items, return_inverse=True)
        return self.experts(self.content(unique))[inverse]

    def user_representation(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_layers(self.standardised_backbone()[0][users])

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """Serving-time item vectors: pretrained input for warm items, ``V~`` for all others."""
        warm = ~self.is_cold(items).unsqueeze(1)
        return self.item_layers(torch.where(warm, self.standardised_backbone()[1][items], self.mapped(items)))

    def randomized_inputs(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training inputs: ``V~`` for a random ``dropout_prob`` share of rows and for non-warm items, else ``V``.

        Returns the inputs, ``V~`` and the warm mask (the rows of the similarity constraint).
        """
        mapped = self.mapped(items)
        warm = ~self.is_cold(items)
        swapped = torch.zeros_like(warm)
        swapped[torch.randperm(len(items), device=items.device)[: int(self.dropout_prob * len(items))]] = True
        use_pretrained = (warm & ~swapped).unsqueeze(1)
        return torch.where(use_pretrained, self.standardised_backbone()[1][items], mapped), mapped, warm

    # --- RecBole interface ----------------------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        negatives = self.warm_items[
            torch.randint(len(self.warm_items), (len(user) * self.neg_samples,), device=user.device)
        ]
        users = torch.cat([user, user.repeat(self.neg_samples)])
        items = torch.cat([item, negatives])
        target = torch.cat([torch.ones_like(item), torch.zeros_like(negatives)]).float()

        inputs, mapped, warm = self.randomized_inputs(items)
        pred = (self.user_representation(users) * self.item_layers(inputs)).sum(-1)
        similarity = ((mapped - self.standardised_backbone()[1][items]) ** 2).sum(-1)
        return self.loss(pred, target) + self.alpha * (similarity * warm).sum()
