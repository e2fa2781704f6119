"""Trainer for models with a warm backbone: pretrain (or load) it, freeze it, then train the model."""

from __future__ import annotations

from logging import getLogger

import torch
import torch.distributed as dist
from recbole.trainer import Trainer
from torch.nn.parallel import DistributedDataParallel

from recbole_fewshot.checkpoint import load_checkpoint


class WarmBackboneTrainer(Trainer):
    """RecBole's Trainer with a backbone phase before ``fit``.

    The model has ``backbone`` (a :class:`~recbole_fewshot.nn.backbone.BPRBackbone`) and is PAIRWISE,
    so training batches carry negatives. ``backbone_epochs`` BPR epochs train it, unless
    ``pretrained_backbone`` names a RecBole BPR checkpoint of the same split.

    In distributed mode the backbone's gradients are averaged over the processes while it trains (each
    process sees its share of the data), and the model is wrapped again once the backbone is frozen:
    RecBole wraps it in ``AbstractTrainer.__init__``, when the backbone still required gradients, and
    that wrapper would wait for gradients that never come.
    """

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.prepare_backbone(train_data)
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def prepare_backbone(self, train_data) -> None:
        logger = getLogger()
        backbone = self.model.backbone
        path = self.config["pretrained_backbone"]
        if path:
            backbone.load_bpr_state_dict(load_checkpoint(path, map_location=self.device)["state_dict"])
            logger.info(f"backbone loaded from {path}")
        else:
            hooks = [p.register_hook(_average_over_processes) for p in backbone.parameters()] \
                if not self.config["single_spec"] else []
            optimizer = torch.optim.Adam(backbone.parameters(), lr=self.config["backbone_learning_rate"] or 1e-3)
            for epoch in range(self.config["backbone_epochs"] or 0):
                total = 0.0
                for interaction in train_data:
                    interaction = interaction.to(self.device)
                    optimizer.zero_grad()
                    loss = backbone.bpr_loss(
                        interaction[self.model.USER_ID], interaction[self.model.ITEM_ID], interaction[self.model.NEG_ITEM_ID]
                    )
                    loss.backward()
                    optimizer.step()
                    total += loss.item()
                logger.info(f"backbone epoch {epoch}: BPR loss {total:.4f}")
            for hook in hooks:
                hook.remove()
        backbone.freeze()
        if not self.config["single_spec"]:
            self.distributed_model = DistributedDataParallel(self.model, device_ids=self.distributed_model.device_ids)


def _average_over_processes(gradient: torch.Tensor) -> torch.Tensor:
    gradient = gradient.clone()
    dist.all_reduce(gradient)
    return gradient / dist.get_world_size()
