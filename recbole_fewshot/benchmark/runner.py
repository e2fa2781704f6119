"""Running cells: each in a child process (``python -c``), a few at once, and stopping them all on SIGTERM
or Ctrl-C; :func:`benchmark` runs the missing cells of a benchmark into results.csv and its summaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

from recbole_fewshot.benchmark.cells import Cell, cell_config
from recbole_fewshot.benchmark.report import plot, write_markdown
from recbole_fewshot.benchmark.store import (KEY_COLUMNS, current_rows, failed_row, finished_row, params_hash,
                                             read_rows, write_rows)
from recbole_fewshot.pipeline import PipelineResult, run_pipeline


class BenchmarkStopped(RuntimeError):
    """A benchmark stopped by SIGTERM or Ctrl-C; the finished cells are in results.csv."""


def _child_main(request_file: str, result_file: str) -> None:
    """The child process: one cell through the pipeline (no progress bars), its result written as JSON."""
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    result = run_pipeline(request["model"], request["dataset"], config_dict=request["config"],
                          evaluate_test=request["evaluate_test"], show_progress=False)
    Path(result_file).write_text(json.dumps(result), encoding="utf-8")


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
            "import sys; from recbole_fewshot.benchmark.runner import _child_main; _child_main(sys.argv[1], sys.argv[2])",
            str(request), str(result)]


def run_in_child(model: str, dataset: str, config: dict, workdir: Path, threads: int | None = None,
                 evaluate_test: bool = True) -> PipelineResult:
    """One cell's pipeline in a child process started in ``workdir`` (``threads``: its OMP_NUM_THREADS,
    unless set); raises RuntimeError with the child's last line of output if it fails, and
    BenchmarkStopped if a stop was asked for."""
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
    from tqdm import tqdm

    from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source
    from recbole_fewshot.tuning import read_tuned

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = {}
    for file in config_files:
        base.update(yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {})
    base.update(overrides or {})
    results_path = out / "results.csv"
    rows = read_rows(results_path)
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
        if winner is not None:
            tuned_settings[cell.model] = winner
        model, config = cell_config(cell, split_name, out / "splits", candidates, base, out, winner)
        key = (dataset, cell.model, str(cell.shots), str(cell.seed), candidates, params_hash(model, split_name, config))
        if key not in done:
            pending.append((cell, key, model, split_name, config))
        else:
            finished.add(key)
    if finished:  # this run's parameters are the current ones of its finished cells
        rows = sorted(rows, key=lambda r: tuple(r[c] for c in KEY_COLUMNS) in finished)  # stable: moved last
        write_rows(results_path, rows)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    progress = tqdm(total=len(pending), desc="cells", unit="cell", file=sys.stderr)
    stopped = False
    with _StopOnSignals(), ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait for the children
        futures = {pool.submit(run_in_child, model, name, config, out, threads): (cell, key)
                   for cell, key, model, name, config in pending}
        for future in as_completed(futures):
            cell, key = futures[future]
            try:
                result = future.result()
            except BenchmarkStopped:  # nothing is recorded for a cell stopped by a signal
                stopped = True
                continue
            except Exception as error:  # one failing cell is recorded; the others go on
                row = failed_row(key, error)
                tqdm.write(f"FAILED {cell.model} K={cell.shots} seed={cell.seed}: {row['error']}")
            else:
                row = finished_row(key, result)
                ndcg = result["test_result"].get("ndcg@20", result["test_result"].get("ndcg@10"))
                tqdm.write(f"{cell.model} K={cell.shots} seed={cell.seed}: test NDCG {ndcg} "
                           f"({result['epochs']} epochs, {result['train_seconds']:.0f}s)")
            rows = [r for r in rows if tuple(r[c] for c in KEY_COLUMNS) != key] + [row]
            write_rows(results_path, rows)
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

