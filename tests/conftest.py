"""Shared fixtures: temporary working folders, planted and ml-100k splits, RecBole pipelines."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

import recbole_fewshot  # noqa: E402,F401  (registers the plugin before any test imports RecBole pieces)
from planted import FAST_CONFIG, planted_split, write_planted_dataset  # noqa: E402
from recbole_fewshot.data.split import SplitSpec, materialize, resolve_source  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("fast", max_examples=35)
settings.register_profile("thorough", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

try:
    import torch

    torch.set_num_threads(1)
except Exception:  # pragma: no cover
    pass


@pytest.fixture(autouse=True)
def _restore_autograd_anomaly_mode():
    """Importing RecBole's sequential_recommender package (recbole/model/sequential_recommender/sine.py)
    switches torch's anomaly detection on for the whole process; keep that from leaking across tests."""
    import torch

    enabled = torch.is_anomaly_enabled()
    yield
    torch.autograd.set_detect_anomaly(enabled)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside its tmp_path, so RecBole's log/, log_tensorboard/ and saved/ land there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # RecBole reads --key=value from sys.argv
    return tmp_path


@pytest.fixture(scope="session")
def planted_k2(tmp_path_factory) -> tuple[str, Path]:
    """A planted split with K=2 (read-only for tests): (name, data_path)."""
    return planted_split(tmp_path_factory.mktemp("planted_k2"), shots=2)


@pytest.fixture(scope="session")
def planted_k0(tmp_path_factory) -> tuple[str, Path]:
    """A planted split with K=0 (read-only for tests): (name, data_path)."""
    return planted_split(tmp_path_factory.mktemp("planted_k0"), shots=0)


@pytest.fixture
def planted_source(tmp_path) -> Path:
    """A fresh planted source dataset: returns the data_path holding ``planted/planted.inter``."""
    return write_planted_dataset(tmp_path / "source")


@pytest.fixture(scope="session")
def ml100k_k0_splits(tmp_path_factory) -> list[tuple[str, Path, dict]]:
    """Zero-shot splits of ml-100k under several seeds: [(name, data_path, manifest)]."""
    out = tmp_path_factory.mktemp("ml100k_k0")
    source = resolve_source("ml-100k", None)
    splits = []
    for seed in (1, 2, 3, 4):
        name, manifest = materialize(source, SplitSpec(shots=0, seed=seed), out)
        splits.append((name, out, manifest))
    return splits


def fast_config(data_path, workdir: Path, **overrides) -> dict:
    """planted.FAST_CONFIG pointed at ``data_path``, saving under ``workdir``."""
    return {**FAST_CONFIG, "epochs": 1, "data_path": str(data_path),
            "checkpoint_dir": str(Path(workdir) / "saved"), **overrides}


def build_pipeline(model: str, dataset: str, data_path, workdir: Path, **overrides):
    """Config, dataset and dataloaders through RecBole's own functions."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    config = Config(model=model, dataset=dataset, config_dict=fast_config(data_path, workdir, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    return config, data, train_data, valid_data, test_data


def free_port() -> int:
    """A TCP port on localhost that is free now, for a distributed process group."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def build_trainer(config, train_data):
    """RecBole's model and trainer for ``config`` (untrained)."""
    from recbole.utils import get_model, get_trainer, init_seed

    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
