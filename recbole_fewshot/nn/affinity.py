"""Token affinity: how much of a user's past purchases shares an item's rarer tokens (tf-idf profiles).

An item is the tf-idf vector of the tokens of its categorical fields (title words, categories) that at
least ``MIN_ITEMS`` items carry, scaled to unit length; a user's profile is the sum of their training
items' vectors, and the affinity of a user and an item is the cosine of the two. Tokens shared by a few
products (a design or a product line) link a new product to the buyers of its namesakes, which a map
into a 64-dimensional space smooths away. The profiles read the training split's interactions alone; both
tables are dense (items x W and users x W floats, W the number of tokens kept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from logging import getLogger

import torch
import torch.nn.functional as F
from recbole.utils import FeatureType
from torch import nn

from recbole_fewshot.nn.content import ItemContentEncoder

MIN_ITEMS = 2  # a token on one item only would be that item's fingerprint, not a link between items


class TokenProfiles(nn.Module):
    """Items' tf-idf token vectors (``item_vectors`` [n_items, W]) and users' profile sums (``user_sums``)."""

    def __init__(self, dataset, content: ItemContentEncoder):
        super().__init__()
        fields = [f for f in content.fields if content.field_types[f] in (FeatureType.TOKEN, FeatureType.TOKEN_SEQ)
                  and f not in content.ordinal_tokens]
        with torch.random.fork_rng(devices=[]):  # building it draws nothing from the global generator
            self.codes = ItemContentEncoder(dataset, 1, fields, min_items=MIN_ITEMS, log_fields=False) if fields else None
        if self.codes is not None:
            self.codes.requires_grad_(False)  # only its fixed token codes are read
        n_items = dataset.item_num
        presence = self._presence(self.codes.item_features(torch.arange(n_items))) if self.codes else torch.zeros(n_items, 0)
        items_with = (presence[1:] > 0).sum(0).float()  # row 0 is RecBole's padding item
        self.register_buffer("idf", torch.log((n_items - 1) / (1.0 + items_with)).clamp_min(0.0), persistent=False)
        self.register_buffer("item_vectors", self._weighted(presence), persistent=False)
        inter = dataset.inter_feat
        pairs = torch.unique(inter[dataset.uid_field].long() * n_items + inter[dataset.iid_field].long())
        owned = torch.sparse_coo_tensor(torch.stack([pairs // n_items, pairs % n_items]), torch.ones(len(pairs)),
                                        (dataset.user_num, n_items), check_invariants=True)
        self.register_buffer("user_sums", torch.sparse.mm(owned, self.item_vectors), persistent=False)
        getLogger().info(f"token affinity reads item fields: {', '.join(fields) or 'none'} "
                         f"({self.width} tokens on >= {MIN_ITEMS} items)")

    @property
    def width(self) -> int:
        return self.item_vectors.shape[1]

    def _presence(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Which kept tokens each item carries [N, W], over every token field (a field code's column 0 is padding)."""
        return torch.cat([(code[:, 1:] > 0).float() for code in self.codes.field_codes(features).values()], dim=-1)

    def _weighted(self, presence: torch.Tensor) -> torch.Tensor:
        return F.normalize(presence * self.idf, dim=-1)

    def vectors_from_raw(self, field2token_id: Mapping[str, Mapping[str, int]],
                         features: Sequence[Mapping[str, object]]) -> torch.Tensor:
        """Token vectors [N, W] of items given by raw features (as the content encoder reads them)."""
        if self.codes is None:
            return self.item_vectors.new_zeros(len(features), 0)
        return self._weighted(self._presence(self.codes.features_from_raw(field2token_id, features)).to(self.idf.device))

    def profiles(self, users: torch.Tensor, left_out: torch.Tensor | None = None) -> torch.Tensor:
        """Unit profiles [N, W] of ``users``, each without the vector of its ``left_out`` item where given."""
        sums = self.user_sums[users]
        if left_out is not None:
            sums = sums - self.item_vectors[left_out]
        return F.normalize(sums, dim=-1)

    def affinity(self, users: torch.Tensor, items: torch.Tensor, left_out: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine [N] of each user's profile (less ``left_out``) and the paired item's vector."""
        return (self.profiles(users, left_out) * self.item_vectors[items]).sum(-1)


def fit_logistic_weight(margin: torch.Tensor, gain: torch.Tensor, steps: int = 25) -> float:
    """``argmax_a sum log sigmoid(margin + a gain)`` over paired scores [N]: a concave 1-D problem, solved by
    Newton's steps from 0."""
    margin, gain, weight = margin.double(), gain.double(), 0.0
    for _ in range(steps):
        p = torch.sigmoid(-(margin + weight * gain))
        weight += float((p * gain).sum() / (p * (1 - p) * gain ** 2).sum().clamp_min(1e-12))
    return weight
