"""RecBole's ``run_recbole`` pipeline, the one path of ``run``, the benchmark's cells and ``bench-speed``.

:func:`prepare` goes from the settings to a trainer (``Config``, ``create_dataset``, ``data_preparation``,
``get_model``, ``get_trainer``), seeded as ``run_recbole`` seeds; :func:`run_pipeline` then fits with
checkpoints and evaluates the best one, as ``run_recbole`` does, and times both phases. With ``log_run``
the run's log also holds what ``run_recbole`` logs (the command line, the config, the dataset, the model
and its FLOPs, the environment, the results); counting FLOPs runs the model once, so it is left out where
results are compared with earlier ones (the benchmark).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from logging import getLogger
from typing import Any, TypedDict

# What a model with a warm backbone reports of the backbone's early stop on the warm holdout.
BACKBONE_FIGURES = ("backbone_best_epoch", "backbone_holdout_ndcg")


@dataclass
class Prepared:
    """A run ready to fit: its RecBole config, data loaders, model and trainer."""

    config: Any
    train_data: Any
    valid_data: Any
    test_data: Any
    model: Any
    trainer: Any


class PipelineResult(TypedDict):
    """``run_recbole``'s result (plain dicts; ``test_result`` empty when the test set is not scored), the
    phases' cost and, for a model with a warm backbone, its figures (None for the others)."""

    best_valid_score: float
    valid_score_bigger: bool
    best_valid_result: dict
    test_result: dict
    epochs: int
    train_seconds: float
    seconds_per_epoch: float
    eval_seconds: float
    peak_memory_mb: float
    backbone_best_epoch: int | None
    backbone_holdout_ndcg: float | None


def prepare(model: str, dataset: str, config_file_list: Sequence[str] | None = None, config_dict: dict | None = None,
            log_run: bool = False) -> Prepared:
    """Config, dataset, data loaders, model and trainer of a run, seeded and logged as ``run_recbole`` does."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.transform import construct_transform
    from recbole.utils import get_flops, get_model, get_trainer, init_logger, init_seed, set_color

    config = Config(model=model, dataset=dataset, config_file_list=list(config_file_list) if config_file_list else None,
                    config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    if log_run:
        logger.info(sys.argv)
        logger.info(config)
    data = create_dataset(config)
    if log_run:
        logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if log_run:
        logger.info(net)
        flops = get_flops(net, data, config["device"], logger, construct_transform(config))
        logger.info(set_color("FLOPs", "blue") + f": {flops}")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    return Prepared(config, train_data, valid_data, test_data, net, trainer)


def run_pipeline(model: str, dataset: str, config_file_list: Sequence[str] | None = None,
                 config_dict: dict | None = None, saved: bool = True, evaluate_test: bool = True,
                 show_progress: bool | None = None, log_run: bool = False) -> PipelineResult:
    """Prepare, fit (``saved``: keeping the best epoch's checkpoint) and evaluate on test (the best
    checkpoint when ``saved``; nothing when not ``evaluate_test``). ``show_progress`` None: the config's.
    A distributed run's process group ends here, in every process."""
    import torch.distributed as dist
    from recbole.utils import get_environment, set_color

    run = prepare(model, dataset, config_file_list, config_dict, log_run)
    config, trainer = run.config, run.trainer
    progress = config["show_progress"] if show_progress is None else show_progress
    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(run.train_data, run.valid_data, saved=saved,
                                                      show_progress=progress)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test_result = {}
    if evaluate_test:
        test_result = trainer.evaluate(run.test_data, load_best_model=saved, show_progress=progress)
    eval_seconds = time.perf_counter() - start
    if log_run:
        logger = getLogger()
        logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
        logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
        logger.info(set_color("test result", "yellow") + f": {test_result}")
    if not config["single_spec"]:
        dist.destroy_process_group()
    epochs = len(trainer.train_loss_dict)
    return PipelineResult(
        best_valid_score=float(best_valid_score),
        valid_score_bigger=config["valid_metric_bigger"],
        best_valid_result=dict(best_valid_result or {}),
        test_result=dict(test_result or {}),
        epochs=epochs,
        train_seconds=train_seconds,
        seconds_per_epoch=train_seconds / max(epochs, 1),
        eval_seconds=eval_seconds,
        peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **{figure: getattr(run.model, figure, None) for figure in BACKBONE_FIGURES},
    )
