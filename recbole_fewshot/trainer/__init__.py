"""Trainers of plugin models that need their own: a model names its trainer in ``trainer_class``
(:class:`~recbole_fewshot.model.abstract_recommender.ColdStartRecommender`), and the registry publishes it
to RecBole as ``recbole.trainer.<Model>Trainer``."""

from recbole_fewshot.trainer.backbone import WarmBackboneTrainer
from recbole_fewshot.trainer.user_grouped import UserGroupedTrainer


class FewShotRecTrainer(UserGroupedTrainer, WarmBackboneTrainer):
    """Pretrains (or loads) FewShotRec's warm backbone, reads the transfer from it (content map, buyers'
    score scale), then trains the episodes on user-grouped batches, so each user's history is encoded
    about once per epoch. With ``freeze_backbone: False`` the backbone is then fine-tuned with them."""

    def prepare_backbone(self, train_data) -> None:
        super().prepare_backbone(train_data)
        self.model.prepare_transfer()


class BackboneFloorTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) the warm backbone of a floor with nothing to learn after it, then runs one epoch
    whatever ``epochs`` says (as RecBole's ``TraditionalTrainer``): the loss is zero, so more would only repeat
    the evaluation."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epochs = 1
        self.eval_step = min(self.eval_step, 1)
