"""Trainers of plugin models that need their own: a model names its trainer in ``trainer_class``
(:class:`~recbole_fewshot.model.abstract_recommender.ColdStartRecommender`), and the registry publishes it
to RecBole as ``recbole.trainer.<Model>Trainer``."""

from logging import getLogger

from recbole_fewshot.trainer.backbone import WarmBackboneTrainer
from recbole_fewshot.trainer.user_grouped import UserGroupedTrainer


class FewShotRecTrainer(UserGroupedTrainer, WarmBackboneTrainer):
    """Pretrains (or loads) FewShotRec's warm backbone, reads the transfer from it (content map, buyers'
    score scale), then trains the episodes on user-grouped batches, so each user's history is encoded
    about once per epoch. With ``freeze_backbone: False`` the backbone is then fine-tuned with them."""

    def prepare_backbone(self, train_data) -> None:
        super().prepare_backbone(train_data)
        self.model.prepare_transfer()

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """As RecBole's, but one epoch when only new items are ranked and the episodes cannot move them (a K = 0
        split on a frozen backbone): more epochs would repeat the same evaluation until early stopping."""
        if self.config["fewshot_candidates"] == "new" and not self.model.training_moves_new_items():
            getLogger().info("FewShotRec: no new item has a buyer and the backbone is frozen, so new items are their "
                             "content map whatever the episodes learn: one epoch")
            self.epochs = 1
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)


class BackboneFloorTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) the warm backbone of a floor with nothing to learn after it, then runs one epoch
    whatever ``epochs`` says (as RecBole's ``TraditionalTrainer``): the loss is zero, so more would only repeat
    the evaluation."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epochs = 1
        self.eval_step = min(self.eval_step, 1)
