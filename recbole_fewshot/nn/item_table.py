"""Every item's served vector, computed once per evaluation, for models whose items cost a forward pass."""

from __future__ import annotations

import torch

from recbole_fewshot.nn.caches import DerivedCaches


class CachedItemTable(DerivedCaches):
    """Mixin (listed before ``GeneralRecommender``) caching ``item_representation`` over all items.

    In training mode the table is recomputed on every call (parameters change); in eval mode it is
    computed once, without gradients, and kept until the next ``train()``/``eval()`` call, which
    RecBole's trainer makes at the start of every epoch and every evaluation, or ``load_state_dict``.
    """

    CACHED = ("_item_table",)
    _item_table: torch.Tensor | None = None

    def all_item_table(self) -> torch.Tensor:
        """Every item's vector, shape ``[n_items, d]``."""
        if self.training:
            return self.item_representation(self.all_items())
        if self._item_table is None:
            with torch.no_grad():
                self._item_table = self.item_representation(self.all_items())
        return self._item_table

    def all_items(self) -> torch.Tensor:
        return torch.arange(self.n_items, device=next(self.parameters()).device)
