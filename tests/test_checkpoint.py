"""RecBole checkpoints load on torch >= 2.6 without turning the weights-only check off, and crafted
checkpoints are refused before any of their code runs."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import build_pipeline, build_trainer, fast_config
from recbole_fewshot import checkpoint, compat
from recbole_fewshot.checkpoint import UnsafeCheckpointError, allow_checkpoint_globals, load_checkpoint

pytestmark = pytest.mark.usefixtures("in_tmp")
TORCH_LOAD = torch.load


@pytest.fixture(autouse=True)
def no_weights_only_escape_hatch(monkeypatch):
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)


@pytest.fixture
def load_calls(monkeypatch):
    """Records every checkpoint RecBole loads through compat's safe loader."""
    calls = []

    def spy(path, *args, **kwargs):
        calls.append(str(path))
        return load_checkpoint(path, *args, **kwargs)

    monkeypatch.setattr(compat.upstream, "load_checkpoint", spy)
    return calls


def run_and_save(model: str, split, workdir: Path, **overrides) -> tuple[dict, Path]:
    """run_recbole with saving on; returns (result, the saved checkpoint)."""
    from recbole.quick_start import run_recbole

    name, data_path = split
    config = fast_config(data_path, workdir, **overrides)
    result = run_recbole(model=model, dataset=name, config_dict=config, saved=True)
    saved = sorted(Path(config["checkpoint_dir"]).glob(f"{model}-*.pth"))
    assert len(saved) == 1, saved
    return result, saved[0]


def test_torch_refuses_recbole_checkpoints_by_default(planted_k2, in_tmp):
    """Why the patch exists: torch >= 2.6 loads with weights_only=True, which rejects RecBole's pickles."""
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 6):
        pytest.skip("torch < 2.6 loads full pickles by default")
    _, saved = run_and_save("BPR", planted_k2, in_tmp)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(saved)


def test_run_recbole_finishes_with_the_final_reload(planted_k2, in_tmp, load_calls):
    result, saved = run_and_save("BPR", planted_k2, in_tmp)
    assert load_calls == [str(saved)]  # Trainer.evaluate(load_best_model=True) reloaded the best model
    assert set(result["test_result"]) == {"ndcg@10", "recall@10"}
    assert torch.load is TORCH_LOAD


@pytest.mark.parametrize("model", ["BPR", "ItemKNN"])
def test_load_data_and_model(planted_k2, in_tmp, load_calls, model):
    from recbole.quick_start import load_data_and_model

    _, saved = run_and_save(model, planted_k2, in_tmp)
    stored = load_checkpoint(saved)
    config, net, dataset, train_data, valid_data, test_data = load_data_and_model(str(saved))
    assert load_calls[-1] == str(saved)
    assert config["model"] == model and config["dataset"] == planted_k2[0]
    assert type(net).__name__ == model
    for key, value in stored["state_dict"].items():
        assert torch.equal(net.state_dict()[key], value), key
    if model == "ItemKNN":  # its similarity matrix is a scipy sparse other_parameter
        import scipy.sparse

        assert scipy.sparse.issparse(stored["other_parameter"]["w"])
        assert (net.w != stored["other_parameter"]["w"]).nnz == 0
        assert net.w.nnz > 0
    assert torch.load is TORCH_LOAD


def test_load_data_and_model_for_a_plugin_model(planted_k2, in_tmp, load_calls):
    from recbole.quick_start import load_data_and_model

    from recbole_fewshot import registry

    model = "FewShotRec" if "FewShotRec" in registry.plugin_models() else sorted(registry.plugin_models())[0]
    _, saved = run_and_save(model, planted_k2, in_tmp, embedding_size=8, train_batch_size=512)
    stored = load_checkpoint(saved)
    assert type(stored["config"]).__name__ == "Config"
    assert all(torch.isfinite(value).all() for value in stored["state_dict"].values() if value.is_floating_point())
    config, net, *_ = load_data_and_model(str(saved))
    assert type(net) is registry.plugin_models()[model]
    for key, value in stored["state_dict"].items():
        assert torch.equal(net.state_dict()[key], value), key


def test_resume_checkpoint_loads(planted_k2, in_tmp, load_calls):
    _, saved = run_and_save("BPR", planted_k2, in_tmp)
    config, _, train_data, _, _ = build_pipeline("BPR", *planted_k2, in_tmp)
    trainer = build_trainer(config, train_data)
    trainer.resume_checkpoint(str(saved))
    stored = load_checkpoint(saved)
    assert trainer.start_epoch == stored["epoch"] + 1
    for key, value in stored["state_dict"].items():
        assert torch.equal(trainer.model.state_dict()[key], value)


# --- crafted checkpoints -----------------------------------------------------------------------

class ShellPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


class PopenPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return subprocess.Popen, (["touch", str(self.marker)],)


PAYLOADS = [ShellPayload, EvalPayload, PopenPayload]


def craft(path: Path, payload, legacy: bool = False) -> Path:
    """A .pth shaped like a RecBole checkpoint whose unpickling would run ``payload``."""
    state = {"config": {"model": "BPR"}, "epoch": 0, "cur_step": 0, "best_valid_score": 0.0,
             "state_dict": {"w": torch.zeros(2)}, "other_parameter": payload}
    torch.save(state, path, pickle_protocol=4, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_crafted_checkpoints_are_real(tmp_path, payload):
    """Control: loading without restrictions does run the payload, so the refusals below mean something."""
    marker = tmp_path / "ran-unrestricted"
    path = craft(tmp_path / "evil.pth", payload(marker))
    TORCH_LOAD(path, weights_only=False)
    for _ in range(50):  # Popen runs asynchronously
        if marker.exists():
            break
        import time

        time.sleep(0.1)
    assert marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_load_checkpoint_refuses_crafted_pickles(tmp_path, payload, legacy):
    marker = tmp_path / "pwned"
    path = craft(tmp_path / "evil.pth", payload(marker), legacy=legacy)
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)
    assert "allow_checkpoint_globals" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_load_data_and_model_refuses_crafted_checkpoints(tmp_path, payload):
    from recbole.quick_start import load_data_and_model

    marker = tmp_path / "pwned"
    path = craft(tmp_path / "evil.pth", payload(marker))
    with pytest.raises(UnsafeCheckpointError):
        load_data_and_model(str(path))
    assert not marker.exists()
    assert torch.load is TORCH_LOAD  # restored after the refusal


@pytest.mark.parametrize("entry", ["evaluate", "resume_checkpoint"])
def test_trainer_refuses_crafted_checkpoints(planted_k2, in_tmp, entry):
    config, _, train_data, _, test_data = build_pipeline("BPR", *planted_k2, in_tmp)
    trainer = build_trainer(config, train_data)
    marker = in_tmp / "pwned"
    path = craft(in_tmp / "evil.pth", ShellPayload(marker))
    with pytest.raises(UnsafeCheckpointError):
        if entry == "evaluate":
            trainer.evaluate(test_data, load_best_model=True, model_file=str(path))
        else:
            trainer.resume_checkpoint(str(path))
    assert not marker.exists()
    assert torch.load is TORCH_LOAD


def test_non_model_objects_from_model_modules_are_refused(tmp_path):
    """A model module's namespace holds functions and modules too; only model classes are trusted."""
    import recbole.model.general_recommender.bpr as bpr_module

    assert hasattr(bpr_module, "xavier_normal_initialization")
    path = tmp_path / "evil.pth"
    torch.save({"x": bpr_module.xavier_normal_initialization}, path)
    with pytest.raises(UnsafeCheckpointError, match="not a model class"):
        load_checkpoint(path)


class CustomState:
    def __init__(self, value=3):
        self.value = value


def test_allow_checkpoint_globals(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "_extra_allowed", set())
    path = tmp_path / "custom.pth"
    torch.save({"state": CustomState()}, path)
    with pytest.raises(UnsafeCheckpointError, match=f"{__name__}.CustomState"):
        load_checkpoint(path)
    allow_checkpoint_globals(f"{__name__}.CustomState")
    assert load_checkpoint(path)["state"].value == 3
    with pytest.raises(ValueError, match="module.name"):
        allow_checkpoint_globals("CustomState")


def test_tensors_numpy_and_sparse_round_trip(tmp_path):
    import numpy as np
    import scipy.sparse

    state = {"t": torch.arange(6, dtype=torch.float64).view(2, 3), "p": torch.nn.Parameter(torch.ones(2)),
             "a": np.arange(4), "s": np.float32(1.5), "m": scipy.sparse.random(5, 5, density=0.3, format="csr"),
             "c": scipy.sparse.random(4, 4, density=0.5, format="coo")}
    path = tmp_path / "ok.pth"
    torch.save(state, path, pickle_protocol=4)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["t"], state["t"]) and torch.equal(loaded["p"], state["p"])
    assert (loaded["a"] == state["a"]).all() and loaded["s"] == state["s"]
    assert (loaded["m"] != state["m"]).nnz == 0 and (loaded["c"].tocsr() != state["c"].tocsr()).nnz == 0
