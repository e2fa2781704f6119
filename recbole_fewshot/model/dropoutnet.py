r"""DropoutNet: input dropout on pretrained preference vectors, trained to reproduce warm scores.

Volkovs, Yu and Poutanen, "DropoutNet: Addressing Cold Start in Recommender Systems", NeurIPS 2017.

A user tower ``f_U`` and an item tower ``f_V`` (dense layers with batch norm and tanh, then a linear
output) map *preference* inputs -- a warm latent model's user and item vectors, standardised per
dimension -- and, on the item side, the item's content to new vectors. Their dot product is trained to
reproduce the warm model's score: ``(U_u . V_v - f_U(U_u) . f_V(V_v, content_v))^2`` (Eq. 2). Input
dropout is the cold-start mechanism: for a ``dropout_prob`` share of the training pairs the item's
preference input is set to zero (the standardised mean), so the item tower learns to score from
content alone. For a further ``transform_prob`` share it is replaced by the mean of the standardised
vectors of some of the item's buyers, the paper's item transform (Algorithm 1, Sec. 4.3), which scores
an item with a few interactions without retraining the warm model.

At evaluation an item with more than ``max_shots`` training interactions is warm (its backbone vector is
the preference input); an item with none has its preference input dropped (content only); an item with
1..``max_shots`` interactions (a K-shot new item) gets the item transform of its training buyers.

Departures from the paper:

* the warm model is BPR matrix factorisation (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`) trained
  on the same split, not WMF;
* item cold start only: the user tower reads the user's preference vector alone (no user content), and
  user dropout and user transforms are not applied;
* content is every loaded RecBole item feature, encoded by the shared
  :class:`~recbole_fewshot.nn.content.ItemContentEncoder` and trained end to end with the towers,
  rather than fixed precomputed vectors (tf-idf + SVD in the authors' code);
* target pairs: the authors score each user's top-N warm-model items plus N random items; here each
  training interaction ``(u, i)`` plus ``random_items`` items drawn uniformly from the warm items, and
  only warm items (more than ``max_shots`` interactions) serve as targets, since the backbone vectors
  of rarer items are unreliable;
* the item transform averages 1..``max_shots`` buyers sampled with replacement (never the scored user),
  like a K-shot support set, rather than all of the item's users;
* Adam (RecBole's learner) instead of SGD with momentum 0.9 and step decay.
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import truncated_normal_init


def tower(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    """Dense + batch norm + tanh per hidden layer, then a linear output (the authors' TanH blocks)."""
    layers = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width, momentum=0.01, eps=1e-3), nn.Tanh()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class DropoutNet(WarmBackboneRecommender):
    r"""Two towers over dropped-out preference vectors and item content, regressing warm scores."""

    REQUIRES_WARM_ITEMS = True
    SETTINGS = ("dropout_prob", "transform_prob", "random_items")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        if self.dropout_prob + self.transform_prob > 1:
            raise ValueError("DropoutNet: dropout_prob + transform_prob must be at most 1")

        self.register_buffer("item_ptr", self.train_interactions.item_ptr, persistent=False)
        self.register_buffer("item_users", self.train_interactions.item_users, persistent=False)
        self.build_backbone_and_content(dataset, config)
        hidden, out = list(config["mlp_hidden_size"]), config["output_size"]
        self.user_tower = tower(d, hidden, out)
        self.item_tower = tower(2 * d, hidden, out)
        self.loss = nn.MSELoss()
        truncated_normal_init(self.user_tower, self.item_tower)

    # --- inputs ---------------------------------------------------------------------------------
    def item_transform(self, buyers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean standardised user vector of ``buyers`` [N, S] where ``mask``; zero (= dropped) when empty."""
        users = self.standardised_backbone()[0][buyers] * mask.unsqueeze(-1)
        return users.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)

    def sample_buyers(self, items: torch.Tensor, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """1..max_shots buyers of each (warm) item, sampled with replacement, never the row's user."""
        n, device = len(items), items.device
        offsets = (torch.rand(n, self.max_shots, device=device) * self.item_count[items].unsqueeze(1)).long()
        buyers = self.item_users[self.item_ptr[items].unsqueeze(1) + offsets]
        shots = torch.randint(1, self.max_shots + 1, (n, 1), device=device)
        mask = (torch.arange(self.max_shots, device=device) < shots) & (buyers != users.unsqueeze(1))
        return buyers, mask

    def item_preference(self, items: torch.Tensor) -> torch.Tensor:
        """Serving-time preference inputs: backbone vector (warm), transform (1..max_shots), zero (none)."""
        mask = torch.arange(self.max_shots, device=items.device) < self.support_len[items].unsqueeze(1)
        transform = self.item_transform(self.support[items], mask)
        warm = ~self.is_cold(items).unsqueeze(1)
        return torch.where(warm, self.standardised_backbone()[1][items], transform)

    # --- towers ---------------------------------------------------------------------------------
    def user_representation(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_tower(self.standardised_backbone()[0][users])

    def item_representation(self, items: torch.Tensor, preference: torch.Tensor | None = None) -> torch.Tensor:
        """Item tower output; ``preference`` defaults to the serving-time inputs of ``items``."""
        if preference is None:
            preference = self.item_preference(items)
        return self.item_tower(torch.cat([preference, self.content(items)], dim=-1))

    # --- RecBole interface ----------------------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        device = user.device
        random = self.warm_items[torch.randint(len(self.warm_items), (len(user) * self.random_items,), device=device)]
        users = torch.cat([user, user.repeat(self.random_items)])
        items = torch.cat([item, random])
        keep = ~self.is_cold(items)
        users, items = users[keep], items[keep]
        with torch.no_grad():
            target = (self.backbone.user_embedding(users) * self.backbone.item_embedding(items)).sum(-1)

        preference = self.standardised_backbone()[1][items]
        order = torch.randperm(len(items), device=device)
        n_drop = int(self.dropout_prob * len(items))
        n_transform = int(self.transform_prob * len(items))
        dropped = torch.zeros(len(items), dtype=torch.bool, device=device)
        dropped[order[:n_drop]] = True
        transformed = torch.zeros_like(dropped)
        transformed[order[n_drop: n_drop + n_transform]] = True
        transform = self.item_transform(*self.sample_buyers(items, users))
        preference = torch.where(transformed.unsqueeze(1), transform, preference)
        preference = preference * (~dropped).unsqueeze(1)

        pred = (self.user_representation(users) * self.item_representation(items, preference)).sum(-1)
        return self.loss(pred, target)
