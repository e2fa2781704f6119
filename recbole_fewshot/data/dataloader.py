"""Evaluation over the new items of a phase (``fewshot_candidates: new``)."""

from __future__ import annotations

import torch
from recbole.data.dataloader import FullSortEvalDataLoader

from recbole_fewshot.data.split import read_manifest


class NewItemFullSortEvalDataLoader(FullSortEvalDataLoader):
    """RecBole's full-sort evaluation, ranking only the new items of ``phase`` (valid or test).

    Every other item is added to the batch's history mask, which RecBole's trainer sets to -inf
    before taking the top k; the user's own training history stays masked as usual.
    """

    def __init__(self, config, dataset, sampler, shuffle: bool = False, phase: str = "test"):
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        if self.is_sequential:
            raise ValueError(
                "fewshot_candidates 'new' supports general (non-sequential) models; "
                "set fewshot_candidates: all for a sequential model"
            )
        tokens = read_manifest(config["fewshot_manifest"])[f"{phase}_new_items"]
        candidates = torch.as_tensor(dataset.token2id(dataset.iid_field, tokens), dtype=torch.int64)
        is_excluded = torch.ones(dataset.item_num, dtype=torch.bool)
        is_excluded[candidates] = False
        self.phase = phase
        self.candidate_items = candidates
        self.excluded_items = torch.nonzero(is_excluded).squeeze(1)

    def collate_fn(self, index):
        user_df, (history_u, history_i), positive_u, positive_i = super().collate_fn(index)
        n_users = len(user_df)
        n_excluded = len(self.excluded_items)
        history_u = torch.cat([history_u, torch.arange(n_users).repeat_interleave(n_excluded)])
        history_i = torch.cat([history_i, self.excluded_items.repeat(n_users)])
        return user_df, (history_u, history_i), positive_u, positive_i
