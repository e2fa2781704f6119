"""Trainers of plugin models that need one, found by RecBole as ``recbole.trainer.<Model>Trainer``."""

from recbole_fewshot.trainer.backbone import WarmBackboneTrainer


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
