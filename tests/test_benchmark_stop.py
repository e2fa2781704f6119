"""SIGTERM and Ctrl-C stop a benchmark cleanly: its running cells' children end, nothing is recorded
for them, no temporary folder stays behind, and the command says how to resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

# A benchmark whose cells never finish on their own: each child sleeps (the real child would train).
DRIVER = """
import sys
from recbole_fewshot import cli
from recbole_fewshot.benchmark import runner
runner._child_command = lambda request, result: [sys.executable, "-c", "import time; time.sleep(120)"]
sys.exit(cli.main(["benchmark", "--dataset", "ml-100k", "--models", "Random", "Pop", "--shots", "0",
                   "--seeds", "1", "--jobs", "2", "--out", sys.argv[1]]))
"""


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_running_cells_and_leaves_no_temporary_folder(tmp_path, number):
    out = tmp_path / "bench"
    process = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("tmp*/request.json"))) < 2:  # both cells' children have started
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(number)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the benchmark did not stop on the signal")
    assert process.returncode == 143
    assert "the same command resumes" in stderr.strip().splitlines()[-1]
    assert not list(out.glob("tmp*")), "no temporary folder left behind"
    results = out / "results.csv"
    assert not results.exists() or "failed" not in results.read_text(), "a stopped cell is no failure"
