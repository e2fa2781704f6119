"""The benchmark: models x shots x seeds on few-shot splits, into a CSV, a Markdown table and a plot.

Every cell (model, K, seed) runs the shared pipeline (:mod:`recbole_fewshot.pipeline`: RecBole's
``run_recbole`` steps, fit and evaluation timed) in a child process, so one failing cell cannot stop the
others, its peak memory is its own, and RecBole's chatter goes to its log file. All models of one (K, seed)
share one split. A cell already in ``results.csv`` with the same parameters is skipped, so an interrupted
benchmark resumes: SIGTERM or Ctrl-C stops the running cells' children, records nothing for them, leaves
no temporary folder and ends the run (``BenchmarkStopped``).

* :mod:`.cells`: model labels, variants and each cell's config;
* :mod:`.runner`: child processes, the clean stop, and :func:`benchmark` itself;
* :mod:`.store`: results.csv, its parameter hashes and rows;
* :mod:`.report`: results.md and ndcg_vs_shots.png;
* :mod:`.speed`: ``bench-speed``, FewShotRec's cost against BPR's in one process.
"""

from recbole_fewshot.benchmark.cells import (BENCHMARK_CONFIG_DIR, DEFAULT_MODELS, QUICK_MODELS, QUICK_OVERRIDES,
                                             VARIANT_DIR, Cell, cell_config, list_models, model_spec, variant_spec)
from recbole_fewshot.benchmark.runner import BenchmarkStopped, benchmark

__all__ = ["BENCHMARK_CONFIG_DIR", "VARIANT_DIR", "DEFAULT_MODELS", "QUICK_MODELS", "QUICK_OVERRIDES", "BenchmarkStopped", "Cell", "benchmark",
           "cell_config", "list_models", "model_spec", "variant_spec"]
