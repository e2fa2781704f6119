r"""FewShotRec: transfer from a converged warm recommender, and a cold-start item module meta-learned
for the few shots.

Users and items live in the space of the warm BPR backbone the peers share (trained to convergence by
``FewShotRecTrainer``); an item with more than ``max_shots`` training buyers keeps its backbone vector.

* A user is ``[b_u, c_u, 1]``: the backbone vector and a correction a behaviour encoder (``gru`` or
  ``cnn``) reads from the history's item vectors; the correction starts at zero and reads only what an
  item's buyers say beyond its content map ``mu``: ``score = b_u . v + c_u . (v - mu) + pace + affinity``.
* A new item's prior ``mu`` is a ridge map of its content codes onto the warm items' vectors, solved
  in closed form (at K = 0 the ``ContentRidge`` floor). Each support buyer ``s`` is evidence that
  ``u_s . v`` is high (``y_s``, an affine map of the buyer's mean backbone score), and ``v`` is the
  posterior mean ``mu + U^T (U U^T + rho I)^{-1} (y - U mu)``, ``rho`` learned from the content: no
  gradient step adapts an item.
* ``pace = w_K log(1 + gap / typical gap)``: how fast the first buyers came (``gap`` the mean time between
  consecutive ones), ``w_K`` learned per support size K >= 2, starting at its least-squares fit on the
  warm items.
* ``affinity = a_K cos(p_u, t_i)``: how much of the user's past purchases share the item's rarer tokens
  (tf-idf over the tokens on two or more items, ``nn/affinity.py``), ``a_K`` per support size fixed at
  ``affinity_scale`` times its logistic fit on warm items made to look new, never below 0 (the warm items'
  own buyers and content map know them better than a new item's: the fit can undervalue the tokens).

Training is by episodes: each row's positive and negative are made to look new, reading their first
K' ~ U{0..max_shots} training buyers (never the row's user), as a new item has its first buyers at
test; the user is encoded from the history before the positive; the trainer keeps the transfer start
unless an episode beats it on valid. ``freeze_backbone: False`` fine-tunes the backbone with the episode
loss. Design choices and their valid figures: docs/fewshotrec.md.

References: Bertinetto et al., "Meta-learning with differentiable closed-form solvers", ICLR 2019 (a
ridge solve as the inner loop); van den Oord et al., NeurIPS 2013 (content regressed onto warm
factors); Hidasi et al., ICLR 2016 (GRU4Rec) and Tang and Wang, WSDM 2018 (Caser) for the encoders.
Departures: the encoders are trained with the BPR loss on next-item prefixes rather than their own
losses, and Caser's vertical filters are replaced by a prefix mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from logging import getLogger
from typing import NamedTuple

import torch
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization
from torch import nn

from recbole_fewshot.model.abstract_recommender import WarmBackboneRecommender
from recbole_fewshot.nn.affinity import TokenProfiles, fit_logistic_weight
from recbole_fewshot.nn.backbone import BPRBackbone
from recbole_fewshot.nn.behaviour import CNNBehaviourEncoder, GRUBehaviourEncoder
from recbole_fewshot.nn.floors import ridge_map, with_bias
from recbole_fewshot.nn.interactions import support_mask
from recbole_fewshot.trainer import FewShotRecTrainer

AFFINITY_FIT_ROWS = 20000  # training interactions the affinity weights are fitted on
CHOICES = {"behaviour_encoder": ("gru", "cnn")}
# setting: (whole numbers only, lowest, highest, whether the highest is allowed); None: no bound
RANGES = {"embedding_size": (True, 1, None, True), "max_history_len": (True, 1, None, True),
          "max_shots": (True, 0, None, True), "ridge_lambda": (False, 0, None, True),
          "affinity_scale": (False, 0, None, True),
          "dropout_prob": (False, 0, 1, False)}
SWITCHES = ("freeze_backbone",)
REMOVED = ("alignment_weight", "buyer_overlap", "cnn_filters", "cnn_heights", "cold_negatives",
           "episode_negatives", "gru_history_mean", "meta_ratio", "support_aggregation", "support_users",
           "warm_epochs")


def check_settings(config) -> None:
    """Raise a ValueError naming the first FewShotRec setting out of its range, and what it may be."""
    fix = "(defaults: recbole_fewshot/properties/model/FewShotRec.yaml)"
    removed = [key for key in REMOVED if key in config]
    if removed:
        raise ValueError(f"FewShotRec: settings {removed} no longer exist; remove them from your config {fix}")
    for key, choices in CHOICES.items():
        if config[key] not in choices:
            raise ValueError(f"FewShotRec: {key} must be one of {', '.join(choices)}, got {config[key]!r} {fix}")
    for key, (whole, low, high, high_allowed) in RANGES.items():
        value = config[key]
        number = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
        if not number or value < low or (high is not None and (value > high or (value == high and not high_allowed))):
            span = f"at least {low}" if high is None else f"in [{low}, {high}{']' if high_allowed else ')'}"
            raise ValueError(f"FewShotRec: {key} must be {'a whole number' if whole else 'a number'} {span}, "
                             f"got {value!r} {fix}")
    if config["ridge_lambda"] == 0:
        raise ValueError(f"FewShotRec: ridge_lambda must be above 0, got 0 {fix}")
    for key in SWITCHES:
        if not isinstance(config[key], bool):
            raise ValueError(f"FewShotRec: {key} must be True or False, got {config[key]!r} {fix}")


class OnboardedItems(NamedTuple):
    """Items added after training: their served vectors [N, 2d + 1], support users [N, max_shots] (ids, 0-padded)
    and token vectors [N, W] times their affinity weight (``token_affinity``)."""

    embedding: torch.Tensor
    support: torch.Tensor
    support_len: torch.Tensor
    token_affinity: torch.Tensor


class FewShotRec(WarmBackboneRecommender):
    r"""Backbone users corrected by a behaviour encoder on items' departures from their content map; new
    items by a closed-form posterior over their buyers."""

    trainer_class = FewShotRecTrainer
    NO_CONTENT_EFFECT = "a zero-shot item is the warm items' mean and K = 0 scores are no better than chance"
    USER_TABLE_CHUNK = 4096  # users encoded at once for the evaluation's user table (bounds the encoder's memory)
    CACHED = ("_affinity_tables",)

    def __init__(self, config, dataset):
        check_settings(config)
        super().__init__(config, dataset)
        d = self.embedding_size
        self.fine_tunes_backbone = not config["freeze_backbone"]  # read by the trainer once the backbone is trained
        self.ridge_lambda = float(config["ridge_lambda"])
        self.affinity_scale = float(config["affinity_scale"])
        self.fit_seed = int(config["seed"] or 0)
        self.field2token_id = dataset.field2token_id
        for name in ("history", "history_len", "item_ptr", "item_users", "item_times"):
            self.register_buffer(name, getattr(self.train_interactions, name), persistent=False)
        self.register_buffer("support_times", self.train_interactions.support_times(self.max_shots), persistent=False)
        self._set_pace_scale()

        self.content = self.build_content_encoder(dataset, config)
        with torch.no_grad():
            codes = self.content.content_vectors(torch.arange(self.n_items))
        columns = codes.abs().sum(0) > 0  # tokens on too few items are zero everywhere: no column
        self.register_buffer("code_columns", columns, persistent=False)
        self.register_buffer("codes", codes[:, columns], persistent=False)
        self.backbone = BPRBackbone(self.n_users, self.n_items, d)
        self.trust = nn.Linear(d, 1)
        self.log_trust = nn.Parameter(torch.zeros(()))
        self.target_scale = nn.Parameter(torch.ones(()))
        self.target_shift = nn.Parameter(torch.zeros(()))
        self.pace_weight = nn.Parameter(torch.zeros(self.max_shots + 1))  # per support size; from fit_pace_weight
        encoder = GRUBehaviourEncoder if config["behaviour_encoder"] == "gru" else CNNBehaviourEncoder
        self.encoder = encoder(d, config["dropout_prob"])
        self.correction = nn.Linear(self.encoder.width, d)
        # set from the trained backbone by ``prepare_transfer``, saved with the model
        self.register_buffer("ridge_weight", torch.zeros(int(columns.sum()) + 1, d))
        self.register_buffer("user_target", torch.zeros(self.n_users))
        self.register_buffer("user_scale", torch.ones(()))
        self.apply(xavier_normal_initialization)
        self.backbone.apply(xavier_normal_initialization)
        for layer in (self.correction, self.trust):  # training starts from the transfer
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.profiles = TokenProfiles(dataset, self.content)
        self.register_buffer("affinity_weight", torch.zeros(self.max_shots + 1))  # per support size; fit_affinity_weight
        self.register_buffer("cold_items", torch.nonzero(self.item_count <= self.max_shots).view(-1), persistent=False)

    # --- transfer -------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare_transfer(self) -> None:
        """Read what the content map and the support evidence need from the trained backbone: the ridge
        map of content codes onto the warm items' vectors, each user's mean backbone score of their
        training items (``y``'s scale), the users' mean squared norm (``rho``'s scale) and the pace weights'
        start (``fit_pace_weight``)."""
        users, items = self.backbone.user_embedding.weight, self.backbone.item_embedding.weight
        warm = self.warm_items
        self.ridge_weight.copy_(ridge_map(self.codes[warm], items[warm], self.ridge_lambda).float())
        owners = torch.repeat_interleave(torch.arange(self.n_items, device=items.device), self.item_count)
        scores = (users[self.item_users] * items[owners]).sum(1)
        count = torch.bincount(self.item_users, minlength=self.n_users).clamp_min(1)
        self.user_target.copy_(torch.zeros_like(self.user_target).index_add_(0, self.item_users, scores) / count)
        known = torch.bincount(self.item_users, minlength=self.n_users) > 0
        self.user_scale.copy_(users[known].pow(2).sum(1).mean().clamp_min(1e-6))
        self.fit_pace_weight(users[known].mean(0))
        self.fit_affinity_weight()

    @torch.no_grad()
    def fit_affinity_weight(self) -> None:
        """Set each support size's affinity weight to the logistic fit, on up to ``AFFINITY_FIT_ROWS`` training
        interactions of warm items made to look new (their first K buyers, never the row's user; a random warm
        item against each), of how much the affinity adds to the model's score at transfer:
        ``max_a sum log sigmoid(s_pos - s_neg + a (affinity_pos - affinity_neg))``, the user's profile without
        the row's item; none below 0: sharing an item's tokens is evidence of interest (a negative fit says more
        about the popular warm items the fit is drawn from than about taste), times ``affinity_scale``. The weights
        are not trained."""
        warm = self.warm_items
        if not self.profiles.width or len(warm) < 2:
            return
        owners = torch.repeat_interleave(torch.arange(self.n_items, device=warm.device), self.item_count)
        rows = torch.nonzero(self.item_count[owners] > self.max_shots).view(-1)
        generator = torch.Generator().manual_seed(self.fit_seed)
        rows = rows[torch.randperm(len(rows), generator=generator)[:AFFINITY_FIT_ROWS].to(rows.device)]
        users, positives = self.item_users[rows], owners[rows]
        negatives = warm[torch.randint(len(warm), (len(rows),), generator=generator).to(warm.device)]
        keep = negatives != positives
        users, positives, negatives = users[keep], positives[keep], negatives[keep]
        user_e = self.corrected(users, users.new_zeros(len(users), self.encoder.width, dtype=torch.float),
                                users.new_zeros(len(users)))
        gain = (self.profiles.affinity(users, positives, left_out=positives)
                - self.profiles.affinity(users, negatives, left_out=positives))
        fits = []
        for size in range(self.max_shots + 1):
            shots = torch.full_like(users, size)
            margin = self._row_score(user_e, positives, users, shots) - self._row_score(user_e, negatives, users, shots)
            fits.append(fit_logistic_weight(margin, gain))
        self.affinity_weight.copy_(self.affinity_scale * torch.tensor(fits).clamp_min(0.0))
        self.drop_caches()
        getLogger().info(f"token affinity: weights for K = 0..{self.max_shots} fitted at "
                         + " ".join(f"{w:.3g}" for w in fits) + f" (0 where below), times {self.affinity_scale:g}")

    def weighted_tokens(self, vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Items' token vectors [N, W] times the affinity weight of their support sizes [N]."""
        return vectors * self.affinity_weight[lengths].unsqueeze(-1)

    def affinity_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's unit token profile and the weighted token vectors of the cold items (``cold_items``),
        computed once per evaluation."""
        def compute():
            cold = self.cold_items
            every = torch.arange(self.n_users, device=cold.device)
            return self.profiles.profiles(every), self.weighted_tokens(self.profiles.item_vectors[cold], self.support_len[cold])

        return self.cached("_affinity_tables", compute)

    def _row_score(self, user_e: torch.Tensor, items: torch.Tensor, users: torch.Tensor, shots: torch.Tensor) -> torch.Tensor:
        """Scores [N] of ``items`` made to look new with their first ``shots`` buyers (never ``users``), without
        the affinity."""
        support, support_len, times = self.sample_support(items, users, shots)
        prior = self.content_prior(self.codes[items])
        vectors = self.cold_item_embedding(prior, self.content(items), support, support_len)
        return (user_e * self.scored_item(vectors, prior, self.pace_bias(times, support_len))).sum(-1)

    @torch.no_grad()
    def fit_pace_weight(self, mean_user: torch.Tensor) -> None:
        """Start each support size's pace weight at the least-squares slope, over the warm items, of how far
        the mean user's score of an item is above its content map's (``mean_user . (v - mu)``) on the pace
        of the item's first buyers: how much faster first buyers say about an item's appeal."""
        warm = self.warm_items
        if len(warm) < 2:
            return
        items = self.backbone.item_embedding.weight[warm]
        residual = (items - self.content_prior(self.codes[warm])) @ mean_user
        for size in range(2, self.max_shots + 1):
            lengths = torch.full((len(warm),), size, dtype=torch.long, device=warm.device)
            pace = self.log_pace(self.support_times[warm], lengths)
            pace = pace - pace.mean()
            spread = pace.pow(2).mean()
            if spread > 0:
                self.pace_weight[size] = (pace * (residual - residual.mean())).mean() / spread

    # --- support pace ---------------------------------------------------------------------------
    def _set_pace_scale(self) -> None:
        """The typical gap between an item's first buyers (the median over training items with two or more,
        over their first ``max_shots``) and each support size's mean pace, from the training split alone."""
        self.register_buffer("pace_scale", torch.ones(()), persistent=False)
        self.register_buffer("pace_mean", torch.zeros(self.max_shots + 1), persistent=False)
        count = self.item_count.clamp(max=self.max_shots)
        several = count >= 2
        if not several.any():
            return
        gaps = self.mean_gap(self.support_times[several], count[several])
        if (gaps > 0).any():
            self.pace_scale.fill_(gaps[gaps > 0].median().item())
        for size in range(2, self.max_shots + 1):
            rows = self.item_count >= size
            if rows.any():
                lengths = torch.full((int(rows.sum()),), size, dtype=torch.long)
                self.pace_mean[size] = self.log_pace(self.support_times[rows], lengths).mean()

    @staticmethod
    def mean_gap(times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The mean time [N] between consecutive first buyers of items whose ``lengths`` first buyers bought at
        ``times`` [N, S] (ascending; 0 for fewer than two buyers)."""
        if times.shape[1] == 0:
            return times.new_zeros(len(times))
        last = times.gather(1, (lengths - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
        return (last - times[:, 0]) / (lengths - 1).clamp_min(1)

    def log_pace(self, times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``log(1 + gap / typical gap)`` [N] of items whose ``lengths`` first buyers bought at ``times`` [N, S]."""
        return torch.log1p(self.mean_gap(times, lengths) / self.pace_scale)

    def pace_bias(self, times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A score [N] for how fast an item's first buyers came: a learned weight per support size times the
        log of the mean gap between them (over the typical gap, centred on that size's mean); 0 below two buyers."""
        pace = self.log_pace(times, lengths) - self.pace_mean[lengths]
        return torch.where(lengths >= 2, self.pace_weight[lengths] * pace, torch.zeros_like(pace))

    # --- items ----------------------------------------------------------------------------------
    def content_prior(self, codes: torch.Tensor) -> torch.Tensor:
        """The content map [N, d]: the ridge map of content codes [N, D] onto the backbone's item space."""
        return with_bias(codes) @ self.ridge_weight

    def cold_item_embedding(self, prior: torch.Tensor, content: torch.Tensor, support: torch.Tensor,
                            support_len: torch.Tensor) -> torch.Tensor:
        """G: the posterior mean of items [N, d] around their content map ``prior`` [N, d], given their
        encoded content and support users [N, S] (0-padded)."""
        if support.shape[1] == 0:
            return prior
        mask = support_mask(support, support_len).unsqueeze(-1).float()
        buyers = self.backbone.user_embedding(support) * mask  # [N, S, d]
        target = (self.target_scale * self.user_target[support] + self.target_shift).unsqueeze(-1) * mask
        residual = target - buyers @ prior.unsqueeze(-1)  # [N, S, 1]
        trust = self.user_scale * torch.exp(self.log_trust + self.trust(content)).unsqueeze(-1)  # [N, 1, 1]
        gram = buyers @ buyers.transpose(1, 2) + trust * torch.eye(support.shape[1], device=support.device)
        return prior + (buyers.transpose(1, 2) @ torch.linalg.solve(gram, residual)).squeeze(-1)

    @staticmethod
    def scored_item(vectors: torch.Tensor, prior: torch.Tensor, pace: torch.Tensor) -> torch.Tensor:
        """``[v, v - prior, pace]`` [N, 2d + 1]: an item vector, what its buyers say beyond its content (the
        part the user correction reads) and its pace bias: ``[b_u, c_u, 1] . [v, v - prior, pace] =
        b_u . v + c_u . (v - prior) + pace``."""
        return torch.cat([vectors, vectors - prior, pace.unsqueeze(-1)], dim=-1)

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """Served items [N, 2d + 1] (``scored_item``): the backbone's vector for warm items, G over the stored
        support for the others."""
        prior = self.content_prior(self.codes[items])
        support_len = self.support_len[items]
        cold = self.is_cold(items)
        vectors = self.cold_item_embedding(prior, self.content(items), self.support[items], support_len)
        vectors = torch.where(~cold.unsqueeze(-1), self.backbone.item_embedding(items), vectors)
        pace = self.pace_bias(self.support_times[items], support_len) * cold
        return self.scored_item(vectors, prior, pace)

    def training_moves(self, items: torch.Tensor) -> bool:
        """Whether the episodes can change the scores of ``items``: not when the backbone stays frozen and none
        of them has a buyer (the new items of a K = 0 split), as each is then its content map, scored by the
        backbone user alone (``scored_item``), plus the token affinity at its fitted weight."""
        return self.fine_tunes_backbone or bool((self.item_count[items] > 0).any())

    def sample_support(self, items: torch.Tensor, users: torch.Tensor,
                       shots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each item's first ``shots`` training buyers [N, max_shots] (0-padded), never the row's user: the
        support a new item has at test, its first buyers; their number [N] and when they bought [N, max_shots]."""
        offsets = torch.arange(self.max_shots + 1, device=items.device).unsqueeze(0)
        index = (self.item_ptr[items].unsqueeze(1) + offsets).clamp(max=max(len(self.item_users) - 1, 0))
        buyers, times = self.item_users[index], self.item_times[index]
        keep = (offsets < self.item_count[items].unsqueeze(1)) & (buyers != users.unsqueeze(1))
        first = torch.argsort((~keep).float(), dim=1, stable=True)[:, : self.max_shots]
        buyers, times, keep = buyers.gather(1, first), times.gather(1, first), keep.gather(1, first)
        keep = keep & (offsets[:, : self.max_shots] < shots.unsqueeze(1))
        return buyers * keep, keep.sum(1), times * keep

    # --- users ----------------------------------------------------------------------------------
    def history_states(self, users: torch.Tensor) -> torch.Tensor:
        """Encoder states [U, max_history_len, width] over the users' histories of backbone item vectors."""
        history = self.history[users]
        return self.encoder(self.backbone.item_embedding(history) * (history > 0).unsqueeze(-1))

    def corrected(self, users: torch.Tensor, state: torch.Tensor, prefix_len: torch.Tensor) -> torch.Tensor:
        """``[b_u, c_u, 1]`` [U, 2d + 1]: backbone user vectors, the correction read from each row's encoder
        ``state`` [U, width] after ``prefix_len`` items (none after an empty prefix), and the pace's weight."""
        correction = self.correction(state) * (prefix_len > 0).unsqueeze(-1)
        return torch.cat([self.backbone.user_embedding(users), correction, correction.new_ones(len(users), 1)], dim=-1)

    @staticmethod
    def state_after(states: torch.Tensor, rows: torch.Tensor, prefix_len: torch.Tensor) -> torch.Tensor:
        """The state [N, width] of ``states`` [U, L, width] (every prefix of U histories) at each of N
        ``rows`` after its first ``prefix_len`` items."""
        return states[rows, (prefix_len - 1).clamp_min(0)]

    def user_representation(self, users: torch.Tensor) -> torch.Tensor:
        """Users from their backbone vector and their whole training history (at most ``max_history_len``
        items); in eval mode the encoder computes only the final state (``final_state``)."""
        lengths = self.history_len[users]
        if self.training:
            every = torch.arange(len(users), device=users.device)
            return self.corrected(users, self.state_after(self.history_states(users), every, lengths), lengths)
        items = self.backbone.item_embedding.weight.clone()
        items[0] = 0  # the padding item
        return self.corrected(users, self.encoder.final_state(items, self.history[users], lengths), lengths)

    def every_user_representation(self) -> torch.Tensor:
        """Every user's vector [n_users, 2d + 1], encoded ``USER_TABLE_CHUNK`` users at a time."""
        every = torch.arange(self.n_users, device=self.item_count.device)
        return torch.cat([self.user_representation(chunk) for chunk in every.split(self.USER_TABLE_CHUNK)])

    def compute_score_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.every_user_representation(), self.item_representation(torch.arange(self.n_items, device=self.item_count.device))

    def training_user_representation(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Users of training rows from the history before the scored item; each distinct user encoded once."""
        unique, inverse = torch.unique(users, return_inverse=True)
        match = self.history[users] == items.unsqueeze(1)
        prefix_len = torch.where(match.any(dim=1), match.float().argmax(dim=1), self.history_len[users])
        return self.corrected(users, self.state_after(self.history_states(unique), inverse, prefix_len), prefix_len)

    # --- RecBole interface ----------------------------------------------------------------------
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        user_e = self.training_user_representation(user, pos_item)
        shots = torch.randint(0, self.max_shots + 1, (len(user),), device=user.device)
        scores = []
        for items in (pos_item, neg_item):  # both look new: K' of their buyers, never the row's user
            affinity = self.profiles.affinity(user, items, left_out=pos_item)  # the profile without the row's item
            scores.append(self._row_score(user_e, items, user, shots) + self.affinity_weight[shots] * affinity)
        return -F.logsigmoid(scores[0] - scores[1]).mean()

    def predict(self, interaction):
        user, item = interaction[self.USER_ID], interaction[self.ITEM_ID]
        weight = self.affinity_weight[self.support_len[item]] * self.is_cold(item)
        return super().predict(interaction) + weight * self.profiles.affinity(user, item)

    def full_sort_predict(self, interaction):
        user = interaction[self.USER_ID]
        scores = super().full_sort_predict(interaction).view(len(user), -1)
        profiles, tokens = self.affinity_tables()
        scores[:, self.cold_items] += profiles[user] @ tokens.T
        return scores.view(-1)

    # --- onboarding -----------------------------------------------------------------------------
    @torch.no_grad()
    def onboard(self, features: Sequence[Mapping[str, object]], support_users: Sequence[Sequence[str]],
                support_times: Sequence[Sequence[float]] | None = None) -> OnboardedItems:
        """Items added after training, embedded from raw features and raw support-user tokens.

        ``features[i]`` maps item fields to raw values as in the ``.item`` file (``{'class': 'Drama'}``; a
        field the dataset's items lack, or a bad number, raises a ValueError naming item and field);
        ``support_users[i]`` lists the tokens of the item's first buyers in the order they bought (at most
        ``max_shots`` are used; users unknown to the training data are skipped with a warning naming them);
        ``support_times[i]``, when given, when each of them bought, in the unit of the training data's time
        field (without it the pace of the first buyers is not used). No gradient step is taken.
        """
        if len(features) != len(support_users):
            raise ValueError("onboard: features and support_users must have one entry per item")
        if support_times is not None and (len(support_times) != len(support_users) or
                                          any(len(t) != len(u) for t, u in zip(support_times, support_users))):
            raise ValueError("onboard: support_times must give one time per support user of every item")
        device = self.item_count.device
        if self.content.has_content:
            raw = self.content.features_from_raw(self.field2token_id, features)
            content = self.content.encode_features(raw)
            codes = self.content.content_codes(raw)[:, self.code_columns]
        else:
            content = torch.zeros(len(features), self.embedding_size, device=device)
            codes = torch.zeros(len(features), 0, device=device)
        token_id = self.field2token_id[self.USER_ID]
        unknown = sorted({u for users in support_users for u in users if u not in token_id})
        if unknown:
            getLogger().warning(f"onboard: support users {unknown[:5]} are not {self.USER_ID} tokens of the "
                                "training data and are skipped (check the id format)")
        kept = [[position for position, u in enumerate(users) if u in token_id][: self.max_shots] for users in support_users]
        padded = [row + [None] * (self.max_shots - len(row)) for row in kept]
        support = torch.tensor([[0 if p is None else token_id[users[p]] for p in row] for users, row in zip(support_users, padded)],
                               dtype=torch.long, device=device).view(len(kept), self.max_shots)
        lengths = torch.tensor([len(row) for row in kept], dtype=torch.long, device=device)
        times = torch.zeros(len(kept), self.max_shots, device=device)
        if support_times is not None:
            bought = torch.tensor([[0.0 if p is None else float(when[p]) for p in row] for when, row in zip(support_times, padded)],
                                  dtype=torch.float64, device=device).view(len(kept), self.max_shots)
            within = torch.arange(self.max_shots, device=device) < lengths.unsqueeze(1)
            times = ((bought - bought[:, :1]) * within).float()
        prior = self.content_prior(codes)
        vectors = self.cold_item_embedding(prior, content, support, lengths)
        tokens = self.weighted_tokens(self.profiles.vectors_from_raw(self.field2token_id, features), lengths)
        return OnboardedItems(self.scored_item(vectors, prior, self.pace_bias(times, lengths)), support, lengths, tokens)

    @torch.no_grad()
    def score_onboarded(self, users: Sequence[str], items: OnboardedItems) -> torch.Tensor:
        """Scores [len(users), len(items)] of onboarded items for users given as raw tokens."""
        token_id = self.field2token_id[self.USER_ID]
        unknown = [u for u in users if u not in token_id]
        if unknown:
            raise ValueError(f"score_onboarded: users {unknown[:5]} are not {self.USER_ID} tokens of the training data; "
                             "a user needs a training history to be scored")
        user_ids = torch.tensor([token_id[u] for u in users], dtype=torch.long, device=self.item_count.device)
        was_training = self.training
        self.eval()
        scores = self.score_tables()[0][user_ids] @ items.embedding.T + self.profiles.profiles(user_ids) @ items.token_affinity.T
        self.train(was_training)
        return scores
