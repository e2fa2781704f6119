"""Trainer for models with a warm backbone: pretrain (or load) it, freeze it, then train the model.

The backbone (:class:`~recbole_fewshot.nn.backbone.BPRBackbone`) trains with the BPR loss on the
training interactions less a **warm holdout**, and stops early on that holdout:

* the holdout is a share ``backbone_holdout`` of the training interactions of warm items (more than
  ``max_shots`` training interactions), drawn with the config's ``seed``. A drawn row goes back to
  training when its user or its item would otherwise have no training row left, or when the same
  (user, item) pair stays in training. Few-shot items (new items' support rows included) never lose a
  row, and valid and test rows never enter: the holdout is part of the training split;
* every ``backbone_eval_step`` epochs the backbone ranks all warm items for each holdout user, the
  user's backbone-training items masked, and its binary NDCG@20 on the holdout is computed;
* the best state (a copy) is kept; training stops after ``backbone_stopping_step`` evaluations
  without a better NDCG@20, or after ``backbone_epochs`` epochs (a cap), and the best state is restored.

With ``backbone_holdout: 0`` (or no warm item to hold out) there is no evaluation and the backbone
trains exactly ``backbone_epochs`` epochs on every training interaction.

The backbone's loop is its own, independent of the model's training loader: batches of
``backbone_train_batch_size`` rows (the model's ``train_batch_size`` where that is ``~``) in an order
drawn each epoch, one uniformly drawn negative per row (an item that is none of the user's backbone-training
items), Adam at ``backbone_learning_rate``, and an L2 penalty ``backbone_weight_decay`` times the sum of
squares of the batch's user, positive and negative vectors over the batch size (RecBole's ``EmbLoss``).
The backbone is initialised afresh from ``seed`` before training, and every random draw of this phase
comes from its own generators (the global random state is left as it was), so the backbone depends on
the split, the seed and these settings alone, never on the model that holds it: with
``backbone_cache_dir`` set, a backbone trained once is saved there and reloaded by every later run of
the same split, seed and settings (in single-process runs).

The models themselves still train on every training interaction; the settings live in
``recbole_fewshot/properties/backbone.yaml``, read before each backbone model's own defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from logging import getLogger
from pathlib import Path

import torch
import torch.distributed as dist
from recbole.trainer import Trainer
from torch.nn.parallel import DistributedDataParallel

from recbole_fewshot.checkpoint import load_checkpoint

HOLDOUT_TOPK = 20
CACHE_FORMAT = 1  # bumped whenever the training procedure changes what a cached backbone would be
# The values that reproduce a backbone trained before each setting existed (see compat.upstream.config_unpickle):
# every training interaction for exactly backbone_epochs epochs, no penalty, the model's batch size.
SETTINGS_BEFORE_ADDED = {"backbone_holdout": 0.0, "backbone_weight_decay": 0.0, "backbone_train_batch_size": None}
# Every setting that changes a trained backbone, besides the training data itself; the cache key.
TRAINING_SETTINGS = ("seed", "embedding_size", "max_shots", "backbone_epochs", "backbone_learning_rate",
                     "backbone_weight_decay", "backbone_train_batch_size", "backbone_holdout", "backbone_eval_step",
                     "backbone_stopping_step")


def warm_holdout(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, max_shots: int,
                 share: float, seed: int) -> torch.Tensor:
    """Which training rows (a boolean mask) form the warm holdout; see the module docstring."""
    users, items = users.long().cpu(), items.long().cpu()
    holdout = torch.zeros(len(users), dtype=torch.bool)
    count = torch.bincount(items, minlength=n_items)
    candidates = torch.nonzero(count[items] > max_shots).squeeze(1)
    take = int(round(share * len(candidates)))
    if take <= 0:
        return holdout
    generator = torch.Generator().manual_seed(int(seed))
    holdout[candidates[torch.randperm(len(candidates), generator=generator)[:take]]] = True
    kept_users = torch.bincount(users[~holdout], minlength=n_users)
    kept_items = torch.bincount(items[~holdout], minlength=n_items)
    holdout &= (kept_users[users] > 0) & (kept_items[items] > 0)
    pairs = users * n_items + items
    holdout &= ~torch.isin(pairs, pairs[~holdout])
    return holdout


class HoldoutRanking:
    """Full-sort binary NDCG@k of a backbone on held-out (user, item) pairs.

    Candidates are the items flagged in ``candidates``; each user's ``known`` items (the backbone's
    training items) are masked. Users are scored in chunks, so memory stays bounded on large catalogues.
    """

    def __init__(self, hold_users: torch.Tensor, hold_items: torch.Tensor, known_users: torch.Tensor,
                 known_items: torch.Tensor, candidates: torch.Tensor, k: int = HOLDOUT_TOPK):
        hold_users, known_users = hold_users.long().cpu(), known_users.long().cpu()
        self.users = torch.unique(hold_users)
        row = torch.full((int(torch.cat([hold_users, known_users, torch.zeros(1, dtype=torch.long)]).max()) + 1,), -1)
        row[self.users] = torch.arange(len(self.users))  # a holdout user's row in the scores, -1 for the others
        pairs = torch.unique(torch.stack([row[hold_users], hold_items.long().cpu()], 1), dim=0)
        self.hold_rows, self.hold_items = pairs[:, 0], pairs[:, 1]
        known_rows = row[known_users]
        inside = known_rows >= 0
        self.known_rows, self.known_items = known_rows[inside], known_items.long().cpu()[inside]
        self.candidates = candidates.bool().cpu()
        self.k = min(k, int(self.candidates.sum()))
        positives = torch.bincount(self.hold_rows, minlength=len(self.users)).clamp(max=self.k)
        discount = 1.0 / torch.log2(torch.arange(2, self.k + 2, dtype=torch.float64))
        ideal = torch.cat([torch.zeros(1, dtype=torch.float64), discount.cumsum(0)])
        self.ideal = ideal[positives]
        self.discount = discount

    def __len__(self) -> int:
        return len(self.users)

    @torch.no_grad()
    def ndcg(self, user_embedding: torch.Tensor, item_embedding: torch.Tensor) -> float:
        """Mean NDCG@k over the holdout users."""
        if not len(self.users) or self.k == 0:
            return float("nan")
        device = item_embedding.device
        n_items = item_embedding.shape[0]
        chunk = max(1, (1 << 22) // max(n_items, 1))
        blocked = ~self.candidates.to(device)
        total = 0.0
        for start in range(0, len(self.users), chunk):
            end = min(start + chunk, len(self.users))
            scores = user_embedding[self.users[start:end].to(device)] @ item_embedding.T
            scores[:, blocked] = -torch.inf
            known = (self.known_rows >= start) & (self.known_rows < end)
            scores[(self.known_rows[known] - start).to(device), self.known_items[known].to(device)] = -torch.inf
            top = scores.topk(self.k, dim=1).indices.cpu()
            relevant = torch.zeros(end - start, n_items, dtype=torch.bool)
            inside = (self.hold_rows >= start) & (self.hold_rows < end)
            relevant[self.hold_rows[inside] - start, self.hold_items[inside]] = True
            gains = relevant.gather(1, top).double() @ self.discount
            total += float((gains / self.ideal[start:end]).sum())
        return total / len(self.users)


class WarmBackboneTrainer(Trainer):
    """RecBole's Trainer with a backbone phase before ``fit``.

    The model has ``backbone`` (a :class:`~recbole_fewshot.nn.backbone.BPRBackbone`). The backbone is
    trained with early stopping on a warm holdout (see the module docstring), loaded from
    ``backbone_cache_dir`` where an identical backbone was trained before, or loaded from the RecBole BPR
    checkpoint named by ``pretrained_backbone`` (no training). The model then records
    ``backbone_best_epoch`` and ``backbone_holdout_ndcg`` (None without a holdout evaluation). The
    backbone is then frozen, unless the model's ``fine_tunes_backbone`` is True: its loss trains it on.

    In distributed mode each process trains on its share of every epoch's batches, the backbone's
    gradients are averaged over the processes, every process evaluates the holdout (identical
    parameters) and rank 0's score decides for all; the model is wrapped again once the backbone is
    frozen: RecBole wraps it in ``AbstractTrainer.__init__``, when the backbone still required gradients,
    and that wrapper would wait for gradients that never come.
    """

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.prepare_backbone(train_data)
        self.after_backbone(train_data, valid_data, verbose, saved, show_progress)
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def after_backbone(self, train_data, valid_data, verbose: bool, saved: bool, show_progress: bool) -> None:
        """What a model's trainer does between the backbone and the model's own epochs (nothing here)."""

    def prepare_backbone(self, train_data) -> None:
        logger = getLogger()
        backbone = self.model.backbone
        self.model.backbone_best_epoch, self.model.backbone_holdout_ndcg = None, None
        path = self.config["pretrained_backbone"]
        if path:
            backbone.load_bpr_state_dict(load_checkpoint(path, map_location=self.device)["state_dict"])
            logger.info(f"backbone loaded from {path}")
        elif self.config["backbone_epochs"]:
            dataset = train_data._dataset
            cache = self._cache_file(dataset)
            if cache is not None and cache.is_file():
                self._load_cached(cache)
            else:
                self.train_backbone(dataset)
                if cache is not None:
                    self._save_cached(cache)
        backbone.freeze()
        if getattr(self.model, "fine_tunes_backbone", False):  # the model's own loss trains it from here on
            backbone.requires_grad_(True)
        if not self.config["single_spec"]:
            self.distributed_model = DistributedDataParallel(self.model, device_ids=self.distributed_model.device_ids)

    # --- training -------------------------------------------------------------------------------
    def train_backbone(self, dataset) -> None:
        """Train ``model.backbone`` on ``dataset``'s interactions less the warm holdout, stopping early on it."""
        logger = getLogger()
        config, backbone = self.config, self.model.backbone
        users = dataset.inter_feat[dataset.uid_field].long()
        items = dataset.inter_feat[dataset.iid_field].long()
        n_users, n_items = dataset.user_num, dataset.item_num
        max_shots = config["max_shots"] or 0
        holdout = warm_holdout(users, items, n_users, n_items, max_shots, config["backbone_holdout"] or 0.0,
                               config["seed"])
        train_users, train_items = users[~holdout], items[~holdout]
        ranking = None
        if holdout.any():
            warm = torch.bincount(items, minlength=n_items) > max_shots
            ranking = HoldoutRanking(users[holdout], items[holdout], train_users, train_items, warm)
            logger.info(f"backbone: {int(holdout.sum())} of {len(users)} training interactions of "
                        f"{int(warm.sum())} warm items held out ({len(ranking)} users), the rest train it")

        distributed = not config["single_spec"]
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        seed = int(config["seed"])
        _initialise(backbone, seed)
        backbone.requires_grad_(True)  # frozen by an earlier fit
        order_generator = torch.Generator().manual_seed(seed)  # the same epoch order on every process
        negative_generator = torch.Generator().manual_seed(seed * 1000 + 1 + rank)
        known = torch.unique(train_users * n_items + train_items)  # sorted pairs: negatives avoid them
        batch_size = max(1, (config["backbone_train_batch_size"] or config["train_batch_size"]) // world)
        weight_decay = config["backbone_weight_decay"] or 0.0
        hooks = [p.register_hook(_average_over_processes) for p in backbone.parameters()] if distributed else []
        optimizer = torch.optim.Adam(backbone.parameters(), lr=config["backbone_learning_rate"] or 1e-3)
        cap = int(config["backbone_epochs"])
        eval_step = max(1, int(config["backbone_eval_step"] or 1))
        patience = max(1, int(config["backbone_stopping_step"] or 1))
        best_score, best_epoch, best_state, waited, epoch = -math.inf, cap, None, 0, 0
        try:
            for epoch in range(1, cap + 1):
                permutation = torch.randperm(len(train_users), generator=order_generator)
                permutation = permutation[rank: len(permutation) - len(permutation) % world: world]
                total, batches = 0.0, 0
                for start in range(0, len(permutation), batch_size):
                    rows = permutation[start: start + batch_size]
                    user, positive = train_users[rows], train_items[rows]
                    negative = _negatives(user, n_items, known, negative_generator)
                    user, positive, negative = user.to(self.device), positive.to(self.device), negative.to(self.device)
                    optimizer.zero_grad()
                    loss = backbone.bpr_loss(user, positive, negative)
                    if weight_decay:
                        vectors = (backbone.user_embedding(user), backbone.item_embedding(positive),
                                   backbone.item_embedding(negative))
                        loss = loss + weight_decay * sum(v.pow(2).sum() for v in vectors) / len(user)
                    loss.backward()
                    optimizer.step()
                    total, batches = total + loss.item(), batches + 1
                message = f"backbone epoch {epoch}: BPR loss {total / max(batches, 1):.4f}"
                if ranking is None or (epoch % eval_step and epoch != cap):
                    logger.info(message)
                    continue
                score = self._agreed(ranking.ndcg(backbone.user_embedding.weight, backbone.item_embedding.weight))
                if score > best_score:
                    best_score, best_epoch, waited = score, epoch, 0
                    best_state = {key: value.detach().clone() for key, value in backbone.state_dict().items()}
                else:
                    waited += 1
                logger.info(f"{message}, warm-holdout NDCG@{ranking.k} {score:.4f} "
                            f"(best {best_score:.4f} at epoch {best_epoch})")
                if waited >= patience:
                    break
        finally:
            for hook in hooks:
                hook.remove()
        self.backbone_epochs_trained = epoch
        if best_state is not None:
            backbone.load_state_dict(best_state)
            logger.info(f"backbone: best epoch {best_epoch} of {epoch}, warm-holdout NDCG@{ranking.k} {best_score:.4f}")
            self.model.backbone_best_epoch, self.model.backbone_holdout_ndcg = best_epoch, best_score
        else:
            logger.info(f"backbone: {epoch} epochs, no warm holdout to stop on")
            self.model.backbone_best_epoch, self.model.backbone_holdout_ndcg = epoch, None

    def _agreed(self, score: float) -> float:
        """Rank 0's score on every process (their parameters agree; the stopping decision must too)."""
        if self.config["single_spec"]:
            return score
        value = torch.tensor([score], dtype=torch.float64, device=self.device)
        dist.broadcast(value, src=0)
        return float(value.item())

    # --- cache ----------------------------------------------------------------------------------
    def _cache_file(self, dataset) -> Path | None:
        """Where a backbone of this split, seed and settings is kept (None: no cache, or distributed)."""
        folder = self.config["backbone_cache_dir"]
        if not folder or not self.config["single_spec"]:
            return None
        inter = dataset.inter_feat
        data = hashlib.sha256()
        for field in (dataset.uid_field, dataset.iid_field):
            data.update(inter[field].long().cpu().numpy().tobytes())
        key = {"format": CACHE_FORMAT, "dataset": self.config["dataset"], "users": dataset.user_num,
               "items": dataset.item_num, "interactions": data.hexdigest(),
               **{name: self.config[name] for name in TRAINING_SETTINGS}}
        if not key["backbone_train_batch_size"]:
            key["backbone_train_batch_size"] = self.config["train_batch_size"]
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return Path(folder) / f"{self.config['dataset']}-backbone-{digest}.pth"

    def _load_cached(self, path: Path) -> None:
        saved = load_checkpoint(path, map_location=self.device)
        self.model.backbone.load_state_dict(saved["state_dict"])
        self.model.backbone_best_epoch, self.model.backbone_holdout_ndcg = saved["best_epoch"], saved["holdout_ndcg"]
        self.backbone_epochs_trained = saved["epochs"]
        ndcg = "no holdout" if saved["holdout_ndcg"] is None else f"warm-holdout NDCG@20 {saved['holdout_ndcg']:.4f}"
        getLogger().info(f"backbone loaded from the cache {path}: best epoch {saved['best_epoch']} of "
                         f"{saved['epochs']}, {ndcg}")

    def _save_cached(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in self.model.backbone.state_dict().items()}
        payload = {"state_dict": state, "best_epoch": self.model.backbone_best_epoch,
                   "holdout_ndcg": self.model.backbone_holdout_ndcg, "epochs": self.backbone_epochs_trained}
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # then renamed: readers see whole files
        os.close(handle)
        try:
            torch.save(payload, temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)


def _initialise(backbone, seed: int) -> None:
    """Xavier-normal embeddings drawn from ``seed`` alone (as RecBole's init, without the global generator)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for embedding in (backbone.user_embedding, backbone.item_embedding):
            rows, width = embedding.weight.shape
            std = math.sqrt(2.0 / (rows + width))
            embedding.weight.copy_(torch.randn(rows, width, generator=generator) * std)


def _negatives(users: torch.Tensor, n_items: int, known: torch.Tensor, generator: torch.Generator,
               tries: int = 100) -> torch.Tensor:
    """One item per user drawn uniformly from ids 1..n_items-1, redrawn while it is a ``known`` pair."""
    negatives = torch.randint(1, n_items, users.shape, generator=generator)
    for _ in range(tries if len(known) else 0):
        pairs = users * n_items + negatives
        found = known[torch.searchsorted(known, pairs).clamp(max=len(known) - 1)] == pairs
        if not found.any():
            break
        negatives[found] = torch.randint(1, n_items, (int(found.sum()),), generator=generator)
    return negatives


def _average_over_processes(gradient: torch.Tensor) -> torch.Tensor:
    gradient = gradient.clone()
    dist.all_reduce(gradient)
    return gradient / dist.get_world_size()
