"""The benchmark's cell bookkeeping, resume logic and outputs, on a tiny planted dataset."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from planted import write_planted_dataset

from recbole_fewshot import benchmark as bench
from recbole_fewshot.benchmark import runner, store

MODELS = ["Random", "Pop", "NoSuchModel"]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_planted_dataset(root / "source")
    out = root / "out"
    bench.benchmark("planted", MODELS, [0], 2, out, data_path=str(root / "source"),
                    overrides={"epochs": 1}, command="recbole-fewshot benchmark (test)",
                    split_options={"max_shots": 3}, jobs=2)  # two cells at once: rows must not be lost
    return root, out


def test_every_cell_recorded_and_failure_isolated(finished):
    _, out = finished
    rows = read_csv(out / "results.csv")
    assert sorted((r["model"], r["seed"]) for r in rows) == sorted((m, s) for m in MODELS for s in ("2020", "2021"))
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["model"] for r in failed} == {"NoSuchModel"}
    assert all("not the name of an existing model" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    for row in ok:
        for column in ("test_ndcg@20", "test_recall@10", "test_itemcoverage@20", "valid_ndcg@20", "epochs",
                       "train_seconds", "seconds_per_epoch", "eval_seconds", "peak_memory_mb"):
            assert row[column] != "", column
        assert 0.0 <= float(row["test_ndcg@20"]) <= 1.0
        assert float(row["peak_memory_mb"]) > 0


def test_markdown_means_are_the_csv_means(finished):
    _, out = finished
    rows = [r for r in read_csv(out / "results.csv") if r["status"] == "ok"]
    text = (out / "results.md").read_text()
    assert "recbole-fewshot benchmark (test)" in text
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    metrics = [c.strip() for c in header.strip("|").split("|")][2:]
    for model in ("Random", "Pop"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {model} |"))
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")][2:]
        for metric, cell in zip(metrics, cells):
            mean = float(re.match(r"([0-9.]+) ±", cell).group(1))
            values = [float(r[f"test_{metric}"]) for r in rows if r["model"] == model]
            assert len(values) == 2
            assert mean == pytest.approx(sum(values) / 2, abs=6e-5)
    assert "NoSuchModel" in text.split("## Failed cells")[1]
    assert (out / "ndcg_vs_shots.png").stat().st_size > 1000


def test_resume_skips_finished_cells_and_retries_failed(finished, monkeypatch):
    import shutil

    root, finished_out = finished
    out = root / "resume"
    shutil.copytree(finished_out, out)
    calls = []

    def fake_child(model, dataset, config, workdir, threads=None):
        calls.append(model)
        raise RuntimeError("still failing")

    monkeypatch.setattr(runner, "run_in_child", fake_child)
    before = read_csv(out / "results.csv")
    bench.benchmark("planted", MODELS, [0], 2, out, data_path=str(root / "source"),
                    overrides={"epochs": 1}, split_options={"max_shots": 3})
    assert calls == ["NoSuchModel", "NoSuchModel"]
    after = read_csv(out / "results.csv")
    assert len(after) == len(before)
    def ok_rows(rows):
        return sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (r["model"], r["seed"]))

    assert ok_rows(after) == ok_rows(before)
    calls.clear()
    bench.benchmark("planted", MODELS[:2], [0], 2, out, data_path=str(root / "source"),
                    overrides={"epochs": 2}, split_options={"max_shots": 3})
    assert calls == ["Random", "Pop", "Random", "Pop"], "changed parameters are new cells"


def test_moved_out_folder_resumes_and_another_split_is_new_cells(finished, monkeypatch):
    import shutil

    root, out = finished
    moved = root / "moved"
    shutil.copytree(out, moved)
    calls = []

    def fake_child(model, dataset, config, workdir, threads=None):
        calls.append((model, dataset))
        raise RuntimeError("not run")

    monkeypatch.setattr(runner, "run_in_child", fake_child)
    bench.benchmark("planted", MODELS[:2], [0], 2, moved, data_path=str(root / "source"),
                    overrides={"epochs": 1}, split_options={"max_shots": 3})
    assert calls == [], "the paths inside the out folder are not parameters"
    bench.benchmark("planted", MODELS[:2], [0], 1, moved, data_path=str(root / "source"),
                    overrides={"epochs": 1}, split_options={"max_shots": 3, "policy": "random"})
    assert [model for model, _ in calls] == ["Random", "Pop"], "another split of the same K and seed is new cells"
    assert all("random" in dataset for _, dataset in calls)


def test_default_and_quick_models_are_all_runnable_names():
    available = set(bench.list_models())
    assert set(bench.DEFAULT_MODELS) <= available
    assert set(bench.QUICK_MODELS) <= set(bench.DEFAULT_MODELS)
    for label in bench.DEFAULT_MODELS:
        model, _ = bench.model_spec(label)
        assert model in available


def test_every_variant_sets_only_its_models_known_settings():
    import yaml
    from recbole_fewshot import registry

    variants = sorted(bench.VARIANT_DIR.glob("*.yaml"))
    assert variants
    for path in variants:
        model, settings = bench.model_spec(path.stem)
        assert model in registry.plugin_models(), path.name
        defaults = yaml.safe_load((registry.PROPERTIES_DIR / f"{model}.yaml").read_text())
        assert set(settings) <= set(defaults), f"{path.name}: unknown {set(settings) - set(defaults)}"


def test_summary_table_is_the_csv_mean_per_model_and_shots(finished):
    _, out = finished
    rows = [r for r in read_csv(out / "results.csv") if r["status"] == "ok"]
    text = (out / "results.md").read_text()
    summary = text.split("## Summary")[1].split("\n## ")[0]
    for model in ("Random", "Pop"):
        line = next(line for line in summary.splitlines() if line.startswith(f"| {model} |"))
        mean = float(re.search(r"([0-9.]+) ±", line).group(1))
        values = [float(r["test_ndcg@20"]) for r in rows if r["model"] == model]
        assert mean == pytest.approx(sum(values) / len(values), abs=6e-5)
    assert "NoSuchModel" not in summary


def test_cells_run_at_once_never_share_a_checkpoint_file(tmp_path):
    # RecBole names a checkpoint <model>-<local time to the second>.pth: on a GPU, --jobs 6 started
    # FewShotRec-GRU and FewShotRec-CNN in one second, and the GRU cell reloaded the CNN's weights
    cells = [bench.Cell(model, shots, seed) for model in ("FewShotRec-GRU", "FewShotRec-CNN", "BPR")
             for shots in (0, 3) for seed in (2020, 2021)]
    folders = {bench.cell_config(cell, "split", tmp_path, candidates, {}, tmp_path / "out")[1]["checkpoint_dir"]
               for cell in cells for candidates in ("new", "all")}
    assert len(folders) == 2 * len(cells)
    assert all(Path(folder).parent == tmp_path / "out" / "saved" for folder in folders)


def test_cells_keep_each_models_own_training_defaults(tmp_path):
    import yaml
    from recbole_fewshot import registry

    for model in ["Heater", "CLCRec", "FewShotRec"]:
        _, config = bench.cell_config(bench.Cell(model, 3, 2020), "split", tmp_path, "new", {}, tmp_path)
        defaults = yaml.safe_load((registry.PROPERTIES_DIR / f"{model}.yaml").read_text())
        for key in ("train_batch_size", "learning_rate"):
            assert key not in config or config[key] == defaults.get(key), f"the benchmark overrides {model}'s {key}"
    _, config = bench.cell_config(bench.Cell("Heater", 3, 2020), "split", tmp_path, "new",
                                  {"train_batch_size": 64}, tmp_path)
    assert config["train_batch_size"] == 64, "the user's setting wins"


def test_a_plugin_models_changed_default_makes_new_cells(tmp_path, monkeypatch):
    from recbole_fewshot import registry

    config = {"epochs": 1, "data_path": "anywhere"}
    before = store.params_hash("FewShotRec", "split", config)
    assert store.params_hash("FewShotRec", "split", {**config, "data_path": "elsewhere"}) == before
    changed = tmp_path / "FewShotRec.yaml"
    changed.write_text(registry.model_config_file("FewShotRec").read_text().replace("max_shots: 10", "max_shots: 5"))
    monkeypatch.setattr(registry, "model_config_file", lambda model: changed if model == "FewShotRec" else None)
    assert store.params_hash("FewShotRec", "split", config) != before


def _summary_mean(out, model):
    summary = (out / "results.md").read_text().split("## Summary")[1].split("\n## ")[0]
    line = next(line for line in summary.splitlines() if line.startswith(f"| {model} |"))
    return float(re.search(r"([0-9.]+) ±", line).group(1))


def test_the_summary_reads_each_cells_current_parameters_and_the_csv_keeps_the_rest(finished, monkeypatch):
    import shutil

    root, out = finished
    rerun = root / "rerun"
    shutil.copytree(out, rerun)
    everything = read_csv(rerun / "results.csv")
    before = [r for r in everything if r["status"] == "ok"]
    old_mean = {model: sum(float(r["test_ndcg@20"]) for r in before if r["model"] == model) / 2 for model in MODELS[:2]}

    def fake_child(model, dataset, config, workdir, threads=None):
        metrics = {"ndcg@20": 0.5}
        return {"test_result": metrics, "best_valid_result": metrics, "best_valid_score": 0.5, "epochs": 2, "train_seconds": 1.0,
                "seconds_per_epoch": 0.5, "eval_seconds": 0.1, "peak_memory_mb": 1.0}

    monkeypatch.setattr(runner, "run_in_child", fake_child)
    changed = {"epochs": 2}
    bench.benchmark("planted", MODELS[:2], [0], 2, rerun, data_path=str(root / "source"), overrides=changed,
                    split_options={"max_shots": 3})
    rows = read_csv(rerun / "results.csv")
    assert len(rows) == len(everything) + 4, "the earlier rows stay in results.csv"
    for model in MODELS[:2]:
        assert _summary_mean(rerun, model) == 0.5, "only this run's parameters are summarised"
        assert f"| {model} | 2 |" in (rerun / "results.md").read_text(), "two seeds, not four"
    rows.append({**rows[-1], "dataset": "another", "test_ndcg@20": "0.9"})  # another dataset in the same folder
    store.write_rows(rerun / "results.csv", rows)
    bench.benchmark("planted", MODELS[:2], [0], 2, rerun, data_path=str(root / "source"),
                    overrides={"epochs": 1}, split_options={"max_shots": 3})  # the first parameters again: all done
    for model in MODELS[:2]:
        assert _summary_mean(rerun, model) == pytest.approx(old_mean[model], abs=6e-5)
    assert len(read_csv(rerun / "results.csv")) == len(rows)
