"""Grid of the shared content pipeline settings on valid: content_min_items x content_thresholds x content_pooling.

Runs each model of ``--models`` as a benchmark cell (the benchmark's split of a dataset at K shots and a
seed) for each pair of settings, with the test set never scored, and prints the best valid score
(NDCG@20): the figures behind ``DEFAULTS`` in recbole_fewshot/nn/content.py. Every cell shares one
backbone cache, so the warm backbone is trained once.

    python tools/content_grid.py --dataset ml-100k --shots 0 --models ContentRidge DeepMusic --out /tmp/content-grid
    python tools/content_grid.py --shots 0 --models DeepMusic --min-items 10 --thresholds 16 --pooling mean sum \
        --seeds 2020 2021 2022 --out /tmp/content-grid
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from recbole_fewshot.benchmark import Cell, cell_config
from recbole_fewshot.benchmark.runner import run_in_child
from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020])
    parser.add_argument("--models", nargs="+", default=["ContentRidge"])
    parser.add_argument("--min-items", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--thresholds", type=int, nargs="+", default=[0, 8, 16, 32])
    parser.add_argument("--pooling", nargs="+", default=["sum"], choices=["sum", "mean"])
    parser.add_argument("--out", default="content-grid")
    args = parser.parse_args()

    out = Path(args.out).resolve()
    print("best valid NDCG@20 (test never scored)")
    print("| model | seed | content_min_items | content_thresholds | content_pooling | valid NDCG@20 | epochs |")
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        name, _ = materialize(resolve_source(args.dataset, args.data_path), SplitSpec(shots=args.shots, seed=seed),
                              out / "splits")
        for model_label, min_items, thresholds, pooling in itertools.product(args.models, args.min_items,
                                                                             args.thresholds, args.pooling):
            settings = {"content_min_items": min_items, "content_thresholds": thresholds, "content_pooling": pooling,
                        "backbone_cache_dir": str(out / "backbones")}
            model, config = cell_config(Cell(model_label, args.shots, seed), name, out / "splits", "new", settings, out)
            result = run_in_child(model, name, config, out, evaluate_test=False)
            print(f"| {model_label} | {seed} | {min_items} | {thresholds} | {pooling} | "
                  f"{result['best_valid_score']:.4f} | {result['epochs']} |", flush=True)


if __name__ == "__main__":
    main()
