"""User histories and item support sets, built from the training split alone.

Every model of the package that looks at who bought what takes it from here, constructed on the
``dataset`` RecBole hands to the model's ``__init__`` (the training split), so query interactions of
new items can never reach a model through this path.
"""

from __future__ import annotations

import numpy as np
import torch


def support_mask(support: torch.Tensor, support_len: torch.Tensor) -> torch.Tensor:
    """Which entries of support sets [N, S] (user ids, 0-padded) are users, given their lengths [N]."""
    positions = torch.arange(support.shape[1], device=support.device).unsqueeze(0)
    return (positions < support_len.unsqueeze(1)) & (support > 0)


class TrainingInteractions:
    """Chronological per-user histories and per-item buyer lists of a training split (CPU tensors)."""

    MAX_HISTORY_LEN = 50  # a history's length where the model's config sets no max_history_len

    def __init__(self, dataset, max_history_len: int = MAX_HISTORY_LEN):
        inter = dataset.inter_feat
        users = inter[dataset.uid_field].numpy()
        items = inter[dataset.iid_field].numpy()
        if dataset.time_field and dataset.time_field in inter.columns:
            times = inter[dataset.time_field].numpy()
        else:
            times = np.zeros(len(users))
        self.n_users, self.n_items = dataset.user_num, dataset.item_num
        self.max_history_len = max_history_len

        by_user = np.lexsort((np.arange(len(users)), times, users))
        self.history, self.history_len = self._padded_tail(users[by_user], items[by_user], self.n_users, max_history_len)

        by_item = np.lexsort((np.arange(len(items)), times, items))
        counts = np.bincount(items, minlength=self.n_items)
        self.item_count = torch.as_tensor(counts, dtype=torch.long)
        self.item_ptr = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.long)
        self.item_users = torch.as_tensor(users[by_item], dtype=torch.long)
        # seconds since the split's first training interaction, aligned with item_users (all 0 without times)
        start = times.min() if len(times) else 0
        self.item_times = torch.as_tensor((times[by_item] - start).astype(np.float64), dtype=torch.float32)

    @staticmethod
    def _padded_tail(keys: np.ndarray, values: np.ndarray, n_keys: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the last ``width`` values per key (left-aligned, 0-padded), keys sorted ascending."""
        matrix = np.zeros((n_keys, width), dtype=np.int64)
        lengths = np.zeros(n_keys, dtype=np.int64)
        if len(keys):
            starts = np.searchsorted(keys, np.arange(n_keys), side="left")
            ends = np.searchsorted(keys, np.arange(n_keys), side="right")
            for key in np.nonzero(ends > starts)[0]:
                tail = values[max(starts[key], ends[key] - width): ends[key]]
                matrix[key, : len(tail)] = tail
                lengths[key] = len(tail)
        return torch.as_tensor(matrix), torch.as_tensor(lengths)

    def support_matrix(self, max_support: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item's first ``max_support`` buyers ([n_items, max_support], 0-padded) and their number."""
        index, valid, counts = self._first(max_support)
        users = self.item_users[index] if len(self.item_users) else torch.zeros_like(index)
        return torch.where(valid, users, torch.zeros_like(users)), counts

    def support_times(self, max_support: int) -> torch.Tensor:
        """When each of those first buyers bought ([n_items, max_support] seconds, ``item_times``; 0-padded)."""
        index, valid, _ = self._first(max_support)
        times = self.item_times[index] if len(self.item_times) else torch.zeros(index.shape)
        return torch.where(valid, times, torch.zeros_like(times))

    def _first(self, max_support: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        counts = self.item_count.clamp(max=max_support)
        offsets = torch.arange(max_support)
        index = (self.item_ptr[:-1].unsqueeze(1) + offsets).clamp(max=max(len(self.item_users) - 1, 0))
        return index, offsets.unsqueeze(0) < counts.unsqueeze(1), counts
