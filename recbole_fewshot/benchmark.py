"""The benchmark: models x shots x seeds on few-shot splits, into a CSV, a Markdown table and a plot.

Every cell (model, K, seed) runs RecBole's own pipeline (``Config``, ``create_dataset``,
``data_preparation``, ``get_model``, ``get_trainer``, ``fit``, ``evaluate``: the steps of
``run_recbole``, timed one by one) in a child process, so one failing cell cannot stop the others,
its peak memory is its own, and RecBole's chatter goes to its log file. All models of one (K, seed)
share one split. A cell already in ``results.csv`` with the same parameters is skipped, so an
interrupted benchmark resumes: SIGTERM or Ctrl-C stops the running cells' children, records nothing for
them, leaves no temporary folder and ends the run (``BenchmarkStopped``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
KEY_COLUMNS = ["dataset", "model", "shots", "seed", "candidates", "params"]
CELL_COLUMNS = KEY_COLUMNS[:-1]  # a cell, whatever its parameters
TIMING_COLUMNS = ["epochs", "train_seconds", "seconds_per_epoch", "eval_seconds", "peak_memory_mb"]
BASELINES = ["Random", "Pop", "ItemKNN", "BPR", "NeuMF", "LightGCN", "MultiVAE", "ENMF"]
PEERS = ["DropoutNet", "Heater", "MetaEmb", "MWUF", "LWA", "NLBA", "DeepMusic", "CLCRec", "CVAR", "ALDI", "GAR"]
FLOORS = ["ContentProfile", "ContentKNN", "ContentRidge"]
DEFAULT_MODELS = BASELINES + FLOORS + PEERS + ["FewShotRec-GRU", "FewShotRec-CNN"]
# The main job (`make run`): a few models, K = 0 and 3, one seed, short training.
QUICK_MODELS = ["Random", "Pop", "BPR", "ContentRidge", "DeepMusic", "FewShotRec-GRU", "FewShotRec-CNN"]
QUICK_OVERRIDES = {"epochs": 10, "stopping_step": 3}  # a warm backbone still trains to its early stop


@dataclass(frozen=True)
class Cell:
    """One benchmark run: a model label (a model name or a variant) on the split of (shots, seed)."""

    model: str
    shots: int
    seed: int


def variant_spec(label: str) -> tuple[str, dict] | None:
    """The RecBole model name and settings of a variant in ``configs/variants`` (FewShotRec-CNN), or None."""
    variant = CONFIG_DIR / "variants" / f"{label}.yaml"
    if not variant.is_file():
        return None
    config = yaml.safe_load(variant.read_text(encoding="utf-8")) or {}
    return config.pop("model"), config


def model_spec(label: str) -> tuple[str, dict]:
    """The RecBole model name and config of a label: a model, or a variant in ``configs/variants``."""
    variant = variant_spec(label)
    if variant is not None:
        return variant
    model_file = CONFIG_DIR / "models" / f"{label}.yaml"
    config = (yaml.safe_load(model_file.read_text(encoding="utf-8")) if model_file.is_file() else None) or {}
    config.pop("search_space", None)  # the tuner's, not RecBole's
    return label, config


def list_models() -> list[str]:
    """Every built-in and plugin model and every benchmark variant."""
    from recbole_fewshot import registry

    variants = sorted(p.stem for p in (CONFIG_DIR / "variants").glob("*.yaml"))
    return sorted(registry.plugin_models()) + variants + list(registry.builtin_models())


OUT_PATH_KEYS = ("data_path", "checkpoint_dir", "log_root", "backbone_cache_dir")  # set from ``out`` by cell_config
# Per-cell figures of a model with a warm backbone (empty for the others): its early stop on the warm holdout.
BACKBONE_COLUMNS = ["backbone_best_epoch", "backbone_holdout_ndcg"]


def _params_hash(model: str, split_name: str, config: dict) -> str:
    """A cell's parameters: the model, the split (its name carries the split spec and the source's
    fingerprint), the config, less the paths inside ``out`` (so a moved out folder still resumes), and a
    plugin model's own defaults, the shared backbone settings included (so a row made before a default
    changed is not taken for a new one; built-in models' defaults are fixed by the pinned RecBole)."""
    from recbole_fewshot.registry import model_config_files

    portable = {key: value for key, value in config.items() if key not in OUT_PATH_KEYS}
    defaults_files = model_config_files(model)
    if defaults_files:
        portable["model_defaults"] = {}
        for path in defaults_files:
            portable["model_defaults"].update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    text = json.dumps({"model": model, "split": split_name, **portable}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cell_config(cell: Cell, split_name: str, split_path: Path, candidates: str, base: dict, out: Path,
                tuned: dict | None = None) -> tuple[str, dict]:
    """The model name and the full config_dict of a cell: the benchmark's settings, the model's, its
    ``tuned`` settings (chosen on valid by ``tune``), then ``base`` (the user's)."""
    model, model_config = model_spec(cell.model)
    config = {
        **yaml.safe_load((CONFIG_DIR / "benchmark.yaml").read_text(encoding="utf-8")),
        **model_config,
        **(tuned or {}),
        **base,
        "seed": cell.seed,
        "data_path": str(split_path),
        "fewshot_candidates": candidates,
        # one folder per cell: RecBole names a checkpoint <model>-<local time to the second>.pth, so cells
        # of one model (two variants, two seeds) started in the same second by --jobs would share a file
        "checkpoint_dir": str(out / "saved" / f"{cell.model}-k{cell.shots}-s{cell.seed}-{candidates}"),
        "log_root": str(out / "log"),
    }
    from recbole_fewshot.registry import has_backbone

    if has_backbone(model):  # one backbone per split, seed and settings, shared by the models of a benchmark
        config.setdefault("backbone_cache_dir", str(out / "backbones"))
    return model, config


def run_cell(model: str, dataset: str, config_dict: dict, evaluate_test: bool = True) -> dict:
    """RecBole's run_recbole pipeline for one cell, with timings. Runs in the child process.
    With ``evaluate_test`` False (tuning) the test set is never scored: ``test`` is empty."""
    import resource

    import recbole_fewshot  # noqa: F401
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    config = Config(model=model, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False) if evaluate_test else {}
    eval_seconds = time.perf_counter() - start
    epochs = len(trainer.train_loss_dict)
    return {
        "test": dict(test_result),
        "valid": dict(best_valid_result or {}),
        "best_valid_score": float(best_valid_score),
        "epochs": epochs,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(epochs, 1),
        "eval_seconds": eval_seconds,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **{column: getattr(net, column, None) for column in BACKBONE_COLUMNS},
    }


def _child_main(request_file: str, result_file: str) -> None:
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    result = run_cell(request["model"], request["dataset"], request["config"], request["evaluate_test"])
    Path(result_file).write_text(json.dumps(result), encoding="utf-8")


class BenchmarkStopped(RuntimeError):
    """A benchmark stopped by SIGTERM or Ctrl-C; the finished cells are in results.csv."""


class _Children:
    """The benchmark's running child processes, and whether a stop was asked for."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Refuse new children and terminate the running ones."""
        with self.lock:
            self.stopping.set()
            for child in self.running:
                child.terminate()


_CHILDREN = _Children()


def _child_command(request: Path, result: Path) -> list[str]:
    return [sys.executable, "-W", "ignore", "-c",
            "import sys; from recbole_fewshot.benchmark import _child_main; _child_main(sys.argv[1], sys.argv[2])",
            str(request), str(result)]


def _run_in_child(model: str, dataset: str, config: dict, workdir: Path, threads: int | None = None,
                  evaluate_test: bool = True) -> dict:
    env = dict(os.environ)
    if threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        request, result = Path(folder) / "request.json", Path(folder) / "result.json"
        request.write_text(json.dumps({"model": model, "dataset": dataset, "config": config,
                                            "evaluate_test": evaluate_test}), encoding="utf-8")
        with _CHILDREN.lock:
            if _CHILDREN.stopping.is_set():
                raise BenchmarkStopped("stopped before the cell started")
            child = subprocess.Popen(_child_command(request, result), cwd=workdir, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, env=env)
            _CHILDREN.running.add(child)
        try:
            stdout, stderr = child.communicate()
        finally:
            with _CHILDREN.lock:
                _CHILDREN.running.discard(child)
        if _CHILDREN.stopping.is_set():
            raise BenchmarkStopped("stopped while the cell ran")
        if child.returncode != 0 or not result.is_file():
            lines = (stderr or stdout).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"child exited with {child.returncode}")
        return json.loads(result.read_text(encoding="utf-8"))


class _StopOnSignals:
    """While active, SIGTERM and SIGINT stop the benchmark's children instead of killing the process
    (the main thread then ends the run); the previous handlers come back on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self):
        _CHILDREN.stopping.clear()
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, lambda *_: _CHILDREN.stop())
        return self

    def __exit__(self, *exc_info):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        _CHILDREN.stopping.clear()


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_rows(path: Path, rows: list[dict]) -> None:
    columns = list(KEY_COLUMNS)
    for row in rows:
        columns += [c for c in row if c not in columns]
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def current_rows(rows: list[dict], dataset: str, candidates: str) -> list[dict]:
    """The rows a summary reads: of ``dataset`` and ``candidates``, the last row of each cell. results.csv
    keeps a cell's rows of earlier parameters; a run moves the rows of its finished cells last."""
    latest = {tuple(r[c] for c in CELL_COLUMNS): r for r in rows if (r["dataset"], r["candidates"]) == (dataset, candidates)}
    return list(latest.values())


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def summarise(rows: list[dict]) -> dict:
    """Mean and std over seeds of every test metric: {(shots, model): {metric: (mean, std, n)}}."""
    groups: dict[tuple[int, str], dict[str, list[float]]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        group = groups.setdefault((int(row["shots"]), row["model"]), {})
        for column, value in row.items():
            if column.startswith("test_") and value not in ("", None):
                group.setdefault(column[5:], []).append(float(value))
    return {key: {m: (*_mean_std(v), len(v)) for m, v in metrics.items()} for key, metrics in groups.items()}


def write_markdown(rows: list[dict], path: Path, command: str, split_stats: dict[int, dict], candidates: str,
                   tuned: Mapping[str, dict] | None = None) -> None:
    """results.md: per K a table of mean ± std over seeds, best per column in bold, and the settings each
    model won on valid where ``tuned`` has them."""
    summary = summarise(rows)
    lines = [f"# Few-shot new-item benchmark (candidates: {candidates})", "", "```", command, "```", ""]
    failed = [r for r in rows if r.get("status") != "ok"]
    lines += summary_table(summary) + [""]
    for shots in sorted({k for k, _ in summary}):
        stats = split_stats.get(shots, {})
        lines += [f"## K = {shots}", ""]
        if stats:
            lines += [
                f"Split: {stats.get('items')} items, {stats.get('users')} users; new items valid "
                f"{stats.get('valid_new_items')} / test {stats.get('test_new_items')}; test queries "
                f"{stats.get('test_query_interactions')} from {stats.get('test_users')} users (seed of the first split).",
                "",
            ]
        models = [m for k, m in sorted(summary) if k == shots]
        metrics = sorted({metric for m in models for metric in summary[(shots, m)]},
                         key=lambda name: (name.split("@")[0], int(name.split("@")[1]) if "@" in name else 0))
        best = {metric: max(summary[(shots, m)].get(metric, (-1,))[0] for m in models) for metric in metrics}
        lines.append("| model | seeds | " + " | ".join(metrics) + " |")
        lines.append("|---|---|" + "---|" * len(metrics))
        for model in models:
            cells = []
            for metric in metrics:
                mean, std, _ = summary[(shots, model)].get(metric, (float("nan"), 0.0, 0))
                text = f"{mean:.4f} ± {std:.4f}"
                cells.append(f"**{text}**" if mean == best[metric] else text)
            seeds = max(n for _, _, n in summary[(shots, model)].values())
            lines.append(f"| {model} | {seeds} | " + " | ".join(cells) + " |")
        lines.append("")
    if failed:
        lines += ["## Failed cells", ""] + [f"- {r['model']} K={r['shots']} seed={r['seed']}: {r.get('error')}" for r in failed] + [""]
    if tuned:
        lines += ["## Tuned settings (chosen on valid)", ""]
        lines += [f"- {model}: " + ", ".join(f"{key}: {_setting(value)}" for key, value in sorted(settings.items()))
                  for model, settings in sorted(tuned.items())] + [""]
    timing = _timing_lines(rows)
    if timing:
        lines += ["## Cost (mean over cells)", "", "| model | epochs | train s | s/epoch | eval s | peak MB |",
                  "|---|---|---|---|---|---|"] + timing + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _setting(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_table(summary: dict, metric: str = "ndcg@20") -> list[str]:
    """One row per model, one column per K: ``metric``'s mean ± std over seeds, the best per K in bold."""
    all_shots = sorted({k for k, _ in summary})
    models = sorted({m for _, m in summary})
    best = {k: max(summary[(k, m)][metric][0] for m in models if metric in summary.get((k, m), {})) for k in all_shots}
    lines = [f"## Summary: test {metric.upper()}, mean ± std over seeds", "",
             "| model | " + " | ".join(f"K = {k}" for k in all_shots) + " |", "|---|" + "---|" * len(all_shots)]
    for model in models:
        cells = []
        for k in all_shots:
            if metric not in summary.get((k, model), {}):
                cells.append("–")
                continue
            mean, std, n = summary[(k, model)][metric]
            text = f"{mean:.4f} ± {std:.4f}" + (f" (n={n})" if n < max(v[metric][2] for v in summary.values() if metric in v) else "")
            cells.append(f"**{text}**" if mean == best[k] else text)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _timing_lines(rows: list[dict]) -> list[str]:
    lines = []
    for model in sorted({r["model"] for r in rows if r.get("status") == "ok"}):
        mine = [r for r in rows if r["model"] == model and r.get("status") == "ok"]
        means = [_mean_std([float(r[c]) for r in mine])[0] for c in TIMING_COLUMNS]
        lines.append(f"| {model} | {means[0]:.1f} | {means[1]:.1f} | {means[2]:.2f} | {means[3]:.2f} | {means[4]:.0f} |")
    return lines


def plot(rows: list[dict], path: Path, metric: str = "ndcg@20") -> None:
    """NDCG@20 against K, one line per model, error bars of one std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows)
    models = sorted({m for _, m in summary})
    figure, axis = plt.subplots(figsize=(9, 5))
    colours, markers, styles = plt.get_cmap("tab20").colors, "osD^v<>p", ("-", "--", ":")
    for index, model in enumerate(models):  # 20 colours x line styles: no two models look alike
        points = sorted((k, *summary[(k, m)][metric][:2]) for k, m in summary if m == model and metric in summary[(k, m)])
        if points:
            shots, means, stds = zip(*points)
            axis.errorbar(shots, means, yerr=stds, capsize=3, label=model, color=colours[index % 20],
                          marker=markers[index % len(markers)], linestyle=styles[index // 20 % len(styles)], alpha=0.9)
    axis.set_xlabel("K (support interactions per new item)")
    axis.set_ylabel(metric.upper())
    axis.set_title("New-item recommendation vs shots")
    axis.set_xticks(sorted({k for k, _ in summary}))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    os.replace(temporary, path)


def benchmark(dataset: str, models: Sequence[str], shots: Sequence[int], seeds: int, out: str | os.PathLike,
              data_path: str | None = None, candidates: str = "new", config_files: Sequence[str] = (),
              overrides: dict | None = None, command: str = "", split_options: dict | None = None,
              jobs: int = 1, tuned: str | os.PathLike | None = None) -> list[dict]:
    """Run every missing cell, then write results.csv, results.md and ndcg_vs_shots.png under ``out``.

    results.csv keeps every row; results.md and the plot summarise, for ``dataset`` and ``candidates``, each
    cell's last row: a cell of this run is read with this run's parameters, even where an earlier run
    with other parameters left rows (``current_rows``).

    ``jobs`` cells run at once, each child with ``cpu_count // jobs`` threads (unless OMP_NUM_THREADS
    is set); their timings are then contended, so timing figures want ``jobs=1``.

    ``tuned`` is a ``tune`` output folder: each model runs with the settings it won there on valid (the
    user's ``overrides`` still win), and results.md lists them.
    """
    from recbole_fewshot.tuning import read_tuned

    from tqdm import tqdm

    from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = {}
    for file in config_files:
        base.update(yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {})
    base.update(overrides or {})
    results_path = out / "results.csv"
    rows = _read_rows(results_path)
    done = {tuple(r[c] for c in KEY_COLUMNS) for r in rows if r.get("status") == "ok"}
    source = resolve_source(dataset, data_path)
    split_stats: dict[int, dict] = {}
    tuned_settings: dict[str, dict] = {}
    pending = []
    finished = set()
    for cell in [Cell(m, k, s) for k in shots for s in range(2020, 2020 + seeds) for m in models]:
        spec = SplitSpec(shots=cell.shots, seed=cell.seed, **(split_options or {}))
        split_name, manifest = materialize(source, spec, out / "splits")
        split_stats.setdefault(cell.shots, manifest["stats"])
        winner = read_tuned(tuned, dataset, cell.model) if tuned else None
        if winner:
            tuned_settings[cell.model] = winner
        model, config = cell_config(cell, split_name, out / "splits", candidates, base, out, winner)
        key = (dataset, cell.model, str(cell.shots), str(cell.seed), candidates, _params_hash(model, split_name, config))
        if key not in done:
            pending.append((cell, key, model, split_name, config))
        else:
            finished.add(key)
    if finished:  # this run's parameters are the current ones of its finished cells
        rows = sorted(rows, key=lambda r: tuple(r[c] for c in KEY_COLUMNS) in finished)  # stable: moved last
        _write_rows(results_path, rows)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    progress = tqdm(total=len(pending), desc="cells", unit="cell", file=sys.stderr)
    stopped = False
    with _StopOnSignals(), ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait for the children
        futures = {pool.submit(_run_in_child, model, name, config, out, threads): (cell, key)
                   for cell, key, model, name, config in pending}
        for future in as_completed(futures):
            cell, key = futures[future]
            row = dict(zip(KEY_COLUMNS, key))
            try:
                result = future.result()
            except BenchmarkStopped:  # nothing is recorded for a cell stopped by a signal
                stopped = True
                continue
            except Exception as error:  # one failing cell is recorded; the others go on
                row.update(status="failed", error=str(error)[:500])
                tqdm.write(f"FAILED {cell.model} K={cell.shots} seed={cell.seed}: {row['error']}")
            else:
                row.update(status="ok", error="")
                row.update({f"test_{k}": v for k, v in result["test"].items()})
                row.update({f"valid_{k}": v for k, v in result["valid"].items()})
                row.update({c: result[c] for c in ["best_valid_score", *TIMING_COLUMNS]})
                row.update({c: "" if result.get(c) is None else result[c] for c in BACKBONE_COLUMNS})
                ndcg = result["test"].get("ndcg@20", result["test"].get("ndcg@10"))
                tqdm.write(f"{cell.model} K={cell.shots} seed={cell.seed}: test NDCG {ndcg} "
                           f"({result['epochs']} epochs, {result['train_seconds']:.0f}s)")
            rows = [r for r in rows if tuple(r[c] for c in KEY_COLUMNS) != key] + [row]
            _write_rows(results_path, rows)
            progress.update()
    progress.close()
    if stopped:
        done_now = sum(1 for r in rows if r.get("status") == "ok")
        raise BenchmarkStopped(f"benchmark stopped by a signal; {done_now} finished cells are in {results_path}: "
                               "the same command resumes")
    current = current_rows(rows, dataset, candidates)
    write_markdown(current, out / "results.md", command, split_stats, candidates, tuned_settings)
    plot(current, out / "ndcg_vs_shots.png")
    return rows

