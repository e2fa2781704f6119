"""Grid of the shared backbone settings on a warm holdout: learning rate x weight decay.

Trains the warm BPR backbone (recbole_fewshot/trainer/backbone.py) of the benchmark's split of a dataset
at K shots and a seed, for each pair of ``--learning-rates`` and ``--weight-decays``, and prints its best
warm-holdout NDCG@20 and epoch: the figures behind the defaults of recbole_fewshot/properties/backbone.yaml.
Nothing here reads the valid or test phase.

    python tools/backbone_grid.py --dataset ml-100k --shots 0 --seed 2020 --out /tmp/backbone-grid
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
from torch import nn

import recbole_fewshot  # noqa: F401  (registers the plugin)
from recbole.config import Config
from recbole.data import create_dataset
from recbole.utils import init_seed

from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source
from recbole_fewshot.nn.backbone import BPRBackbone
from recbole_fewshot.trainer.backbone import WarmBackboneTrainer


class BackboneOnly(nn.Module):
    """The backbone alone, as the trainer finds it on a model (no content encoder is built)."""

    def __init__(self, n_users: int, n_items: int, width: int):
        super().__init__()
        self.backbone = BPRBackbone(n_users, n_items, width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--model", default="DeepMusic", help="a backbone model whose defaults (max_shots) apply")
    parser.add_argument("--embedding-size", type=int, default=64)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    parser.add_argument("--weight-decays", type=float, nargs="+", default=[0.0, 1e-5, 1e-4, 1e-3])
    parser.add_argument("--out", default="backbone-grid")
    args = parser.parse_args()

    out = Path(args.out)
    name, _ = materialize(resolve_source(args.dataset, args.data_path), SplitSpec(shots=args.shots, seed=args.seed),
                          out / "splits")
    base = {"data_path": str(out / "splits"), "seed": args.seed, "embedding_size": args.embedding_size,
            "state": "WARNING", "show_progress": False, "checkpoint_dir": str(out / "saved"),
            "log_root": str(out / "log")}
    config = Config(model=args.model, dataset=name, config_dict=base)
    dataset = create_dataset(config)
    train = dataset.build()[0]
    print(f"{name}: {len(train.inter_feat)} training interactions; max_shots {config['max_shots']}")
    print("| learning rate | weight decay | best epoch | epochs | warm-holdout NDCG@20 | seconds |")
    print("|---|---|---|---|---|---|")
    for lr, wd in itertools.product(args.learning_rates, args.weight_decays):
        config["backbone_learning_rate"], config["backbone_weight_decay"] = lr, wd
        init_seed(args.seed, True)
        holder = BackboneOnly(dataset.user_num, dataset.item_num, args.embedding_size)
        trainer = WarmBackboneTrainer(config, holder)
        start = time.perf_counter()
        trainer.train_backbone(train)
        seconds = time.perf_counter() - start
        print(f"| {lr:g} | {wd:g} | {holder.backbone_best_epoch} | {trainer.backbone_epochs_trained} | "
              f"{holder.backbone_holdout_ndcg:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
