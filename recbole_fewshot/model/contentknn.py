r"""ContentKNN: a floor: a cold item takes the mean backbone vector of its nearest warm items in content.

The item-kNN content baseline of cold-start recommendation: a warm BPR backbone
(:class:`~recbole_fewshot.nn.backbone.BPRBackbone`, trained or loaded by ``BackboneFloorTrainer``) gives user
vectors ``x_u`` and item vectors ``y_j``. A cold item ``i`` (at most ``max_shots`` training interactions)
gets the mean ``c_i`` of the backbone vectors of the ``knn_k`` warm items (more than ``max_shots``
training interactions) nearest to it by the cosine of their training-free content vectors
(``ItemContentEncoder.content_vectors``; ties, equal to 1e-9, go to the lower item id). A warm item keeps
``y_i``; an item is scored ``x_u . v_i``. Nothing is learned besides the backbone.

Support buyers (K > 0): let ``b_i`` be the mean backbone vector of the warm items in the training
histories of the cold item's ``n_i`` support buyers, each weighted by how many of those buyers bought
it (the co-purchase mean). The cold item's vector is the shrinkage blend

    v_i = (1 - w_i) c_i + w_i b_i,   w_i = s n_i / (1 + s n_i),   s = support_weight >= 0,

so each buyer counts ``s`` times as much as the content neighbours' prior and ``s = 0`` ignores the
buyers (an item whose buyers bought no warm item keeps ``c_i``). Without item features ``c_i`` is zero.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recbole_fewshot.nn.floors import BackboneFloor, item_content_vectors, training_pairs
from recbole_fewshot.nn.interactions import TrainingInteractions

SIMILARITY_DECIMALS = 9  # cosines are rounded to this many decimals before ranking, so ties do not hang on float noise


class ContentKNN(BackboneFloor):
    r"""Cold items: the mean backbone vector of their ``knn_k`` content-nearest warm items, blended with
    the co-purchase mean of their support buyers by ``support_weight``."""

    NO_CONTENT_EFFECT = "every cold item without support buyers gets a zero vector"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.knn_k = config["knn_k"]
        self.support_weight = float(config["support_weight"])
        if self.knn_k < 1:
            raise ValueError(f"ContentKNN: knn_k must be at least 1, got {self.knn_k}")
        if self.support_weight < 0:
            raise ValueError(f"ContentKNN: support_weight must be at least 0, got {self.support_weight}")
        content = item_content_vectors(dataset, config["item_content_fields"])
        self.has_content = content.shape[1] > 0
        self.warn_without_content(self.has_content)
        self.register_buffer("neighbours", nearest_warm(content, self.cold_items, self.warm_items, self.knn_k),
                             persistent=False)
        rows, items, counts, buyers = co_purchases(self.train_interactions, self.cold_items, self.warm_items)
        self.register_buffer("co_rows", rows, persistent=False)
        self.register_buffer("co_items", items, persistent=False)
        self.register_buffer("co_counts", counts, persistent=False)
        self.register_buffer("support_buyers", buyers, persistent=False)

    def content_means(self) -> torch.Tensor:
        """``c_i`` of every cold item: the mean backbone vector of its content neighbours."""
        weight = self.backbone.item_embedding.weight
        if not self.has_content or self.neighbours.shape[1] == 0:
            return weight.new_zeros(len(self.cold_items), weight.shape[1])
        return weight[self.neighbours].mean(1)

    def buyer_means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``b_i`` of every cold item and the total co-purchase count behind it (0: no warm item co-bought)."""
        weight = self.backbone.item_embedding.weight
        sums = weight.new_zeros(len(self.cold_items), weight.shape[1])
        sums.index_add_(0, self.co_rows, self.co_counts.unsqueeze(1) * weight[self.co_items])
        total = weight.new_zeros(len(self.cold_items)).index_add_(0, self.co_rows, self.co_counts)
        return sums / total.clamp_min(1.0).unsqueeze(1), total

    def cold_vectors(self) -> torch.Tensor:
        content, (buyers, total) = self.content_means(), self.buyer_means()
        share = self.support_weight * self.support_buyers
        blend = torch.where(total > 0, share / (1.0 + share), torch.zeros_like(share)).unsqueeze(1)
        return (1.0 - blend) * content + blend * buyers


def nearest_warm(content: torch.Tensor, cold: torch.Tensor, warm: torch.Tensor, k: int) -> torch.Tensor:
    """Per cold item, the ``k`` (at most the number of warm) warm item ids nearest by content cosine,
    ``[len(cold), k]``; cosines are rounded to ``SIMILARITY_DECIMALS`` and ties go to the lower id."""
    k = min(k, len(warm))
    unit = F.normalize(content.double(), dim=1)
    warm_unit = unit[warm]
    chunk = max(1, (1 << 22) // max(len(warm), 1))  # bounds the [chunk, n_warm] similarity block
    parts = [torch.zeros(0, k, dtype=torch.long)]
    for start in range(0, len(cold), chunk):
        similarity = torch.round(unit[cold[start: start + chunk]] @ warm_unit.T, decimals=SIMILARITY_DECIMALS)
        order = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, :k]  # warm is ascending
        parts.append(warm[order])
    return torch.cat(parts)


def co_purchases(train: TrainingInteractions, cold: torch.Tensor, warm: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The co-purchases of every cold item's support buyers: for each (cold row, warm item) pair with a
    nonzero count, its row in ``cold``, the warm item, and how many of the buyers bought it; and the
    number of distinct support buyers of each cold item."""
    users, items = training_pairs(train)
    bought = sp.csr_matrix((np.ones(len(users)), (users.numpy(), items.numpy())), shape=(train.n_users, train.n_items))
    counts = (bought[:, cold.numpy()].T @ bought[:, warm.numpy()]).tocoo()
    buyers = np.asarray(bought[:, cold.numpy()].sum(0)).ravel()
    return (torch.as_tensor(counts.row, dtype=torch.long), warm[torch.as_tensor(counts.col, dtype=torch.long)],
            torch.as_tensor(counts.data, dtype=torch.float), torch.as_tensor(buyers, dtype=torch.float))
