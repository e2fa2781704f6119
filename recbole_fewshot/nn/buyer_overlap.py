"""How much of what an item's support buyers bought a user bought too: a score term for few-shot items.

For user ``u`` and buyer ``b`` the two features are the share of ``b``'s training items that ``u``
also has, counted plainly and weighted by inverse square-root popularity (``1 / sqrt(n_j)``), each
scaled to mean 1 over all pairs of users with a history. An item's features are their mean over its
support buyers, leaving out the item itself (every buyer bought it, so a user who did too would
count it). Everything comes from the training split handed to the model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from recbole_fewshot.nn.caches import DerivedCaches
from recbole_fewshot.nn.interactions import TrainingInteractions, support_mask


class UserShares(NamedTuple):
    """Rows' users (``row[r]`` indexes the other two), their 0/1 training items [U, n_items] and
    ``share_f(u, b)`` for every buyer [2, U, n_users]."""

    row: torch.Tensor
    bought: torch.Tensor
    shares: torch.Tensor


class BuyerOverlap(DerivedCaches, nn.Module):
    """Two user-to-buyer overlap features and a learned positive weight per feature and support size.

    ``share_f(u, b) = buyer_weight[f, b] * sum_{j bought by u and b} item_weight[f, j]``.
    """

    # evaluation tables of (n_users + n_items) x (items with the term) floats at most; above, per batch
    MAX_TABLE_FLOATS = 2 ** 27
    CACHED = ("_evaluation",)  # every user's term: dropped by train()/eval() and load_state_dict

    def __init__(self, train: TrainingInteractions, max_shots: int):
        super().__init__()
        n_users, n_items = train.n_users, train.n_items
        items = torch.repeat_interleave(torch.arange(n_items), train.item_count)
        pairs = torch.sparse_coo_tensor(torch.stack([train.item_users, items]), torch.ones(len(items)),
                                        (n_users, n_items), check_invariants=True).coalesce()
        buyer, item = pairs.indices()  # coalesced: sorted by user, a repeated purchase counted once
        bought = torch.sparse_coo_tensor(pairs.indices(), torch.ones(len(buyer)), pairs.shape, check_invariants=True)
        popularity = torch.zeros(n_items).index_add_(0, item, torch.ones(len(item)))
        item_weight = torch.stack([torch.ones(n_items), popularity.clamp_min(1).rsqrt()])
        mass = torch.zeros(2, n_users).index_add_(1, buyer, item_weight[:, item])
        has_history = mass[0] > 0
        buyer_weight = torch.where(has_history, 1 / mass.clamp_min(1e-12), torch.zeros_like(mass))
        # mean over user pairs: sum_b buyer_weight[b] * sum_{j in b} item_weight[j] * popularity[j] / N^2
        reach = torch.sparse.mm(bought, (item_weight * popularity).T)  # [n_users, 2]
        pairs_mean = (buyer_weight.T * reach).sum(0) / has_history.sum().clamp_min(1) ** 2
        # sparse matrices are kept as their coalesced indices: DDP cannot broadcast sparse buffers
        self.register_buffer("bought_index", pairs.indices(), persistent=False)  # [user, item], by user
        self.register_buffer("bought_by_index", bought.t().coalesce().indices(), persistent=False)  # [item, user], by item
        self.register_buffer("user_ptr", torch.cat([torch.zeros(1, dtype=torch.long),
                                                    torch.bincount(buyer, minlength=n_users).cumsum(0)]), persistent=False)
        self.register_buffer("user_items", item, persistent=False)
        self.register_buffer("item_weight", item_weight, persistent=False)
        self.register_buffer("buyer_weight", buyer_weight / pairs_mean.clamp_min(1e-12).unsqueeze(1), persistent=False)
        self.logit = nn.Parameter(torch.zeros(2, max_shots + 1))
        self._evaluation: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def bought(self) -> torch.Tensor:
        """Sparse 0/1 [n_users, n_items] of training purchases."""
        return self._sparse(self.bought_index, (self.buyer_weight.shape[1], self.item_weight.shape[1]))

    @property
    def bought_by(self) -> torch.Tensor:
        """Its transpose, [n_items, n_users]."""
        return self._sparse(self.bought_by_index, (self.item_weight.shape[1], self.buyer_weight.shape[1]))

    @staticmethod
    def _sparse(index: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        ones = torch.ones(index.shape[1], device=index.device)
        return torch.sparse_coo_tensor(index, ones, shape, is_coalesced=True, check_invariants=False)

    def purchases(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every training purchase of ``users`` (a list, repeats allowed): the position in ``users`` and the item."""
        start, count = self.user_ptr[users], self.user_ptr[users + 1] - self.user_ptr[users]
        position = torch.repeat_interleave(torch.arange(len(users), device=users.device), count)
        offset = torch.arange(int(count.sum()), device=users.device) - torch.repeat_interleave(count.cumsum(0) - count, count)
        return position, self.user_items[torch.repeat_interleave(start, count) + offset]

    def user_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense 0/1 rows [U, n_items] of the users' training items."""
        rows = torch.zeros(len(users), self.item_weight.shape[1], device=users.device)
        rows[self.purchases(users)] = 1.0
        return rows

    def for_users(self, users: torch.Tensor) -> UserShares:
        """The shares of rows' users, each distinct user computed once."""
        unique, row = torch.unique(users, return_inverse=True)
        bought = self.user_rows(unique)
        weighted = bought.unsqueeze(0) * self.item_weight.unsqueeze(1)  # [2, U, n_items]
        products = torch.sparse.mm(self.bought, weighted.reshape(-1, weighted.shape[-1]).T)  # [n_users, 2U]
        return UserShares(row, bought, products.T.reshape(2, len(unique), -1) * self.buyer_weight.unsqueeze(1))

    def weights(self, support_len: torch.Tensor) -> torch.Tensor:
        """Positive weights [2, N] of items with ``support_len`` buyers."""
        return self.logit.exp()[:, support_len.clamp(max=self.logit.shape[1] - 1)]

    def score(self, users: UserShares, items: torch.Tensor, support: torch.Tensor, support_len: torch.Tensor,
              own_item: bool = True) -> torch.Tensor:
        """The term [B] of rows (``users.row[r]``, ``items[r]``) whose items have support sets ``support``
        [B, S] (0-padded) of ``support_len`` [B] training buyers of the item; ``own_item: False`` for items
        outside the dataset (onboarded), which no user can have bought."""
        shares = users.shares[:, users.row.unsqueeze(1), support]  # [2, B, S]
        mask = support_mask(support, support_len)
        count = mask.sum(1).clamp_min(1)
        features = (shares * mask).sum(2) / count
        if own_item:
            own = (self.buyer_weight[:, support] * mask).sum(2) / count * self.item_weight[:, items]
            features = features - own * users.bought[users.row, items]
        return (self.weights(mask.sum(1)) * features).sum(0)

    def score_grid(self, users: torch.Tensor, items: torch.Tensor, support: torch.Tensor, support_len: torch.Tensor,
                   own_item: bool = True) -> torch.Tensor:
        """The term [U, N] of every user with every item of ``items`` [N] (supports [N, S], lengths [N]);
        each distinct user's shares computed once."""
        shares = self.for_users(users)
        grid = shares._replace(row=shares.row.repeat_interleave(len(items)))
        term = self.score(grid, items.repeat(len(users)), support.repeat(len(users), 1),
                          support_len.repeat(len(users)), own_item)
        return term.view(len(users), len(items))

    def score_all(self, users: torch.Tensor, support: torch.Tensor, support_len: torch.Tensor,
                  item_scale: torch.Tensor) -> torch.Tensor:
        """``item_scale[i]`` times the term of every item i [U, n_items], whose support sets are ``support``
        [n_items, S]. In eval mode every user's scores are built once per evaluation where the tables fit
        ``MAX_TABLE_FLOATS``; otherwise (and in training mode) each call computes its users' rows."""
        if self._evaluation is None or self.training:
            open_items = torch.nonzero(item_scale > 0).squeeze(1)
            fits = (self.buyer_weight.shape[1] + self.item_weight.shape[1]) * len(open_items) <= self.MAX_TABLE_FLOATS
            if self.training or not fits:
                items = torch.arange(len(support), device=users.device)
                return self.score_grid(users, items, support, support_len) * item_scale
            self._evaluation = self._every_user(open_items, support, support_len, item_scale)
        open_items, every_user = self._evaluation
        return torch.zeros(len(users), len(support), device=users.device).index_copy_(1, open_items, every_user[users])

    def _every_user(self, open_items: torch.Tensor, support: torch.Tensor, support_len: torch.Tensor,
                    item_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The items with the term and every user's term of them [n_users, n_open], through the table
        ``T`` [n_items, n_open] with ``term(u, open[c]) = sum_j bought[u, j] T[j, c]``."""
        support = support[open_items]
        mask = support_mask(support, support_len[open_items])
        count = mask.sum(1)
        scale = self.weights(count) / count.clamp_min(1) * item_scale[open_items]  # [2, n_open]
        column = torch.arange(len(open_items), device=support.device).unsqueeze(1).expand_as(support)[mask]
        per_buyer = torch.zeros(self.buyer_weight.shape[1], 2, len(open_items), device=support.device)
        for feature in range(2):  # [buyer, feature, open item]: the buyer's weight in the item's mean
            per_buyer[:, feature].index_put_((support[mask], column), (self.buyer_weight[feature][support] * scale[feature].unsqueeze(1))[mask],
                                             accumulate=True)  # a buyer listed twice counts twice, as in ``score``
        through = torch.sparse.mm(self.bought_by, per_buyer.view(per_buyer.shape[0], -1)).view(-1, 2, len(open_items))
        item_side = (through * self.item_weight.T.unsqueeze(2)).sum(1)
        item_side[open_items, torch.arange(len(open_items), device=support.device)] = 0.0  # the item itself never counts
        return open_items, torch.sparse.mm(self.bought, item_side)
