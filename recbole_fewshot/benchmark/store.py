"""results.csv: one row per finished cell, keyed by its parameters' hash so that a rerun resumes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import yaml

from recbole_fewshot.benchmark.cells import OUT_PATH_KEYS
from recbole_fewshot.pipeline import BACKBONE_FIGURES, PipelineResult

KEY_COLUMNS = ["dataset", "model", "shots", "seed", "candidates", "params"]
CELL_COLUMNS = KEY_COLUMNS[:-1]  # a cell, whatever its parameters
TIMING_COLUMNS = ["epochs", "train_seconds", "seconds_per_epoch", "eval_seconds", "peak_memory_mb"]


def params_hash(model: str, split_name: str, config: dict) -> str:
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


def read_rows(path: Path) -> list[dict]:
    """Every row of results.csv (none if there is no file yet)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict]) -> None:
    """Replace results.csv with ``rows`` at once: the key columns first, then every other column seen."""
    columns = list(KEY_COLUMNS)
    for row in rows:
        columns += [c for c in row if c not in columns]
    temporary = path.with_suffix(".csv.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def finished_row(key: tuple, result: PipelineResult) -> dict:
    """The row of a finished cell: its key, its test and valid metrics, its best valid score, its cost and,
    for a model with a warm backbone, the backbone's figures (empty for the others)."""
    row = dict(zip(KEY_COLUMNS, key), status="ok", error="")
    row.update({f"test_{k}": v for k, v in result["test_result"].items()})
    row.update({f"valid_{k}": v for k, v in result["best_valid_result"].items()})
    row.update({c: result[c] for c in ["best_valid_score", *TIMING_COLUMNS]})
    row.update({c: "" if result.get(c) is None else result[c] for c in BACKBONE_FIGURES})
    return row


def failed_row(key: tuple, error: Exception) -> dict:
    """The row of a cell that failed, with the start of its error."""
    return dict(zip(KEY_COLUMNS, key), status="failed", error=str(error)[:500])


def current_rows(rows: list[dict], dataset: str, candidates: str) -> list[dict]:
    """The rows a summary reads: of ``dataset`` and ``candidates``, the last row of each cell. results.csv
    keeps a cell's rows of earlier parameters; a run moves the rows of its finished cells last."""
    latest = {tuple(r[c] for c in CELL_COLUMNS): r for r in rows if (r["dataset"], r["candidates"]) == (dataset, candidates)}
    return list(latest.values())
