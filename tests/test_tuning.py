"""Equal-budget tuning on valid: declared spaces, resumable optuna studies, winners the benchmark reads."""

from __future__ import annotations

import math

import pytest
import yaml
from planted import write_planted_dataset

from recbole_fewshot import benchmark as bench
from recbole_fewshot.benchmark import runner
from recbole_fewshot import tuning

SPACE = {"learning_rate": ["log", 0.0001, 0.1], "dropout_prob": ["choice", 0.0, 0.5]}
FAKE_DEFAULTS = {"learning_rate": 0.1, "dropout_prob": 0.5}  # what a cell runs with where nothing is drawn: worst in SPACE


def fake_valid_score(config: dict) -> float:
    """A valid score that peaks at learning_rate 0.003 and prefers no dropout."""
    return 1.0 - (math.log10(config["learning_rate"]) - math.log10(0.003)) ** 2 - config["dropout_prob"]


@pytest.fixture
def fake_cells(monkeypatch, tmp_path):
    """The benchmark's child process replaced by a call log and ``fake_valid_score`` (over FAKE_DEFAULTS where
    a setting is not given); BPR given SPACE."""
    calls = []

    def run(model, dataset, config, workdir, threads=None, evaluate_test=True):
        calls.append({"model": model, "evaluate_test": evaluate_test, **config})
        return {"best_valid_score": fake_valid_score({**FAKE_DEFAULTS, **config}), "epochs": 1}

    monkeypatch.setattr(runner, "run_in_child", run)
    monkeypatch.setattr(tuning, "search_space", lambda label: dict(SPACE) if label == "BPR" else {})
    write_planted_dataset(tmp_path / "source")
    return calls, tmp_path


def benchmark_cell(calls: list):
    """A benchmark cell's child process replaced by a call log and fixed figures."""
    def run(model, dataset, config, workdir, threads=None, evaluate_test=True):
        calls.append({"model": model, "evaluate_test": evaluate_test, **config})
        return {"test_result": {"ndcg@20": 0.1}, "best_valid_result": {"ndcg@20": 0.2}, "best_valid_score": 0.2, "epochs": 1,
                "train_seconds": 1.0, "seconds_per_epoch": 1.0, "eval_seconds": 0.1, "peak_memory_mb": 1.0}

    return run


def test_each_trial_is_a_valid_only_cell_and_the_best_valid_trial_wins(fake_cells):
    calls, root = fake_cells
    winners = tuning.tune("planted", ["BPR", "Pop"], 4, root / "tuned", shots=0, data_path=str(root / "source"),
                          split_options={"max_shots": 3})
    assert len(calls) == 5 and {c["model"] for c in calls} == {"BPR"}, "Pop declares no space: nothing to choose"
    assert not any(c["evaluate_test"] for c in calls), "tuning never evaluates the test set"
    sampled, defaults = calls[:4], calls[4]
    assert not set(SPACE) & set(defaults), "after the budget, one run of the shipped defaults: nothing drawn"
    best = max(sampled, key=fake_valid_score)
    assert winners["BPR"] == {"learning_rate": best["learning_rate"], "dropout_prob": best["dropout_prob"]}
    for call in sampled:
        assert 0.0001 <= call["learning_rate"] <= 0.1 and call["dropout_prob"] in (0.0, 0.5)
    written = yaml.safe_load(tuning.tuned_path(root / "tuned", "planted", "BPR").read_text())
    assert written["settings"] == winners["BPR"] and written["trials"] == 4 and written["shots"] == 0
    assert written["valid_score"] == pytest.approx(fake_valid_score(best), abs=1e-6)
    assert written["defaults_valid_score"] == pytest.approx(fake_valid_score(FAKE_DEFAULTS), abs=1e-6)
    assert tuning.read_tuned(root / "tuned", "planted", "BPR") == winners["BPR"]
    assert tuning.read_tuned(root / "tuned", "planted", "Pop") is None


def test_a_study_resumes_and_draws_what_an_uninterrupted_one_would(fake_cells):
    calls, root = fake_cells
    common = dict(shots=0, data_path=str(root / "source"), split_options={"max_shots": 3})
    tuning.tune("planted", ["BPR"], 5, root / "once", **common)
    uninterrupted = [c["learning_rate"] for c in calls if "learning_rate" in c]
    calls.clear()
    tuning.tune("planted", ["BPR"], 2, root / "twice", **common)
    tuning.tune("planted", ["BPR"], 5, root / "twice", **common)
    assert len(calls) == 6, "two trials and the defaults, then only the three missing trials"
    assert [c["learning_rate"] for c in calls if "learning_rate" in c] == pytest.approx(uninterrupted, rel=1e-12), \
        "the defaults' run, kept in a study of its own, does not steer the sampler"
    calls.clear()
    tuning.tune("planted", ["BPR"], 5, root / "twice", **common)
    assert calls == [], "a finished study runs nothing"


def test_a_trial_a_stopped_run_left_unfinished_is_redrawn_and_kept_out_of_the_budget(fake_cells):
    import optuna

    calls, root = fake_cells
    common = dict(shots=0, data_path=str(root / "source"), split_options={"max_shots": 3})
    tuning.tune("planted", ["BPR"], 2, root / "tuned", **common)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / "tuned" / "planted" / "journal.log")))
    name, = (n for n in optuna.get_all_study_names(storage) if not n.endswith(tuning.DEFAULTS_STUDY))
    study = optuna.load_study(study_name=name, storage=storage)
    study.ask()  # a trial left running, as by a process killed mid-trial
    calls.clear()
    tuning.tune("planted", ["BPR"], 3, root / "tuned", **common)
    assert len(calls) == 1, "one trial more reaches the budget of three finished ones; the defaults ran already"
    written = yaml.safe_load(tuning.tuned_path(root / "tuned", "planted", "BPR").read_text())
    assert written["trials"] == 3 and written["completed_trials"] == 3 and written["interrupted_trials"] == 1


@pytest.mark.parametrize("entry, message", [
    (["uniform", 0, 1], "must be a list starting with one of"),
    (["log", 0.0, 1.0], "needs low > 0"),
    (["float", 1.0, 0.5], "low < high"),
    (["choice"], "at least one value"),
    (0.01, "must be a list"),
])
def test_a_bad_space_entry_is_named(entry, message):
    with pytest.raises(tuning.SearchSpaceError, match=message):
        tuning._check_entry("X.yaml: search_space.learning_rate", entry)


def test_every_declared_space_can_be_sampled():
    import optuna

    for label in bench.list_models():
        space = tuning.search_space(label)
        if space:
            trial = optuna.trial.FixedTrial({name: (entry[1] if entry[0] != "choice" else entry[1])
                                             for name, entry in space.items()})
            assert set(tuning.suggest(trial, space)) == set(space)


def test_the_benchmark_runs_each_model_with_its_tuned_settings(fake_cells, monkeypatch):
    calls, root = fake_cells
    tuning.tune("planted", ["BPR"], 3, root / "tuned", shots=0, data_path=str(root / "source"),
                split_options={"max_shots": 3})
    winner = tuning.read_tuned(root / "tuned", "planted", "BPR")
    calls.clear()

    monkeypatch.setattr(runner, "run_in_child", benchmark_cell(calls))
    bench.benchmark("planted", ["BPR", "Pop"], [0, 1], 1, root / "out", data_path=str(root / "source"),
                    split_options={"max_shots": 3}, tuned=root / "tuned", overrides={"dropout_prob": 0.25})
    bpr = [c for c in calls if c["model"] == "BPR"]
    assert len(bpr) == 2 and all(c["learning_rate"] == winner["learning_rate"] for c in bpr), "every K reuses it"
    assert all(c["dropout_prob"] == 0.25 for c in bpr), "the user's own override wins"
    assert all(c["evaluate_test"] for c in calls)
    text = (root / "out" / "results.md").read_text()
    assert "Tuned settings" in text and f"learning_rate: {winner['learning_rate']:.4g}" in text


def test_the_shipped_defaults_win_where_no_drawn_setting_beats_them(fake_cells, monkeypatch):
    calls, root = fake_cells
    monkeypatch.setitem(FAKE_DEFAULTS, "learning_rate", 0.003)  # the fake score's peak, which no draw hits
    monkeypatch.setitem(FAKE_DEFAULTS, "dropout_prob", 0.0)
    common = dict(shots=0, data_path=str(root / "source"), split_options={"max_shots": 3})
    winners = tuning.tune("planted", ["BPR"], 3, root / "tuned", **common)
    written = yaml.safe_load(tuning.tuned_path(root / "tuned", "planted", "BPR").read_text())
    assert winners["BPR"] == {} and written["settings"] == {} and written["best_trial"] == "shipped defaults"
    assert written["valid_score"] == written["defaults_valid_score"] == pytest.approx(1.0)
    assert tuning.read_tuned(root / "tuned", "planted", "BPR") == {}
    calls.clear()
    monkeypatch.setattr(runner, "run_in_child", benchmark_cell(calls))
    bench.benchmark("planted", ["BPR"], [0], 1, root / "out", data_path=str(root / "source"),
                    split_options={"max_shots": 3}, tuned=root / "tuned")
    assert len(calls) == 1 and not set(SPACE) & set(calls[0]), "the benchmark runs the defaults"
    assert "- BPR: its shipped defaults" in (root / "out" / "results.md").read_text()


def test_a_real_two_trial_study_on_planted_data(tmp_path):
    """Two real BPR cells in child processes: valid scores only, and a winner the benchmark can read."""
    write_planted_dataset(tmp_path / "source")
    winners = tuning.tune("planted", ["BPR"], 2, tmp_path / "tuned", shots=0, data_path=str(tmp_path / "source"),
                          overrides={"epochs": 1, "topk": [10], "metrics": ["NDCG"], "valid_metric": "NDCG@10"},
                          split_options={"max_shots": 3})
    written = yaml.safe_load(tuning.tuned_path(tmp_path / "tuned", "planted", "BPR").read_text())
    assert set(winners["BPR"]) == set(written["settings"]) in (set(), set(tuning.search_space("BPR")))
    assert written["completed_trials"] == 2 and 0.0 <= written["defaults_valid_score"] <= written["valid_score"] <= 1.0
