"""Shared helpers of the LWA and NLBA tests: a model on a planted split, and its every score."""

from __future__ import annotations

from pathlib import Path

import torch
from planted import FAST_CONFIG
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, get_trainer, init_seed

ATOL = 1e-5  # float32 sums of the same values taken in another order


def build(model_name: str, name: str, data_path: Path, epochs: int = 0, **overrides):
    """``model_name`` (LWA or NLBA) on a planted split, trained for ``epochs`` epochs (0: untrained; LWA's
    class weights then set so both classes matter), in eval mode, and its training split."""
    config = Config(model=model_name, dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(data_path.parent / "saved"),
        "epochs": epochs, **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset)
    if epochs:
        get_trainer(config["MODEL_TYPE"], model_name)(config, model).fit(train_data, valid_data, saved=False)
    elif model_name == "LWA":
        with torch.no_grad():  # make both classes matter
            model.positive_weight.fill_(0.8)
            model.negative_weight.fill_(-0.6)
    return model.eval(), train_data._dataset


def all_scores(model) -> torch.Tensor:
    users = torch.arange(1, model.n_users)
    with torch.no_grad():
        return model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
