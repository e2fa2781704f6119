"""The plugin's data loaders: evaluation over the new items of a phase (``fewshot_candidates: new``), and
training batches of ids alone for models that read item content from their own tables."""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, TrainDataLoader
from recbole.data.interaction import Interaction

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


class IdOnlyTrainDataLoader(TrainDataLoader):
    """RecBole's training loader without the join of the user and item feature tables into every batch and
    its negatives: for models that read content from tables of their own (``READS_BATCH_FEATURES = False``),
    where the join only copies columns nobody reads. Batches, order and negatives are RecBole's."""

    def collate_fn(self, index):
        data = self._dataset.__getitem__(np.array(index), join=False)
        return self._neg_sampling(self.transform(self._dataset, data))

    def _neg_sample_by_pair_wise_sampling(self, inter_feat, neg_item_ids):
        inter_feat = inter_feat.repeat(self.times)
        inter_feat.update(Interaction({self.neg_prefix + self.iid_field: neg_item_ids}))
        return inter_feat

    def _neg_sample_by_point_wise_sampling(self, inter_feat, neg_item_ids):
        positives = len(inter_feat)
        data = inter_feat.repeat(self.times)
        data[self.iid_field][positives:] = neg_item_ids
        labels = torch.zeros(positives * self.times)
        labels[:positives] = 1.0
        data.update(Interaction({self.label_field: labels}))
        return data
