r"""ALDI: a content student distilled from a frozen warm teacher.

Reference:
    Feiran Huang, Zefan Wang, Xiao Huang, Yufeng Qian, Zhetao Li, Hao Chen. "Aligning Distillation
    For Cold-start Item Recommendation." SIGIR 2023.

Mechanism: a warm recommender (the teacher: user vectors ``e_u``, item vectors ``e_i``, score
``y^T_ui = e_u . e_i``) is trained first and frozen. The student has an item encoder ``f_I`` from
content and a user map ``f_U`` of the teacher's user vectors; it scores ``y^S_ui = f_U(e_u) . f_I(c_i)``.
On triples ``(u, i, j)`` the student minimises

* the supervised BPR loss ``-log sigma(y^S_ui - y^S_uj)``;
* rating distribution aligning (``rating_weight``): ``|y^T_ui - y^S_ui| + |y^T_uj - y^S_uj|``;
* ranking aligning (``ranking_weight``): cross-entropy of ``sigma(y^S_ui - y^S_uj)`` against the
  teacher's ``sigma(y^T_ui - y^T_uj)``;
* identification aligning (``identification_weight``): cross-entropy of
  ``sigma(s^S_ii - mean_j s^S_ij)`` against ``sigma(s^T_ii - mean_j s^T_ij)``, with ``s`` the item-item
  inner products of the student's (resp. teacher's) item vectors and ``j`` the batch's negatives.

Teacher-qualifying weighting (``teacher_weighting``): the two cross-entropies of a positive item are
weighted by ``w_i = min(tanh(a x_i), tanh(M))``, ``x_i = sum over i's users u of 1 / |N(u)|``,
``a = M / mean_i x_i`` (``frequency_cap`` = M): a teacher trained on few interactions teaches little.

Scoring: a warm item (more than ``max_shots`` training interactions) keeps the teacher's score
``e_u . e_i``; a cold item is scored by the student ``f_U(e_u) . f_I(c_i)``, from content alone. ALDI has
no dedicated use of a new item's K support interactions: they train the teacher and are training
positives of the student (supervised loss, and distillation weighted down by their low ``w_i``).

Departures from the paper and the authors' code:

* the teacher is BPR matrix factorisation (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`,
  pretrained or loaded by ``WarmBackboneTrainer``), one of the paper's three backbones;
* content is every RecBole item feature, encoded by the shared
  :class:`~recbole_fewshot.nn.content.ItemContentEncoder` before the student's MLP, instead of a fixed
  precomputed content vector; ``f_I`` and ``f_U`` are ``Linear-BatchNorm-tanh-Linear`` as in the
  authors' code, with Xavier instead of truncated-normal initialisation and PyTorch's batch-norm
  momentum (0.1) instead of TensorFlow's decay (0.99), so running statistics settle within an epoch;
* teacher-qualifying weighting is on by default as in the paper (the authors' script defaults it off);
* negatives are RecBole's uniform samples; pairs whose negative has no training interaction are left
  out, as the authors sample negatives among warm items only;
* the L2 penalty on the student (authors: 1e-4) is Adam's ``weight_decay`` over every trainable
  parameter, content embeddings included;
* training runs through RecBole's trainer with early stopping on the few-shot validation ranking.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.backbone import BPRBackbone
from recbole_fewshot.nn.interactions import TrainingInteractions


def teacher_weights(train: TrainingInteractions, cap: float) -> torch.Tensor:
    """ALDI's teacher-qualifying weight of every item: ``min(tanh(a x_i), tanh(cap))``, ``a = cap / mean x``."""
    user_degree = torch.bincount(train.item_users, minlength=train.n_users).clamp_min(1).float()
    owner = torch.repeat_interleave(torch.arange(train.n_items), train.item_count)
    frequency = torch.zeros(train.n_items).index_add_(0, owner, 1.0 / user_degree[train.item_users])
    mean = frequency[1:].mean().clamp_min(1e-12)  # id 0 is RecBole's padding item
    return torch.tanh(cap / mean * frequency).clamp(max=math.tanh(cap))


def _student_mlp(in_size: int, hidden_size: int, out_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_size, hidden_size), nn.BatchNorm1d(hidden_size), nn.Tanh(),
                         nn.Linear(hidden_size, out_size))


class ALDI(WarmBackboneRecommender):
    r"""Content student distilled from a frozen BPR teacher with ALDI's three aligning losses."""

    SETTINGS = ("rating_weight", "ranking_weight", "identification_weight")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d, hidden = self.embedding_size, config["hidden_size"]

        weights = teacher_weights(self.train_interactions, config["frequency_cap"]) if config["teacher_weighting"] \
            else torch.ones(self.n_items)
        self.register_buffer("teacher_weight", weights, persistent=False)

        self.content = self.build_content_encoder(dataset, config)
        self.item_student = _student_mlp(d, hidden, d)
        self.user_student = _student_mlp(d, hidden, d)
        self.apply(xavier_normal_initialization)
        self.backbone = BPRBackbone(self.n_users, self.n_items, d)

    # --- student --------------------------------------------------------------------------------
    def student_items(self, items: torch.Tensor) -> torch.Tensor:
        """``f_I(content)`` of ``items`` (1-d), the student's item vectors."""
        return self.item_student(self.content(items))

    def student_users(self, users: torch.Tensor) -> torch.Tensor:
        """``f_U(e_u)`` of ``users`` (1-d), the student's user vectors."""
        return self.user_student(self.backbone.user_embedding(users))

    # --- training -------------------------------------------------------------------------------
    def loss_terms(self, user: torch.Tensor, pos_item: torch.Tensor, neg_item: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms: ``supervised``, ``rating``, ``ranking`` and ``identification``."""
        with torch.no_grad():
            teacher_user = self.backbone.user_embedding(user)
            teacher_pos = self.backbone.item_embedding(pos_item)
            teacher_neg = self.backbone.item_embedding(neg_item)
            teacher_pos_score = (teacher_user * teacher_pos).sum(-1)
            teacher_neg_score = (teacher_user * teacher_neg).sum(-1)
            teacher_iden = (teacher_pos * teacher_pos).sum(-1) - (teacher_pos @ teacher_neg.T).mean(-1)
            weight = self.teacher_weight[pos_item]

        student_user = self.user_student(teacher_user)
        student_pos, student_neg = self.student_items(torch.cat([pos_item, neg_item])).chunk(2)
        pos_score = (student_user * student_pos).sum(-1)
        neg_score = (student_user * student_neg).sum(-1)
        student_iden = (student_pos * student_pos).sum(-1) - (student_pos @ student_neg.T).mean(-1)

        def soft_cross_entropy(logit, teacher_logit):
            target = torch.sigmoid(teacher_logit)
            return (weight * F.binary_cross_entropy_with_logits(logit, target, reduction="none")).mean()

        return {
            "supervised": F.softplus(neg_score - pos_score).mean(),
            "rating": ((teacher_pos_score - pos_score).abs() + (teacher_neg_score - neg_score).abs()).mean(),
            "ranking": soft_cross_entropy(pos_score - neg_score, teacher_pos_score - teacher_neg_score),
            "identification": soft_cross_entropy(student_iden, teacher_iden),
        }

    def calculate_loss(self, interaction):
        user, pos_item, neg_item = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        keep = self.item_count[neg_item] > 0  # the authors sample negatives among warm items
        if not keep.any():
            return self.item_student[0].weight.sum() * 0.0
        terms = self.loss_terms(user[keep], pos_item[keep], neg_item[keep])
        return (terms["supervised"] + self.rating_weight * terms["rating"] + self.ranking_weight * terms["ranking"]
                + self.identification_weight * terms["identification"])

    # --- scoring ------------------------------------------------------------------------------
    def user_representation(self, users: torch.Tensor) -> torch.Tensor:
        """``[e_u, f_U(e_u)]``: one inner product gives the teacher's score of warm items and the student's of
        cold ones (``item_representation``)."""
        return torch.cat([self.backbone.user_embedding(users), self.student_users(users)], dim=-1)

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """``[e_i, 0]`` for warm items, ``[0, f_I(c_i)]`` for cold ones."""
        cold = self.is_cold(items).unsqueeze(-1)
        return torch.cat([self.backbone.item_embedding(items) * ~cold, self.student_items(items) * cold], dim=-1)
