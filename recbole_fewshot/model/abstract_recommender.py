"""Abstract bases of the peer models, in the style of RecBole's and RecBole-GNN's ``abstract_recommender``.

``ColdStartRecommender`` holds what every cold-start model of the package shares: the training split's
interactions (histories, support sets, which items are warm), the item content encoder with its warning
when the dataset has no item features, the trainer that RecBole runs it with, and full-sort scoring from
a user table and an item table cached for an evaluation. ``WarmBackboneRecommender`` adds the warm BPR
backbone that ``WarmBackboneTrainer`` trains (or loads) and freezes before the model trains. A model's own
file then holds its paper's idea: its layers, ``calculate_loss`` and its user and item representations.
"""

from __future__ import annotations

from logging import getLogger

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.trainer import Trainer
from recbole.utils import InputType

from recbole_fewshot.nn.backbone import BPRBackbone, standardise
from recbole_fewshot.nn.caches import DerivedCaches
from recbole_fewshot.nn.content import ItemContentEncoder
from recbole_fewshot.nn.interactions import TrainingInteractions
from recbole_fewshot.trainer.backbone import WarmBackboneTrainer


class ColdStartRecommender(DerivedCaches, GeneralRecommender):
    r"""Base of a model scoring new items from their content and their few training interactions.

    An item with more than ``max_shots`` training interactions is warm; every other item is cold (every
    new item of a split with K <= ``max_shots``). Built on the training split only: ``train_interactions``,
    ``item_count``, ``warm_items`` and each item's first ``max_shots`` buyers (``support``, ``support_len``).

    Scores are ``user_representation(u) . item_representation(i)`` unless a model overrides ``predict`` and
    ``full_sort_predict``; both read ``score_tables()``, every user's and every item's representation,
    computed on every call in training mode and once per evaluation in eval mode.

    ``trainer_class`` is the trainer RecBole's ``get_trainer`` returns for the model (the registry
    publishes it as ``recbole.trainer.<Model>Trainer``); ``SETTINGS`` names the config keys copied to
    attributes of the same name, besides ``embedding_size`` and ``max_shots``.
    """

    input_type = InputType.PAIRWISE
    trainer_class: type[Trainer] = Trainer
    NO_CONTENT_EFFECT = "every zero-shot item gets the same vector"  # completes the no-content warning
    REQUIRES_WARM_ITEMS = False  # True: a ValueError when no item is warm (the model learns from warm items only)
    READS_BATCH_FEATURES = False  # content comes from the model's own tables: training batches carry ids only
    SETTINGS: tuple[str, ...] = ()
    CACHED = ("_score_tables",)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.max_shots = config["max_shots"] or 0
        for name in self.SETTINGS:
            setattr(self, name, config[name])
        self.train_interactions = TrainingInteractions(
            dataset, config["max_history_len"] or TrainingInteractions.MAX_HISTORY_LEN)
        count = self.train_interactions.item_count
        support, support_len = self.train_interactions.support_matrix(self.max_shots)
        self.register_buffer("item_count", count, persistent=False)
        self.register_buffer("warm_items", torch.nonzero(count > self.max_shots).view(-1), persistent=False)
        self.register_buffer("support", support, persistent=False)
        self.register_buffer("support_len", support_len, persistent=False)
        if self.REQUIRES_WARM_ITEMS and not len(self.warm_items):
            raise ValueError(f"{type(self).__name__}: no item has more than max_shots={self.max_shots} "
                             "training interactions")
        self._warned_without_content = False

    # --- items and content ----------------------------------------------------------------------
    def is_cold(self, items: torch.Tensor) -> torch.Tensor:
        """Items with at most ``max_shots`` training interactions."""
        return self.item_count[items] <= self.max_shots

    def build_content_encoder(self, dataset, config) -> ItemContentEncoder:
        """The shared item content encoder (``embedding_size``, ``item_content_fields``); warns without item features."""
        encoder = ItemContentEncoder(dataset, config["embedding_size"], config["item_content_fields"])
        self.warn_without_content(encoder.has_content)
        return encoder

    def warn_without_content(self, has_content: bool) -> None:
        """Log, once per model, that the dataset has no item features and what that does (``NO_CONTENT_EFFECT``)."""
        if has_content or self._warned_without_content:
            return
        self._warned_without_content = True
        getLogger().warning(f"{type(self).__name__}: the dataset has no item features, so {self.NO_CONTENT_EFFECT}; "
                            "load item features (load_col: item) for cold start")

    # --- scoring --------------------------------------------------------------------------------
    def user_representation(self, users: torch.Tensor) -> torch.Tensor:
        """Vectors of ``users`` (1-d), ``[len(users), d]``."""
        raise NotImplementedError

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """Served vectors of ``items`` (1-d), ``[len(items), d]``."""
        raise NotImplementedError

    def compute_score_tables(self) -> tuple:
        """Every user's and every item's representation."""
        device = self.item_count.device
        return (self.user_representation(torch.arange(self.n_users, device=device)),
                self.item_representation(torch.arange(self.n_items, device=device)))

    def score_tables(self) -> tuple:
        """``compute_score_tables()``: on every call in training mode, once per evaluation in eval mode."""
        return self.cached("_score_tables", self.compute_score_tables)

    def predict(self, interaction) -> torch.Tensor:
        user_table, item_table = self.score_tables()
        return (user_table[interaction[self.USER_ID]] * item_table[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        user_table, item_table = self.score_tables()
        return (user_table[interaction[self.USER_ID]] @ item_table.T).view(-1)


class WarmBackboneRecommender(ColdStartRecommender):
    r"""Base of a model built on a warm BPR backbone (``backbone``, a :class:`~recbole_fewshot.nn.backbone.BPRBackbone`).

    ``WarmBackboneTrainer`` trains the backbone first (or loads it), records ``backbone_best_epoch`` and
    ``backbone_holdout_ndcg`` on the model, and freezes it unless ``fine_tunes_backbone``. The model creates
    ``backbone`` in its ``__init__`` (``build_backbone_and_content`` where it comes first), where its parameters'
    initialisation order puts it.
    """

    trainer_class = WarmBackboneTrainer
    fine_tunes_backbone = False  # True: the model's loss trains the backbone on after its own phase
    backbone: BPRBackbone
    backbone_best_epoch: int | None = None
    backbone_holdout_ndcg: float | None = None
    STANDARDISE_CLIP: tuple[float | None, float | None] = (None, None)  # users', items' clip of standardised_backbone
    CACHED = ("_standardised_backbone",)

    def build_backbone_and_content(self, dataset, config) -> None:
        """Create ``backbone`` and then ``content`` (the order their parameters are initialised in)."""
        self.backbone = BPRBackbone(self.n_users, self.n_items, self.embedding_size)
        self.content = self.build_content_encoder(dataset, config)

    def user_representation(self, users: torch.Tensor) -> torch.Tensor:
        """The backbone's user vectors."""
        return self.backbone.user_embedding(users)

    def standardised_backbone(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone user and item vectors standardised per dimension over the users with a training history
        and the warm items, clipped by ``STANDARDISE_CLIP``; kept while the frozen backbone stays as it is."""
        def compute():
            user_clip, item_clip = self.STANDARDISE_CLIP
            active = (self.train_interactions.history_len > 0).to(self.item_count.device)
            return (standardise(self.backbone.user_embedding.weight, active, user_clip),
                    standardise(self.backbone.item_embedding.weight, self.item_count > self.max_shots, item_clip))

        return self.cached("_standardised_backbone", compute, while_training=True)
