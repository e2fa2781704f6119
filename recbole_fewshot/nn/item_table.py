"""Every item's served vector, computed once per evaluation, for models whose items cost a forward pass."""

from __future__ import annotations

import torch


class CachedItemTable:
    """Mixin (listed before ``GeneralRecommender``) caching ``item_representation`` over all items.

    In training mode the table is recomputed on every call (parameters change); in eval mode it is
    computed once, without gradients, and kept until the next ``train()``/``eval()`` call, which
    RecBole's trainer makes at the start of every epoch and every evaluation.
    """

    _item_table: torch.Tensor | None = None

    def train(self, mode: bool = True):
        self._item_table = None
        return super().train(mode)

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
