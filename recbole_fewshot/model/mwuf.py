r"""MWUF: Meta Warm Up Framework, meta scaling and shifting networks that warm up cold item embeddings.

Reference:
    Yongchun Zhu, Ruobing Xie, Fuzhen Zhuang, Kaikai Ge, Ying Sun, Xu Zhang, Leyu Lin and Juan Cao.
    "Learning to Warm Up Cold Item Embeddings for Cold-start Recommendation with Meta Scaling and
    Shifting Networks." SIGIR 2021.

Mechanism: a base recommender is pretrained and frozen (here BPR matrix factorisation,
:class:`~recbole_fewshot.nn.backbone.BPRBackbone`, trained or loaded by ``WarmBackboneTrainer``). A cold item
gets an ID embedding initialised with the mean of the existing items' embeddings and trained on the
item's few interactions with the base model's loss (``L_cold``). Two meta networks warm it up:

    e_warm(t) = scale(content_t) * e_cold(t) + shift(mean of the base user embeddings of t's users),

the Meta Scaling Network reading only item features and the Meta Shifting Network only the users who
interacted with the item. The meta networks are trained with the base model's loss on ``e_warm``
(``L_warm``, the cold embedding held fixed), the base model untouched. Both networks are two-layer MLPs.

Meta-training on the training split: every warm item (more than ``max_shots`` training interactions)
is made cold once, when the model is built: its first K' ~ U{0..max_shots} buyers (seeded by ``seed``)
are its support, whose rows train its cold embedding (``L_cold``); its later buyers are query rows that
train the meta networks (``L_warm``). A few-shot item (at most ``max_shots`` training interactions, so
every new item of a split with K <= max_shots) keeps all its buyers as support. At evaluation, few-shot
items are scored with ``e_warm`` and warm items with their base embedding. Users are the base model's.
The shifting network therefore reads only training buyers; query interactions never reach it.

Zero-shot items (K = 0): no interactions, so ``e_cold`` is the mean item embedding and there is no
shift (it is zero without users): the item is its content scaling alone, ``scale(content_t) * mean``.

Departures from the paper:

* The base model is BPR matrix factorisation trained with the BPR loss, so ``L_cold`` and ``L_warm``
  are BPR losses on RecBole's sampled negatives (the paper's base models are CTR networks with log loss).
  Each loss fits the positive item of a row (its cold embedding in ``L_cold``, its warmed-up embedding
  in ``L_warm``); the sampled negative is scored in both with its frozen base embedding, so neither
  loss trains a negative's cold embedding nor warms a negative up.
* The paper feeds the scaling network the base model's pretrained feature embeddings; BPR has none, so
  item features go through a content encoder (:class:`~recbole_fewshot.nn.content.ItemContentEncoder`)
  trained with the scaling network on ``L_warm``.
* The paper updates the cold embeddings and then the meta networks batch by batch with two optimisers;
  here one optimiser minimises ``L_cold + L_warm`` on each batch, the two losses touching disjoint
  parameters (cold embeddings: ``L_cold``; meta networks and content encoder: ``L_warm``), so the
  updates are the same except that the meta step sees the cold embeddings before, not after, the batch's
  cold step.
* The paper simulates cold items on old items' chronological warm-up batches; here a warm item's cold
  period is its first K' buyers (K' drawn once per item), its later buyers the query rows.
* The cold embedding is parametrised as (mean of the base item embeddings) + a learned offset starting
  at zero, which equals the paper's mean initialisation while the base model is frozen.
* An item without users gets no shift (zero) rather than the shifting network applied to an empty mean.
"""

from __future__ import annotations

import torch
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import BPRLoss
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import BPRBackbone


def _meta_network(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))


class MWUF(WarmBackboneRecommender):
    r"""BPR backbone whose few-shot items are warmed up by meta scaling (content) and shifting (users) networks."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        # a few-shot item's users are all its buyers; a warm item's, its first K' ~ U{0..max_shots}
        generator = torch.Generator().manual_seed(config["seed"])
        simulated = torch.randint(0, self.max_shots + 1, self.item_count.shape, generator=generator)
        cold = self.is_cold(torch.arange(self.n_items))
        self.register_buffer("shift_len", torch.where(cold, self.support_len, simulated), persistent=False)

        self.backbone = BPRBackbone(self.n_users, self.n_items, d)
        self.cold_offset = nn.Embedding(self.n_items, d)
        self.content = self.build_content_encoder(dataset, config)
        self.meta_scaling = _meta_network(d, config["meta_hidden_size"])
        self.meta_shifting = _meta_network(d, config["meta_hidden_size"])
        self.loss = BPRLoss()
        self.apply(xavier_normal_initialization)
        nn.init.zeros_(self.cold_offset.weight)

    # --- items ----------------------------------------------------------------------------------
    def cold_embedding(self, items: torch.Tensor) -> torch.Tensor:
        """Cold ID embeddings: the mean embedding of the base model's items with interactions, plus a learned offset."""
        base = self.backbone.item_embedding.weight.detach()
        known = self.item_count > 0
        mean = base[known].mean(0) if known.any() else base.mean(0)
        return mean + self.cold_offset(items)

    def scaling(self, items: torch.Tensor) -> torch.Tensor:
        """Meta Scaling Network output: a function of the items' features alone."""
        return self.meta_scaling(self.content(items))

    def shift_users(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Users the shifting network aggregates for ``items`` (training buyers) and their mask."""
        users = self.support[items]
        valid = torch.arange(users.shape[-1], device=users.device) < self.shift_len[items].unsqueeze(-1)
        return users, valid

    def shifting(self, items: torch.Tensor) -> torch.Tensor:
        """Meta Shifting Network output on the mean base embedding of the items' users (zero without users)."""
        users, valid = self.shift_users(items)
        vectors = self.backbone.user_embedding(users).detach() * valid.unsqueeze(-1)
        count = valid.sum(-1, keepdim=True)
        shift = self.meta_shifting(vectors.sum(-2) / count.clamp_min(1))
        return shift * (count > 0)

    def warm_embedding(self, items: torch.Tensor, cold: torch.Tensor | None = None) -> torch.Tensor:
        """``scale(content) * e_cold + shift(users)`` (``cold`` defaults to the items' cold embeddings)."""
        cold = self.cold_embedding(items) if cold is None else cold
        return self.scaling(items) * cold + self.shifting(items)

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """Served item vectors: warmed-up for few-shot items, the base embedding for warm items."""
        base = self.backbone.item_embedding(items).detach()
        return torch.where(self.is_cold(items).unsqueeze(-1), self.warm_embedding(items), base)

    # --- RecBole interface ----------------------------------------------------------------------
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        user_e = self.backbone.user_embedding(user).detach()
        users, valid = self.shift_users(pos_item)
        is_support = ((users == user.unsqueeze(-1)) & valid).any(-1)

        pos_cold = self.cold_embedding(pos_item)
        neg_e = self.backbone.item_embedding(neg_item).detach()  # a base-model item: its frozen base vector
        loss = user_e.new_zeros(())
        if is_support.any():  # L_cold: the positive's cold embedding fitted on its support rows
            u, p, n = user_e[is_support], pos_cold[is_support], neg_e[is_support]
            loss = loss + self.loss((u * p).sum(-1), (u * n).sum(-1))
        query = ~is_support
        if query.any():  # L_warm: meta networks fitted on query rows, cold embeddings held fixed
            u = user_e[query]
            p = self.warm_embedding(pos_item[query], pos_cold[query].detach())
            loss = loss + self.loss((u * p).sum(-1), (u * neg_e[query]).sum(-1))
        return loss
