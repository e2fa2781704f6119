"""Every item's served vector, computed once per evaluation, for models whose items cost a forward pass."""

from __future__ import annotations

import torch

from recbole_fewshot.nn.caches import DerivedCaches


class CachedItemTable(DerivedCaches):
    """Mixin (listed before ``GeneralRecommender``) caching ``item_representation`` over all items
    (``DerivedCaches.cached``): recomputed on every call in training mode, once per evaluation in eval mode.
    The peer models get this from :class:`~recbole_fewshot.model.abstract_recommender.ColdStartRecommender`.
    """

    CACHED = ("_item_table",)
    _item_table: torch.Tensor | None = None

    def all_item_table(self) -> torch.Tensor:
        """Every item's vector, shape ``[n_items, d]``."""
        return self.cached("_item_table", lambda: self.item_representation(self.all_items()))

    def all_items(self) -> torch.Tensor:
        return torch.arange(self.n_items, device=next(self.parameters()).device)
