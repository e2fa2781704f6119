r"""ContentProfile: a floor: training-free content-based filtering.

Classic content-based filtering (a user profile in the items' feature space, matched to items by cosine;
e.g. Pazzani and Billsus, "Content-based recommendation systems", The Adaptive Web, 2007). An item's
content is its training-free content vector: with ``content_vectors: codes`` the pipeline's
(``ItemContentEncoder.content_vectors``: each field's fixed code scaled to unit length, concatenated), with
``tokens`` the tf-idf vector of its tokens on two or more items (``nn/affinity.py``). A user's profile is
the mean content vector of the distinct items in their training history, and
``score(u, i) = cos(profile_u, content_i)``. Nothing is learned,
interactions of any item, new items' support interactions included, enter only through the profiles, and
a user without history or an item without content scores 0 (every item, when the dataset has no item
features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from recbole.trainer import TraditionalTrainer
from recbole.utils import InputType, ModelType
from torch import nn

from recbole_fewshot.model.abstract_recommender import ColdStartRecommender
from recbole_fewshot.nn.affinity import TokenProfiles
from recbole_fewshot.nn.content import ItemContentEncoder
from recbole_fewshot.nn.floors import item_content_vectors, training_pairs

CONTENT_VECTORS = ("codes", "tokens")


class ContentProfile(ColdStartRecommender):
    r"""Cosine between a user's mean content vector over their training history and an item's content vector."""

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL
    trainer_class = TraditionalTrainer
    NO_CONTENT_EFFECT = "every item scores 0"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if config["content_vectors"] not in CONTENT_VECTORS:
            raise ValueError(f"ContentProfile: content_vectors must be one of {', '.join(CONTENT_VECTORS)}, "
                             f"got {config['content_vectors']!r}")
        if config["content_vectors"] == "tokens":
            tokens = TokenProfiles(dataset, ItemContentEncoder(dataset, 1, config["item_content_fields"]))
            content = tokens.item_vectors.double()
        else:
            content = item_content_vectors(dataset, config["item_content_fields"]).double()
        self.warn_without_content(content.shape[1] > 0)
        users, items = training_pairs(self.train_interactions)
        history = torch.sparse_coo_tensor(torch.stack([users, items]), content.new_ones(len(users)),
                                          (self.n_users, self.n_items))
        sums = torch.sparse.mm(history, content)
        counts = torch.bincount(users, minlength=self.n_users).clamp_min(1).unsqueeze(1)
        self.register_buffer("user_profiles", F.normalize(sums / counts, dim=1).float(), persistent=False)
        self.register_buffer("item_content", F.normalize(content, dim=1).float(), persistent=False)
        self.fake_loss = nn.Parameter(torch.zeros(1))  # nothing to learn: RecBole's trainer needs a parameter

    def calculate_loss(self, interaction) -> torch.Tensor:
        return self.fake_loss.sum() * 0.0

    def compute_score_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's normalised profile and every item's normalised content vector."""
        return self.user_profiles, self.item_content
