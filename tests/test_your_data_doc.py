"""docs/your-data.md's commands, as written there, from the shipped sample to a results table."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "your-data.md"
QUICK = ["--seeds", "1", "--epochs=2", "--backbone_epochs=3"]  # the doc's benchmark, one seed and short training


def doc_commands() -> list[list[str]]:
    """The first code block's commands (continuation lines joined, comments dropped), split into words."""
    block = re.search(r"```\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split("#")[0].split() for line in joined.splitlines() if line.strip()]


def test_the_doc_lists_convert_embed_split_benchmark():
    assert [words[1] for words in doc_commands()] == ["convert", "embed", "split", "benchmark"]


@pytest.mark.slow
def test_the_docs_commands_turn_the_sample_into_a_results_table(tmp_path):
    shutil.copytree(ROOT / "tests" / "data", tmp_path / "tests" / "data")
    for words in doc_commands():
        if words[1] == "embed":  # optional, and it needs the text extra's model: test_text.py covers it
            continue
        if words[1] == "benchmark":
            seeds = words.index("--seeds")
            words = words[:seeds] + words[seeds + 2:] + QUICK
        done = subprocess.run([sys.executable, "-m", "recbole_fewshot", *words[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(words)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    rows = pd.read_csv(tmp_path / "results" / "shop" / "results.csv")
    assert set(rows["model"]) == {"Pop", "ContentRidge", "FewShotRec-GRU"}
    assert set(rows["shots"]) == {0, 3}
    assert (rows["status"] == "ok").all(), rows[["model", "shots", "status", "error"]]
    assert rows["test_ndcg@20"].between(0, 1).all()
    assert (tmp_path / "results" / "shop" / "results.md").is_file()
