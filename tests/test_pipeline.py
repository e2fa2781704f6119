"""The shared pipeline: ``run``, a benchmark cell and a tuning trial are one path, so they score a cell alike."""

from __future__ import annotations

import ast
import sys

import pytest
import yaml

from recbole_fewshot import benchmark as bench
from recbole_fewshot.benchmark import store
from recbole_fewshot.cli import main
from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source
from recbole_fewshot.pipeline import run_pipeline

SETTINGS = {"epochs": 2, "embedding_size": 8, "gpu_id": "", "use_gpu": False}


def printed_result(lines: list[str], label: str) -> dict:
    return ast.literal_eval(next(line for line in lines if line.startswith(label))[len(label):])


def test_run_a_benchmark_cell_and_a_valid_only_run_score_a_cell_alike(planted_source, in_tmp, capsys, monkeypatch):
    out = in_tmp / "bench"
    bench.benchmark("planted", ["BPR"], [1], 1, out, data_path=str(planted_source), overrides=SETTINGS,
                    split_options={"max_shots": 3})
    [row] = store.read_rows(out / "results.csv")
    assert row["status"] == "ok" and float(row["valid_ndcg@20"]) > 0
    assert int(row["epochs"]) == 2 and float(row["train_seconds"]) > 0 and float(row["peak_memory_mb"]) > 0

    # the same cell (split, seed and settings) through `recbole-fewshot run`, its config as a config file
    name, _ = materialize(resolve_source("planted", str(planted_source)), SplitSpec(shots=1, seed=2020, max_shots=3),
                          out / "splits")
    model, config = bench.cell_config(bench.Cell("BPR", 1, 2020), name, out / "splits", "new", SETTINGS, in_tmp / "run")
    config_file = in_tmp / "cell.yaml"
    config_file.write_text(yaml.safe_dump(config))
    monkeypatch.setattr(sys, "argv", ["recbole-fewshot"])
    assert main(["run", "--model", model, "--dataset", name, "--config-files", str(config_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    valid, test = printed_result(lines, "best valid: "), printed_result(lines, "test result: ")
    assert valid and test
    for metric, value in valid.items():
        assert float(row[f"valid_{metric}"]) == pytest.approx(value, abs=1e-6), metric
    for metric, value in test.items():
        assert float(row[f"test_{metric}"]) == pytest.approx(value, abs=1e-6), metric

    # as a tuning trial runs it: valid only, the test set never scored
    result = run_pipeline(model, name, config_dict={**config, "checkpoint_dir": str(in_tmp / "trial")},
                          evaluate_test=False, show_progress=False)
    assert result["test_result"] == {}
    assert result["best_valid_score"] == pytest.approx(float(row["best_valid_score"]), abs=1e-6)
    assert result["best_valid_result"] == pytest.approx(valid, abs=1e-6)
    assert result["epochs"] == 2 and result["seconds_per_epoch"] == pytest.approx(result["train_seconds"] / 2)
    assert result["backbone_best_epoch"] is None, "BPR has no warm backbone"
