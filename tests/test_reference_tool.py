"""tools/reference/run_reference.py --from-report: an earlier ColdRec run compared with a benchmark's rows."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "reference" / "run_reference.py"
COLDREC = {"DeepMusic": (0.30, 0.32), "MetaEmbedding": (0.29, 0.31), "Heater": (0.28, 0.30), "GAR": (0.27, 0.29),
           "ALDI": (0.25, 0.27), "DropoutNet": (0.20, 0.22)}


def test_from_report_reuses_the_reference_figures_and_reads_test_and_valid_rows(tmp_path):
    models = {name: {"ndcg@20": test, "coldrec_own": {"ndcg@20": test}, "valid_ndcg@20": valid}
              for name, (test, valid) in COLDREC.items()}
    report = {"coldrec_commit": "18efd24e", "seeds": [2020, 2021],
              "per_seed": {"2020": {"models": models}, "2021": {"models": models}}}
    (tmp_path / "reference.json").write_text(json.dumps(report), encoding="utf-8")
    header = ["dataset", "model", "shots", "seed", "candidates", "params", "status", "test_ndcg@20", "valid_ndcg@20"]
    rows = [["ml-100k", "DeepMusic", "0", "2020", "new", "a", "ok", "0.27", "0.33"],
            ["ml-100k", "DeepMusic", "0", "2021", "new", "a", "ok", "0.25", "0.35"],
            ["ml-100k", "DeepMusic", "3", "2020", "new", "b", "ok", "0.90", "0.90"]]  # another K: not read
    with open(tmp_path / "results.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    result = subprocess.run([sys.executable, str(TOOL), "--from-report", str(tmp_path / "reference.json"),
                             "--project-csv", str(tmp_path / "results.csv"), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, check=True)
    line = next(row for row in result.stdout.splitlines() if row.startswith("| DeepMusic / DeepMusic"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1].startswith("0.3000 ± 0.0000"), "ColdRec's test figure, from the report"
    assert cells[3].startswith("0.2600 ± 0.0141"), "the project's K = 0 test rows only"
    assert cells[4] == "0.87"
    assert cells[5].startswith("0.3200") and cells[6].startswith("0.3400 ± 0.0141"), "valid: both sides"
    assert json.loads((tmp_path / "out" / "reference.json").read_text())["summary"]["DeepMusic"]["project"] == [0.27, 0.25]


def test_coldrec_or_an_earlier_report_is_required():
    result = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True)
    assert result.returncode != 0 and "--coldrec" in result.stderr and "--from-report" in result.stderr
