"""Equal-budget tuning on valid: every model gets the same number of optuna trials over its declared space.

A model declares its search space in its yaml (``recbole_fewshot/properties/model/<Model>.yaml`` for a
plugin model, ``recbole_fewshot/properties/benchmark/<Model>.yaml`` for a RecBole built-in) under
``search_space``, one entry per setting::

    search_space:
      learning_rate: [log, 0.0001, 0.01]     # log-uniform float in [low, high]
      dropout_prob: [float, 0.0, 0.5]        # uniform float
      n_layers: [int, 1, 3]                  # integer
      weight_decay: [choice, 0.0, 1.0e-6]    # one of the listed values

Each trial is a benchmark cell (one split: ``shots``, ``seed``) run in a child process with the sampled
settings; its objective is the best valid score (``valid_metric``, NDCG@20 by default). The test set is
never evaluated during tuning. Trials are kept in an optuna journal (``<out>/<dataset>/journal.log``), so
an interrupted study resumes where it stopped; trial ``i`` is sampled by a TPE sampler seeded with
``seed + i`` from the trials before it, so a resumed study draws what an uninterrupted one would. The
shipped defaults run once more, in a study of their own (outside the budget and unseen by the sampler), so
a winner is never worse on valid than the defaults. The winner is written to
``<out>/<dataset>/<label>.yaml``, which ``benchmark --tuned <out>`` reads (empty settings: the defaults won).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

SPACE_KINDS = ("log", "float", "int", "choice")
DEFAULTS_STUDY = "shipped-defaults"  # suffix of the study name of a label's one run of its shipped defaults


class SearchSpaceError(ValueError):
    """A ``search_space`` entry that cannot be sampled."""


def search_space(label: str) -> dict[str, list]:
    """The declared search space of a model label (a model or a benchmark variant); empty if none."""
    from recbole_fewshot.benchmark import BENCHMARK_CONFIG_DIR, model_spec
    from recbole_fewshot.registry import model_config_file

    model, _ = model_spec(label)
    path = model_config_file(model) or BENCHMARK_CONFIG_DIR / f"{model}.yaml"
    declared = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("search_space") if path.is_file() else None
    space = dict(declared or {})
    for name, entry in space.items():
        _check_entry(f"{path.name}: search_space.{name}", entry)
    return space


def _check_entry(where: str, entry) -> None:
    if not isinstance(entry, list) or not entry or entry[0] not in SPACE_KINDS:
        raise SearchSpaceError(f"{where} must be a list starting with one of {list(SPACE_KINDS)}, got {entry!r}")
    kind, values = entry[0], entry[1:]
    if kind == "choice":
        if not values:
            raise SearchSpaceError(f"{where}: [choice, ...] needs at least one value")
        return
    if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values) or values[0] >= values[1]:
        raise SearchSpaceError(f"{where}: [{kind}, low, high] needs two numbers with low < high, got {values}")
    if kind == "log" and values[0] <= 0:
        raise SearchSpaceError(f"{where}: [log, low, high] needs low > 0, got {values[0]}")


def suggest(trial, space: Mapping[str, list]) -> dict:
    """One setting per entry of ``space``, drawn by an optuna ``trial``."""
    settings = {}
    for name, (kind, *values) in space.items():
        if kind == "log":
            settings[name] = trial.suggest_float(name, float(values[0]), float(values[1]), log=True)
        elif kind == "float":
            settings[name] = trial.suggest_float(name, float(values[0]), float(values[1]))
        elif kind == "int":
            settings[name] = trial.suggest_int(name, int(values[0]), int(values[1]))
        else:
            settings[name] = trial.suggest_categorical(name, values)
    return settings


def tuned_path(out: str | os.PathLike, dataset: str, label: str) -> Path:
    return Path(out) / dataset / f"{label}.yaml"


def read_tuned(out: str | os.PathLike, dataset: str, label: str) -> dict | None:
    """The winning settings ``tune`` wrote for ``label`` on ``dataset``, or None."""
    path = tuned_path(out, dataset, label)
    if not path.is_file():
        return None
    return dict((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("settings") or {})


def tune(dataset: str, labels: Sequence[str], trials: int, out: str | os.PathLike, shots: int = 3, seed: int = 2020,
         data_path: str | None = None, candidates: str = "new", overrides: dict | None = None,
         split_options: dict | None = None) -> dict[str, dict]:
    """Run each label's missing trials, then write its winner; returns {label: winning settings}.

    A label without a search space has nothing to choose and is skipped.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from recbole_fewshot.benchmark import Cell, cell_config
    from recbole_fewshot.benchmark.runner import run_in_child
    from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source

    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    folder = Path(out).resolve() / dataset
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    split_name, _ = materialize(resolve_source(dataset, data_path), SplitSpec(shots=shots, seed=seed, **(split_options or {})),
                                folder / "splits")
    winners = {}
    for label in labels:
        space = search_space(label)
        if not space:
            continue
        cell = Cell(label, shots, seed)
        model, config = cell_config(cell, split_name, folder / "splits", candidates, dict(overrides or {}), folder)
        study_name = f"{label}|k{shots}|s{seed}|{candidates}|{split_name}"
        for number in range(len(_finished_trials(optuna, storage, study_name)), trials):
            study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
                                        sampler=optuna.samplers.TPESampler(seed=seed + number, n_startup_trials=max(3, trials // 3)))
            study.optimize(lambda trial: _objective(trial, space, model, split_name, config, folder, run_in_child),
                           n_trials=1, catch=(RuntimeError,))
        defaults_name = f"{study_name}|{DEFAULTS_STUDY}"
        if not _finished_trials(optuna, storage, defaults_name):
            defaults = optuna.create_study(study_name=defaults_name, storage=storage, direction="maximize", load_if_exists=True)
            defaults.optimize(lambda trial: _objective(trial, {}, model, split_name, config, folder, run_in_child),
                              n_trials=1, catch=(RuntimeError,))
        study = optuna.load_study(study_name=study_name, storage=storage)
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        defaults = [t for t in _finished_trials(optuna, storage, defaults_name) if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed + defaults:
            raise RuntimeError(f"tune: every trial of {label} failed; see {folder / 'log'}")
        best = max(completed, key=lambda t: (t.value, -t.number)) if completed else None
        defaults_won = bool(defaults) and (best is None or defaults[0].value > best.value)
        winners[label] = {} if defaults_won else best.params
        interrupted = sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
        _write_winner(tuned_path(out, dataset, label), label, defaults[0] if defaults_won else best, defaults_won,
                      defaults[0].value if defaults else None, len(completed), len(study.trials) - interrupted,
                      interrupted, shots, seed, candidates, config.get("valid_metric", "NDCG@20"))
    return winners


def _finished_trials(optuna, storage, study_name: str) -> list:
    """The completed or failed trials of a study (none where it does not exist yet)."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)]


def _objective(trial, space, model, split_name, config, folder, run) -> float:
    settings = suggest(trial, space)
    result = run(model, split_name, {**config, **settings}, folder, evaluate_test=False)
    trial.set_user_attr("epochs", result["epochs"])
    return result["best_valid_score"]


def _write_winner(path: Path, label: str, best, defaults_won: bool, defaults_score: float | None, completed: int,
                  finished: int, interrupted: int, shots: int, seed: int, candidates: str, metric: str) -> None:
    """The winner's file: ``trials`` counts the finished sampled trials (the budget; completed or failed),
    ``interrupted_trials`` those a stopped run left unfinished (redrawn on resume, outside the budget),
    ``defaults_valid_score`` the shipped defaults' run; where they won, ``settings`` is empty."""
    document = {
        "model": label,
        "settings": {} if defaults_won else best.params,
        "valid_score": round(float(best.value), 6),
        "valid_metric": metric,
        "trials": finished,
        "completed_trials": completed,
        "interrupted_trials": interrupted,
        "defaults_valid_score": None if defaults_score is None else round(float(defaults_score), 6),
        "best_trial": "shipped defaults" if defaults_won else best.number,
        "shots": shots,
        "seed": seed,
        "candidates": candidates,
    }
    temporary = path.with_suffix(".yaml.tmp")
    temporary.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    os.replace(temporary, path)
