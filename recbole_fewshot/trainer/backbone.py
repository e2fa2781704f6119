"""Trainer for models with a warm backbone: pretrain (or load) it, freeze it, then train the model."""

from __future__ import annotations

from logging import getLogger

import torch
from recbole.trainer import Trainer

from recbole_fewshot.checkpoint import load_checkpoint


class WarmBackboneTrainer(Trainer):
    """RecBole's Trainer with a backbone phase before ``fit``.

    The model has ``backbone`` (a :class:`~recbole_fewshot.nn.backbone.BPRBackbone`) and is PAIRWISE,
    so training batches carry negatives. ``backbone_epochs`` BPR epochs train it, unless
    ``pretrained_backbone`` names a RecBole BPR checkpoint of the same split.
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
        backbone.freeze()
