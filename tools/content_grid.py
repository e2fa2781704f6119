"""Grid of the shared content pipeline settings on valid: content_min_items x content_thresholds.

Runs each model of ``--models`` as a benchmark cell (the benchmark's split of a dataset at K shots and a
seed) for each pair of settings, with the test set never scored, and prints the best valid score
(NDCG@20): the figures behind ``DEFAULTS`` in recbole_fewshot/nn/content.py. Every cell shares one
backbone cache, so the warm backbone is trained once.

    python tools/content_grid.py --dataset ml-100k --shots 0 --models ContentRidge DeepMusic --out /tmp/content-grid
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from recbole_fewshot.benchmark import Cell, _run_in_child, cell_config
from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--models", nargs="+", default=["ContentRidge"])
    parser.add_argument("--min-items", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--thresholds", type=int, nargs="+", default=[0, 8, 16, 32])
    parser.add_argument("--out", default="content-grid")
    args = parser.parse_args()

    out = Path(args.out).resolve()
    name, _ = materialize(resolve_source(args.dataset, args.data_path), SplitSpec(shots=args.shots, seed=args.seed),
                          out / "splits")
    print(f"{name}: best valid NDCG@20 (test never scored)")
    print("| model | content_min_items | content_thresholds | valid NDCG@20 | epochs |")
    print("|---|---|---|---|---|")
    for model_label, min_items, thresholds in itertools.product(args.models, args.min_items, args.thresholds):
        settings = {"content_min_items": min_items, "content_thresholds": thresholds,
                    "backbone_cache_dir": str(out / "backbones")}
        model, config = cell_config(Cell(model_label, args.shots, args.seed), name, out / "splits", "new", settings, out)
        result = _run_in_child(model, name, config, out, evaluate_test=False)
        print(f"| {model_label} | {min_items} | {thresholds} | {result['best_valid_score']:.4f} | {result['epochs']} |",
              flush=True)


if __name__ == "__main__":
    main()
