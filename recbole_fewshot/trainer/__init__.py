"""Trainers of plugin models that need one, found by RecBole as ``recbole.trainer.<Model>Trainer``."""

from recbole_fewshot.trainer.backbone import WarmBackboneTrainer
from recbole_fewshot.trainer.user_grouped import UserGroupedTrainer


class DropoutNetTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) DropoutNet's warm BPR backbone, then trains DropoutNet."""


class HeaterTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) Heater's warm BPR backbone, then trains Heater."""


class MetaEmbTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) MetaEmb's warm BPR backbone, then trains the embedding generator."""


class MWUFTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) MWUF's warm BPR backbone, then trains the meta networks."""


class DeepMusicTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) DeepMusic's warm BPR factors, then regresses content onto them."""


class CVARTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) CVAR's warm BPR backbone, then trains the conditional VAE."""


class ALDITrainer(WarmBackboneTrainer):
    """Pretrains (or loads) ALDI's warm teacher, then distils the content student."""


class GARTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) GAR's warm BPR embeddings, then trains generator and recommender."""


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


class ContentKNNTrainer(BackboneFloorTrainer):
    """Pretrains (or loads) ContentKNN's warm BPR backbone, then runs its one trivial epoch."""


class ContentRidgeTrainer(BackboneFloorTrainer):
    """Pretrains (or loads) ContentRidge's warm BPR backbone, then runs its one trivial epoch."""
