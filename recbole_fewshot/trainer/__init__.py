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

    def after_backbone(self, train_data, valid_data, verbose: bool, saved: bool, show_progress: bool) -> None:
        """Before RecBole's epochs: the transfer start (the model before any episode) is scored on valid and
        kept as the best epoch until an episode beats it; no episode at all when valid ranks only new items
        and the episodes cannot move them (a K = 0 split on a frozen backbone), as every epoch would repeat
        the start's evaluation until early stopping."""
        if valid_data and self.eval_step > 0 and self.start_epoch == 0:
            self.evaluate_transfer_start(train_data, valid_data, verbose, saved, show_progress)
        candidates = getattr(valid_data, "candidate_items", None)  # the valid phase's new items (fewshot_candidates: new)
        if candidates is not None and not self.model.training_moves(candidates):
            getLogger().info("FewShotRec: no new item has a buyer and the backbone is frozen, so new items are "
                             "their content map whatever the episodes learn: no episode")
            self.epochs = 0

    def evaluate_transfer_start(self, train_data, valid_data, verbose: bool, saved: bool, show_progress: bool) -> None:
        """Score the transfer start on valid and make it the best so far (saved as epoch -1): the episodes'
        epochs are kept only where one beats it, so training never ends below the closed-form start."""
        self.eval_collector.data_collect(train_data)  # RecBole's fit collects it too, after this evaluation
        self.best_valid_score, self.best_valid_result = self._valid_epoch(valid_data, show_progress=show_progress)
        if verbose:
            getLogger().info(f"transfer start, before any episode: valid_score {self.best_valid_score:f}")
        if saved:
            self._save_checkpoint(-1, verbose=verbose)


class BackboneFloorTrainer(WarmBackboneTrainer):
    """Pretrains (or loads) the warm backbone of a floor with nothing to learn after it, then runs one epoch
    whatever ``epochs`` says (as RecBole's ``TraditionalTrainer``): the loss is zero, so more would only repeat
    the evaluation."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epochs = 1
        self.eval_step = min(self.eval_step, 1)
