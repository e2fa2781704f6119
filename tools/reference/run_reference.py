"""Reference check: ColdRec's own cold-start models on this project's ml-100k split, scored like the project.

For each seed: builds the project's few-shot split of ml-100k at K = 0 (``recbole-fewshot split``),
exports it to ColdRec's format (coldrec_export.py), trains ColdRec's MF backbone for the epoch count
that is best on a 10 % warm holdout, then each of ColdRec's DeepMusic, MetaEmbedding, Heater, GAR, ALDI
and DropoutNet (ColdRec's defaults, early stopping on the valid-new items), and scores every model's
saved embeddings with an independent evaluator (evaluation.py) on the test-new items. ColdRec runs from
a working copy of a checkout at commit 18efd24e with coldrec.patch applied. Writes ``reference.md``
(the table, printed too) and ``reference.json`` (every figure) under ``--out``; with
``--project-csv`` (a benchmark results.csv) the table sets this project's figures beside ColdRec's.

    tools/reference/run_reference.sh --coldrec ../ColdRec [--seeds 2020 2021 2022] \\
        [--project-csv docs/results/ml-100k/results.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from coldrec_export import item_content, read_split, warm_holdout, write_dataset
from evaluation import PhaseRanking, phase_ranking, rank_metrics

ROOT = Path(__file__).resolve().parents[2]
PATCH = Path(__file__).with_name("coldrec.patch")
COLDREC_COMMIT = "18efd24e"
# ColdRec's model name -> this project's name for the same model
MODELS = {"DeepMusic": "DeepMusic", "MetaEmbedding": "MetaEmb", "Heater": "Heater", "GAR": "GAR",
          "ALDI": "ALDI", "DropoutNet": "DropoutNet"}
# Order in which ColdRec's util/databuilder.py numbers users and items (first appearance).
COLDREC_ID_ORDER = ["warm_train", "warm_val", "warm_test", "cold_item_val", "cold_item_test", "overall_val",
                    "overall_test"]
METRIC = "ndcg@20"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--coldrec", type=Path, help="a checkout of ColdRec at commit 18efd24e")
    parser.add_argument("--from-report", type=Path, help="an earlier run's reference.json: reuse its ColdRec figures "
                        "(no ColdRec run) and compare them with --project-csv")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020], help="split seed and ColdRec seed")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--project-csv", type=Path, help="a `recbole-fewshot benchmark` results.csv")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "reference")
    parser.add_argument("--recbole-fewshot", default=str(ROOT / ".venv" / "bin" / "recbole-fewshot"),
                        help="the project's command line")
    parser.add_argument("--min-title-films", type=int, default=5, help="a title word is content from this many films")
    parser.add_argument("--tie-draws", type=int, default=10, help="random orders of tied scores to average over")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each ColdRec run")
    args = parser.parse_args()
    if (args.coldrec is None) == (args.from_report is None):
        parser.error("give either --coldrec (run ColdRec) or --from-report (reuse an earlier run's figures)")
    return args


def checkout_commit(checkout: Path) -> str:
    """The commit of a git checkout (``unknown`` for a plain copy); stops on a commit other than the reference's."""
    if not (checkout / ".git").exists():
        return "unknown"
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    if not commit.startswith(COLDREC_COMMIT):
        sys.exit(f"{checkout} is at {commit[:8]}; the reference is ColdRec {COLDREC_COMMIT} (git checkout {COLDREC_COMMIT})")
    return commit


def patched_copy(checkout: Path, work: Path) -> Path:
    """A fresh copy of the ColdRec checkout under ``work`` with coldrec.patch applied (the checkout stays as it is)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(checkout, work, ignore=shutil.ignore_patterns(".git"))
    subprocess.run(["patch", "-p1", "--forward", "--batch", "--quiet", "-i", str(PATCH)], cwd=work, check=True)
    return work


def build_split(recbole_fewshot: str, seed: int, splits: Path, log: Path) -> Path:
    """The project's ml-100k split at K = 0 (default parameters) for ``seed``; returns its folder."""
    result = subprocess.run([recbole_fewshot, "split", "--dataset", "ml-100k", "--shots", "0", "--seed", str(seed),
                             "--out", str(splits)], check=True, capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr, encoding="utf-8")
    return splits / result.stdout.strip().splitlines()[-1]


def run_coldrec(coldrec: Path, log: Path, threads: int, *arguments: str) -> tuple[str, float]:
    """Runs ColdRec's main.py on the CPU (item cold start) with ``arguments``; returns its output and wall seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "main.py", "--use_gpu", "false", "--cold_object", "item", *arguments]
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        result = subprocess.run(command, cwd=coldrec, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"ColdRec failed (exit {result.returncode}), see {log}: {' '.join(command)}")
    return log.read_text(encoding="utf-8"), seconds


def best_validation(output: str) -> tuple[int, float]:
    """The best epoch and its validation NDCG@20 from a ColdRec log."""
    best = re.findall(r"\*Best \w+ Performance\* \nEpoch: (\d+), .*NDCG:([\d.]+)", output)
    if not best:
        raise ValueError("no validation result in ColdRec's output")
    return int(best[-1][0]), float(best[-1][1])


def coldrec_test_figures(output: str) -> dict:
    """ColdRec's own cold-start test Recall@20 and NDCG@20, as it prints them."""
    found = re.search(r"Top-20 Cold-Start Test Performance:\n.*Recall@20: ([\d.]+).*NDCG@20: ([\d.]+)", output)
    if not found:
        raise ValueError("no cold-start test figures in ColdRec's output")
    return {"recall@20": float(found.group(1)), METRIC: float(found.group(2))}


def coldrec_id_maps(folder: Path) -> tuple[dict[int, int], dict[int, int]]:
    """ColdRec's internal user and item numbering of a dataset, rebuilt as util/databuilder.py builds it."""
    users: dict[int, int] = {}
    items: dict[int, int] = {}
    for name in COLDREC_ID_ORDER:
        with open(folder / f"{name}.csv", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                users.setdefault(int(row["user"]), len(users))
                items.setdefault(int(row["item"]), len(items))
    return users, items


def saved_embedding_scores(emb: Path, dataset: str, model: str, task: PhaseRanking,
                           maps: tuple[dict[int, int], dict[int, int]]) -> np.ndarray:
    """Scores [users, items] of ``task`` from the embeddings ColdRec saved for ``model``: user . item
    (ALDI scores new items with its generated user vectors, as its batch_predict does)."""
    prefix = emb / f"{dataset}_cold_item_{model}"
    user_file = f"{prefix}_cold_user_emb.pt" if model == "ALDI" else f"{prefix}_user_emb.pt"
    user_vectors = torch.load(user_file, map_location="cpu").detach().numpy()
    item_vectors = torch.load(f"{prefix}_item_emb.pt", map_location="cpu").detach().numpy()
    users, items = maps
    return user_vectors[[users[u] for u in task.users]] @ item_vectors[[items[i] for i in task.items]].T


def run_seed(args: argparse.Namespace, coldrec: Path, seed: int) -> dict:
    """Every figure of one seed: the split, the backbone and each model."""
    logs = args.out / "logs"
    split = read_split(build_split(args.recbole_fewshot, seed, args.out / "splits", logs / f"s{seed}_split.log"))
    content, columns = item_content(split.items, args.min_title_films)
    dataset, holdout_dataset = f"ml100k_s{seed}", f"ml100k_s{seed}_holdout"
    write_dataset(coldrec, dataset, split, split.train, split.train.iloc[:0], content, logs / f"s{seed}_convert.log")
    fit, held = warm_holdout(split.train)
    write_dataset(coldrec, holdout_dataset, split, fit, held, content, logs / f"s{seed}_holdout_convert.log")
    figures: dict = {"split": split.name, "split_stats": split.manifest["stats"],
                     "content": {"columns": len(columns), "genres": sum(c.startswith("genre_") for c in columns),
                                 "year_buckets": sum(c.startswith("year_") for c in columns),
                                 "title_words": sum(c.startswith("title_") for c in columns)},
                     "models": {}}
    common = ["--seed", str(seed), "--valid_setting", "cold", "--cold_pool", "split"]

    # Backbone: the epoch count that is best on the warm holdout, then that many epochs on all of train.
    # ColdRec's MF keeps a reference to its live parameters (without --mf_clone_best), so the embeddings
    # it saves after --early_stop 0 are those of its last epoch.
    output, holdout_seconds = run_coldrec(coldrec, logs / f"s{seed}_MF_holdout.log", args.threads,
                                          "--dataset", holdout_dataset, "--model", "MF", "--seed", str(seed),
                                          "--valid_setting", "warm", "--mf_clone_best", "true")
    epochs, holdout_ndcg = best_validation(output)
    print(f"seed {seed}: MF backbone {epochs} epochs (warm-holdout NDCG@20 {holdout_ndcg:.4f})", flush=True)
    _, backbone_seconds = run_coldrec(coldrec, logs / f"s{seed}_MF.log", args.threads, "--dataset", dataset,
                                      "--model", "MF", "--epochs", str(epochs), "--early_stop", "0", *common)
    test = phase_ranking(split.test[["user", "item"]].to_numpy(), split.train[["user", "item"]].to_numpy(),
                         split.test_new_items)
    maps = coldrec_id_maps(coldrec / "data" / dataset / "cold_item")
    emb = coldrec / "emb"
    figures["backbone"] = {"epochs": epochs, "warm_holdout_ndcg@20": holdout_ndcg,
                           "holdout_seconds": round(holdout_seconds), "train_seconds": round(backbone_seconds),
                           "test": rank_metrics(saved_embedding_scores(emb, dataset, "MF", test, maps), test,
                                                tie_draws=args.tie_draws)}
    for model in args.models:
        output, seconds = run_coldrec(coldrec, logs / f"s{seed}_{model}.log", args.threads, "--dataset", dataset,
                                      "--model", model, "--backbone", "MF", *common)
        best_epoch, valid_ndcg = best_validation(output)
        row = rank_metrics(saved_embedding_scores(emb, dataset, model, test, maps), test, tie_draws=args.tie_draws)
        row.update({"coldrec_own": coldrec_test_figures(output), "best_epoch": best_epoch,
                    "valid_ndcg@20": valid_ndcg, "seconds": round(seconds)})
        figures["models"][model] = row
        print(f"seed {seed}: {model} test NDCG@20 {row[METRIC]:.4f} (ColdRec's own {row['coldrec_own'][METRIC]:.4f}; "
              f"best epoch {best_epoch}, {seconds:.0f} s)", flush=True)
    return figures


def project_figures(path: Path, seeds: list[int]) -> dict[str, dict[str, dict[int, float]]]:
    """NDCG@20 per phase (``test``, ``valid``), project model and seed at K = 0 on ml-100k (new-item
    candidates) from a benchmark results.csv: the last row of each cell, as the benchmark's own summary reads it."""
    latest: dict[tuple[str, int], dict] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row["dataset"], row["shots"], row.get("candidates", "new")) == ("ml-100k", "0", "new") \
                    and int(row["seed"]) in seeds:
                latest[(row["model"], int(row["seed"]))] = row
    figures: dict[str, dict[str, dict[int, float]]] = {"test": {}, "valid": {}}
    for (model, seed), row in latest.items():
        for phase, by_model in figures.items():
            if row["status"] == "ok" and row.get(f"{phase}_{METRIC}"):
                by_model.setdefault(model, {})[seed] = float(row[f"{phase}_{METRIC}"])
    return figures


def _mean_text(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n = {len(values)})"


def summary(per_seed: dict[int, dict], project: dict[str, dict[int, float]], models: list[str],
            project_valid: dict[str, dict[int, float]] | None = None) -> dict:
    """Per model: ColdRec's test figure and ColdRec's own figure over the seeds, the project's and their
    ratio, and both sides' best validation NDCG@20 (each by its own evaluator)."""
    rows = {}
    for model in models:
        reference = [figures["models"][model][METRIC] for figures in per_seed.values()]
        own = [figures["models"][model]["coldrec_own"][METRIC] for figures in per_seed.values()]
        mine = list(project.get(MODELS[model], {}).values())
        rows[model] = {"project_model": MODELS[model], "coldrec": reference, "coldrec_own": own, "project": mine,
                       "ratio": statistics.mean(mine) / statistics.mean(reference) if mine else None,
                       "coldrec_valid": [figures["models"][model]["valid_ndcg@20"] for figures in per_seed.values()],
                       "project_valid": list((project_valid or {}).get(MODELS[model], {}).values())}
    return rows


def markdown(rows: dict, seeds: list[int], project_csv: Path | None) -> str:
    """The side-by-side table."""
    lines = [f"Test NDCG@20 on the test-new items, ml-100k, K = 0, seeds {', '.join(map(str, seeds))} "
             f"(mean ± std over seeds where there are several).", "",
             "| model (ColdRec / project) | ColdRec | ColdRec, its own evaluator | project | project / ColdRec "
             "| valid: ColdRec | valid: project |",
             "|---|---|---|---|---|---|---|"]
    for model, row in rows.items():
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else ""
        lines.append(f"| {model} / {row['project_model']} | {_mean_text(row['coldrec'])} | "
                     f"{_mean_text(row['coldrec_own'])} | {_mean_text(row['project'])} | {ratio} | "
                     f"{_mean_text(row.get('coldrec_valid', []))} | {_mean_text(row.get('project_valid', []))} |")
    lines += ["", f"Project figures: {project_csv}." if project_csv else "Project figures: none (no --project-csv)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.from_report:
        earlier = json.loads(args.from_report.read_text(encoding="utf-8"))
        commit, args.seeds = earlier["coldrec_commit"], earlier["seeds"]
        per_seed = {int(seed): figures for seed, figures in earlier["per_seed"].items()}
    else:
        commit = checkout_commit(args.coldrec)
        coldrec = patched_copy(args.coldrec, args.out / "coldrec")
        per_seed = {seed: run_seed(args, coldrec, seed) for seed in args.seeds}
    project = project_figures(args.project_csv, args.seeds) if args.project_csv else {"test": {}, "valid": {}}
    rows = summary(per_seed, project["test"], args.models, project["valid"])
    table = markdown(rows, args.seeds, args.project_csv)
    report = {"coldrec_commit": commit, "seeds": args.seeds, "shots": 0, "metric": f"test {METRIC}",
              "tie_draws": args.tie_draws, "min_title_films": args.min_title_films, "threads": args.threads,
              "project_csv": str(args.project_csv) if args.project_csv else None,
              "wall_seconds": round(time.perf_counter() - start), "per_seed": per_seed, "summary": rows}
    (args.out / "reference.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (args.out / "reference.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"written: {args.out / 'reference.md'}, {args.out / 'reference.json'}")


if __name__ == "__main__":
    main()
