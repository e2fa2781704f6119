r"""CVAR: a conditional VAE that generates warm-like item id embeddings from content.

Reference:
    Xu Zhao, Yi Ren, Ying Du, Shenzheng Zhang, Nian Wang. "Improving Item Cold-start Recommendation
    via Model-agnostic Conditional Variational Autoencoder." SIGIR 2022.

Mechanism, on a frozen warm backbone (user vectors ``e_u``, item id embeddings ``e_i``):

* an encoder ``q(z | e_i)`` maps a warm item's id embedding to a Gaussian latent; a prior encoder
  ``p(z | content_i)`` maps its content to another Gaussian; a decoder ``D(z, f_i)`` conditioned on
  the item's frequency ``f_i = log(1 + training interactions)`` generates an id embedding;
* training samples ``z ~ q`` (reparameterised) and reconstructs ``e_i`` (squared error,
  ``recon_weight``), pulls ``q`` and ``p`` together by their 2-Wasserstein distance
  (``reg_weight``), and scores the embedding generated from a prior sample ``z ~ p`` with the frozen
  backbone users under the recommendation (BPR) loss, so generated embeddings work in the backbone;
* inference generates ``D(mean of p(z | content_i), f_i)``: deterministic and content-only.

Warm-up stage: the paper initialises a new item's id embedding with the generated one and then
trains it with the backbone's loss on the item's first interactions. Here, when items are scored, a
cold item with K support interactions (its training buyers, at most ``max_shots``) starts at its
generated embedding and takes ``warmup_steps`` gradient steps (step size ``warmup_learning_rate``)
of the BPR loss of those K pairs; the frequency condition ``f_i`` also reads K. At K = 0 the
generated embedding is used as is. An item with more than ``max_shots`` interactions is warm and
keeps its backbone embedding.

Departures from the paper and the authors' code:

* the backbone is BPR matrix factorisation (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`,
  pretrained or loaded by ``WarmBackboneTrainer``) trained with the BPR loss, not a CTR model with log loss;
* content is every RecBole item feature, encoded by the shared
  :class:`~recbole_fewshot.nn.content.ItemContentEncoder`; the authors' prior also reads a separately
  trained item id embedding, which is left out so a zero-shot item's prior sees what a warm item's does;
* the warm-up is a fixed number of plain gradient steps on the support pairs, with the mean warm
  item as every pair's negative, taken whenever items are scored; the authors instead train the new
  items' backbone embeddings with Adam for an epoch of their interactions, retrain the CVAE on them
  and overwrite the embeddings with regenerated ones, round after round;
* reconstruction and the Wasserstein term use only warm positive items (more than ``max_shots``
  interactions), whose backbone embeddings are reliable; the authors' code also fits new items in
  their warm-up rounds;
* the authors' code scales the reparameterisation noise by 1e-4; here samples have the full
  standard deviation (the standard reparameterisation);
* pairs whose negative has no training interaction are left out of the recommendation loss, so the
  generator is not taught that "new-looking" content is unwanted.
"""

from __future__ import annotations

import torch
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import BPRLoss
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import BPRBackbone


def wasserstein(mean_q: torch.Tensor, logvar_q: torch.Tensor,
                mean_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """Squared 2-Wasserstein distance between diagonal Gaussians, per row."""
    std_q, std_p = torch.exp(0.5 * logvar_q), torch.exp(0.5 * logvar_p)
    return ((mean_q - mean_p) ** 2).sum(-1) + ((std_q - std_p) ** 2).sum(-1)


class CVAR(WarmBackboneRecommender):
    r"""Conditional VAE generating item id embeddings of a frozen BPR backbone from content."""

    SETTINGS = ("recon_weight", "reg_weight", "warmup_steps", "warmup_learning_rate")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d, latent = self.embedding_size, config["latent_size"]

        self.register_buffer("frequency", torch.log1p(self.item_count.float()).unsqueeze(-1), persistent=False)
        self.content = self.build_content_encoder(dataset, config)
        self.posterior_mean = nn.Linear(d, latent)
        self.posterior_logvar = nn.Linear(d, latent)
        self.prior_mean = nn.Linear(d, latent)
        self.prior_logvar = nn.Linear(d, latent)
        self.decoder = nn.Linear(latent + 1, d)
        self.loss = BPRLoss()
        self.apply(xavier_normal_initialization)
        self.backbone = BPRBackbone(self.n_users, self.n_items, d)

    # --- the conditional VAE --------------------------------------------------------------------
    def posterior(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z | backbone id embedding)``."""
        e = self.backbone.item_embedding(items)
        return self.posterior_mean(e), self.posterior_logvar(e)

    def prior(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``p(z | content)``."""
        c = self.content(items)
        return self.prior_mean(c), self.prior_logvar(c)

    def decode(self, z: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The id embedding generated from ``z``, conditioned on the items' frequency."""
        return self.decoder(torch.cat([z, self.frequency[items]], dim=-1))

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def generate(self, items: torch.Tensor) -> torch.Tensor:
        """Generated id embeddings: from a prior sample in training, from the prior mean in evaluation."""
        mean, logvar = self.prior(items)
        return self.decode(self.sample(mean, logvar) if self.training else mean, items)

    def reconstruct(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone embeddings decoded from a posterior sample, and the Wasserstein distance of
        posterior to prior, per item (training objective terms)."""
        mean_q, logvar_q = self.posterior(items)
        mean_p, logvar_p = self.prior(items)
        return self.decode(self.sample(mean_q, logvar_q), items), wasserstein(mean_q, logvar_q, mean_p, logvar_p)

    # --- items ----------------------------------------------------------------------------------
    def warm_up(self, items: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """The warm-up stage: ``warmup_steps`` gradient steps of the BPR loss of each item's support
        interactions (its first ``max_shots`` training buyers), starting at ``embedding``; the negative
        of every pair is the mean warm item. Items without support keep ``embedding``."""
        users = self.support[items]
        valid = torch.arange(users.shape[1], device=users.device) < self.support_len[items].unsqueeze(1)
        user_e = self.backbone.user_embedding(users) * valid.unsqueeze(-1)
        warm = self.item_count > self.max_shots
        negative = self.backbone.item_embedding.weight[warm].mean(0) if warm.any() else torch.zeros_like(embedding[0])
        pairs = valid.sum(1, keepdim=True).clamp_min(1)
        for _ in range(self.warmup_steps):
            margin = (user_e * (embedding - negative).unsqueeze(1)).sum(-1)
            step = ((1 - torch.sigmoid(margin)) * valid).unsqueeze(-1) * user_e  # minus the BPR gradient
            embedding = embedding + self.warmup_learning_rate * step.sum(1) / pairs
        return embedding

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """Backbone embeddings of warm items; generated embeddings, warmed up on their support
        interactions, of cold items."""
        cold = self.warm_up(items, self.generate(items))
        return torch.where(self.is_cold(items).unsqueeze(-1), cold, self.backbone.item_embedding(items))

    # --- RecBole interface ----------------------------------------------------------------------
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        user_e = self.backbone.user_embedding(user)
        unique, inverse = torch.unique(torch.cat([pos_item, neg_item]), return_inverse=True)
        pos_e, neg_e = self.generate(unique)[inverse].chunk(2)  # every item by its generated embedding
        keep = self.item_count[neg_item] > 0
        loss = self.loss((user_e * pos_e).sum(-1)[keep], (user_e * neg_e).sum(-1)[keep]) if keep.any() \
            else pos_e.sum() * 0.0

        warm = pos_item[~self.is_cold(pos_item)]
        if len(warm):
            reconstruction, distance = self.reconstruct(warm)
            target = self.backbone.item_embedding(warm).detach()
            loss = loss + self.recon_weight * ((reconstruction - target) ** 2).sum(-1).mean()
            loss = loss + self.reg_weight * distance.mean()
        return loss
