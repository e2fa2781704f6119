r"""GAR: a content generator of item embeddings and a recommender, trained adversarially.

Reference:
    Hao Chen, Zefan Wang, Feiran Huang, Xiao Huang, Yue Xu, Yishi Lin, Peng He, Zhoujun Li.
    "Generative Adversarial Framework for Cold-Start Item Recommendation." SIGIR 2022.

Mechanism, on warm embeddings ``e_u``, ``e_i``:

* the generator ``G`` maps an item's content to a "fake" warm embedding ``G(c_i)``;
* the recommender ``R`` scores ``R(u, x) = T_U(e_u) . T_I(x)`` (``T`` two MLP towers, or the identity with
  ``recommender: embeddings``), so a real ``e_i`` and a generated ``G(c_i)`` are scored alike;
* the recommender minimises ``-log sigma(R(u, e_i) - (1 - negative_weight) R(u, G(c_i))
  - negative_weight R(u, e_j))``: it ranks the real positive above both the generated embedding of
  that same item and a sampled negative ``j``;
* the generator minimises ``(1 - similarity_weight) * -log sigma(R(u, G(c_i)) - R(u, e_i))
  + similarity_weight * ||G(c_i) - e_i||_1``: it tries to have its embedding ranked above the real
  one, the opposite of the recommender's goal, while staying close to it.

Alternation in one backward pass: the authors alternate a recommender step (generator in inference
mode) and a generator step (recommender in inference mode) on every batch, each with its own Adam
at the same learning rate. Here ``calculate_loss`` returns the sum of both objectives with
stop-gradients: the recommender's term sees a detached generator output computed in inference mode,
the generator's term runs the towers in inference mode with detached parameters. So one backward
gives the recommender exactly the gradient of its objective and the generator exactly that of its
own, and Adam (per-parameter) makes the two one-optimizer updates equal to the two optimizers';
the only difference is that both steps read the parameters of before the batch (simultaneous
instead of sequential updates).

Scoring passes every item through ``T_I``: a warm item (more than ``max_shots`` training
interactions) from its warm embedding, a cold item from ``G(c_i)``, i.e. from content alone. GAR has no
dedicated use of a new item's K support interactions: they train the warm embeddings and are
training positives of both players.

Departures from the paper and the authors' code:

* the warm embeddings come from BPR matrix factorisation (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`,
  pretrained or loaded by ``WarmBackboneTrainer``), not a GNN;
* ``recommender: embeddings`` (the default) scores ``R(u, x) = e_u . x`` and fine-tunes the warm
  embeddings with the recommender's loss, as the reference implementation (ColdRec's ``GAR``) does;
  ``recommender: towers`` is the authors' CF variant, two towers over frozen embeddings. Chosen on
  valid (ml-100k, K = 0, seed 2020, NDCG@20): towers 0.278, embeddings 0.323;
* content is every RecBole item feature, encoded by the shared
  :class:`~recbole_fewshot.nn.content.ItemContentEncoder` before the generator's MLP;
* simultaneous instead of sequential recommender and generator updates (see above);
* learning rate 1e-4 instead of the authors' 1e-3, chosen on ml-100k's few-shot validation ranking:
  at 1e-3 the adversarial game made the validation NDCG swing between 0.04 and 0.23 from epoch to
  epoch, at 1e-4 it stays within 0.25-0.33;
* the similarity term is the L1 norm of ``G(c_i) - e_i`` per item (the authors' ``gar_mlp.py``; their
  later ``GAR.py`` averages over dimensions too, i.e. divides it by the width), which kept the
  generator closer to the warm embeddings and the training stable in the same validation runs;
* PyTorch's batch normalisation (momentum 0.1, and no learnt scale or shift on the towers' input,
  whose shift TensorFlow's version learns and the next Linear's bias absorbs) instead of
  TensorFlow's (decay 0.99), so running statistics settle within an epoch of a small dataset;
* the L2 penalty (authors: 1e-3 on kernels) is Adam's ``weight_decay`` over every trainable
  parameter, content embeddings included;
* negatives are RecBole's uniform samples; pairs whose negative has no training interaction are left
  out, as the authors sample negatives among warm items only;
* training runs through RecBole's trainer with early stopping on the few-shot validation ranking.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization
from torch import nn
from torch.func import functional_call

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import BPRBackbone

RECOMMENDERS = ("embeddings", "towers")

@contextmanager
def inference_mode_of(*modules: nn.Module) -> Iterator[None]:
    """Run ``modules`` in eval mode (batch-norm running statistics, no dropout), then restore."""
    modes = [module.training for module in modules]
    for module in modules:
        module.train(False)
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


def frozen_call(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``module(inputs)`` with its parameters detached: gradients reach ``inputs`` only."""
    params = {name: param.detach() for name, param in module.named_parameters()}
    return functional_call(module, params, (inputs,))


def _tower(in_size: int, hidden_size: int, dropout: float) -> nn.Sequential:
    """A recommender tower as the authors': BN, Linear, BN, tanh, dropout, Linear."""
    return nn.Sequential(nn.BatchNorm1d(in_size, affine=False), nn.Linear(in_size, hidden_size), nn.BatchNorm1d(hidden_size),
                         nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden_size, hidden_size))


class GAR(WarmBackboneRecommender):
    r"""Generator of item embeddings from content and a two-tower recommender, trained adversarially."""

    SETTINGS = ("similarity_weight", "negative_weight")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d, hidden = self.embedding_size, config["hidden_size"]

        self.content = self.build_content_encoder(dataset, config)
        self.generator_mlp = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.Tanh(),
                                           nn.Dropout(config["generator_dropout"]), nn.Linear(hidden, d))
        if config["recommender"] not in RECOMMENDERS:
            raise ValueError(f"GAR: recommender must be one of {list(RECOMMENDERS)}, got {config['recommender']!r} "
                             "(defaults: recbole_fewshot/properties/model/GAR.yaml)")
        self.fine_tunes_backbone = config["recommender"] == "embeddings"  # read by the trainer
        if self.fine_tunes_backbone:  # R(u, x) = e_u . x on the backbone's embeddings, which it trains
            self.user_tower, self.item_tower = nn.Identity(), nn.Identity()
        else:
            self.user_tower = _tower(d, hidden, config["recommender_dropout"])
            self.item_tower = _tower(d, hidden, config["recommender_dropout"])
        self.apply(xavier_normal_initialization)
        self.backbone = BPRBackbone(self.n_users, self.n_items, d)

    # --- players --------------------------------------------------------------------------------
    def generate(self, items: torch.Tensor) -> torch.Tensor:
        """``G(c_i)``: generated embeddings of ``items`` (1-d) from their content."""
        return self.generator_mlp(self.content(items))

    def recommender_loss(self, user_e: torch.Tensor, pos_e: torch.Tensor, neg_e: torch.Tensor,
                         fake_e: torch.Tensor) -> torch.Tensor:
        """The recommender's objective: real positives above generated ones and negatives."""
        batch = len(user_e)
        users = self.user_tower(user_e.repeat(3, 1))  # one batch through the towers, as the authors' BN needs
        real, neg, fake = (users * self.item_tower(torch.cat([pos_e, neg_e, fake_e]))).sum(-1).split(batch)
        beta = self.negative_weight
        return F.softplus(-(real - (1 - beta) * fake - beta * neg)).mean()

    def adversarial_loss(self, user_e: torch.Tensor, pos_e: torch.Tensor, fake_e: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial term, ``-log sigma(R(u, G(c_i)) - R(u, e_i))``, through a frozen
        recommender in inference mode (gradients reach ``fake_e`` only)."""
        with inference_mode_of(self.user_tower, self.item_tower):
            users = frozen_call(self.user_tower, user_e)
            fake = (users * frozen_call(self.item_tower, fake_e)).sum(-1)
            real = (users * frozen_call(self.item_tower, pos_e)).sum(-1)
        return F.softplus(-(fake - real)).mean()

    def adversarial_losses(self, user: torch.Tensor, pos_item: torch.Tensor,
                           neg_item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The recommender's and the generator's objectives on a batch, each reaching only its player."""
        embeddings = (self.backbone.user_embedding(user), self.backbone.item_embedding(pos_item),
                      self.backbone.item_embedding(neg_item))  # trained by the recommender where it fine-tunes them
        user_e, pos_e, neg_e = (e.detach() for e in embeddings)
        with torch.no_grad(), inference_mode_of(self.generator_mlp):
            fake_for_recommender = self.generate(pos_item)
        recommender = self.recommender_loss(*embeddings, fake_for_recommender)
        fake = self.generate(pos_item)
        alpha = self.similarity_weight
        generator = (1 - alpha) * self.adversarial_loss(user_e, pos_e, fake) + alpha * (fake - pos_e).abs().sum(-1).mean()
        return recommender, generator

    def calculate_loss(self, interaction):
        user, pos_item, neg_item = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        keep = self.item_count[neg_item] > 0  # the authors sample negatives among warm items
        if not keep.any():
            return self.generator_mlp[0].weight.sum() * 0.0
        recommender, generator = self.adversarial_losses(user[keep], pos_item[keep], neg_item[keep])
        return recommender + generator

    # --- scoring ------------------------------------------------------------------------------
    def user_representation(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_tower(self.backbone.user_embedding(users))

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """The item tower on the warm embedding of warm items and on ``G(c_i)`` of cold ones."""
        cold = self.is_cold(items).unsqueeze(-1)
        return self.item_tower(torch.where(cold, self.generate(items), self.backbone.item_embedding(items)))
