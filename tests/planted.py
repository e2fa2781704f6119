"""Tiny generated datasets with a planted pattern, and a RecBole run helper, for fast tests.

Users belong to one of ``n_groups`` taste groups; items have a genre (token), tags (token_seq) and
a price (float). A user buys mostly items of their group's genre, so content predicts new items'
buyers and a trained model must beat an untrained one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import recbole_fewshot  # noqa: F401
from recbole_fewshot.data.atomic import write_atomic
from recbole_fewshot.data.split import SourceDataset, SplitSpec, materialize


def write_planted_dataset(root: Path, name: str = "planted", n_users: int = 200, n_items: int = 200,
                          n_groups: int = 3, per_user: int = 20, seed: int = 0, with_features: bool = True) -> Path:
    """Write ``root/name/name.inter`` (+ ``.item``) and return ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    item_group = np.arange(n_items) % n_groups
    user_group = rng.integers(0, n_groups, n_users)
    rows = []
    for user in range(n_users):
        own = np.nonzero(item_group == user_group[user])[0]
        other = np.nonzero(item_group != user_group[user])[0]
        n_own = int(per_user * 0.9)
        chosen = np.concatenate([rng.choice(own, n_own, replace=False), rng.choice(other, per_user - n_own, replace=False)])
        for item in chosen:
            rows.append((f"u{user}", f"i{item}", str(int(rng.integers(1_000_000, 2_000_000)))))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    write_atomic(inter, ["user_id:token", "item_id:token", "timestamp:float"], folder / f"{name}.inter")
    if with_features:
        items = pd.DataFrame({
            "item_id": [f"i{i}" for i in range(n_items)],
            "genre": [f"g{g}" for g in item_group],
            "tags": [f"t{g} t{g + n_groups} common" for g in item_group],
            "price": [f"{1 + g + rng.random():.2f}" for g in item_group],
        })
        write_atomic(items, ["item_id:token", "genre:token", "tags:token_seq", "price:float"], folder / f"{name}.item")
    return root


def planted_split(root: Path, shots: int, seed: int = 0, **dataset_kwargs) -> tuple[str, Path]:
    """Write a planted dataset under ``root/source`` and its few-shot split under ``root/splits``."""
    write_planted_dataset(root / "source", seed=seed, **dataset_kwargs)
    spec = SplitSpec(shots=shots, max_shots=3, new_item_ratio=0.3, seed=seed)
    name, _ = materialize(SourceDataset("planted", root / "source" / "planted"), spec, root / "splits")
    return name, root / "splits"


FAST_CONFIG = {
    "epochs": 3,
    "train_batch_size": 256,
    "eval_batch_size": 4096,
    "embedding_size": 16,
    "topk": [10],
    "metrics": ["NDCG", "Recall"],
    "valid_metric": "NDCG@10",
    "show_progress": False,
    "state": "ERROR",
    "reproducibility": True,
    "seed": 2020,
    "checkpoint_dir": None,  # set per test
    # Unit tests run on the CPU, building tensors by hand; tests/test_gpu.py runs every model on CUDA.
    # RecBole 1.2.1 needs both keys: gpu_id picks the device, and with use_gpu left True on a CUDA machine
    # run_recbole's get_environment asks torch for the GPU memory of the CPU device and fails.
    "gpu_id": "",
    "use_gpu": False,
}


def train_and_test(model: str, dataset: str, data_path: Path, epochs: int, **overrides) -> dict:
    """Train ``model`` for ``epochs`` epochs (0: untrained) and return its test result, through RecBole's pieces."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config_dict = {**FAST_CONFIG, "data_path": str(data_path), "epochs": epochs,
                   "checkpoint_dir": str(Path(data_path).parent / "saved"), **overrides}
    config = Config(model=model, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if epochs > 0:
        trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    return dict(trainer.evaluate(test_data, load_best_model=False))
