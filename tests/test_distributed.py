"""RecBole's distributed data parallel mode with plugin and built-in models: two CPU processes (gloo).

Each two-process run trains one epoch; the checkpoint its rank 0 saved is then evaluated by one
process here, which must give the two-process valid and test results (metrics kept to 12 decimals).
"""

from __future__ import annotations


import pytest
import torch

from conftest import build_pipeline, build_trainer, fast_config, free_port
import recbole_fewshot.data.fewshot_config
from recbole_fewshot.cli import main
from recbole_fewshot.data.split import manifest_path
from recbole_fewshot.distributed import run_distributed

pytestmark = pytest.mark.usefixtures("in_tmp")
EXACT = {"metric_decimal_place": 12}


@pytest.fixture
def cpu_only(monkeypatch) -> dict:
    """Config entries keeping every process on the CPU; CUDA_VISIBLE_DEVICES is restored afterwards."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return {"gpu_id": ""}


def assert_one_process_agrees(model: str, dataset: str, data_path, workdir, result: dict, **overrides) -> None:
    """One process evaluates the two-process run's checkpoint and finds the same valid and test results."""
    checkpoints = list((workdir / "saved").glob("*.pth"))
    assert [path.name.split("-")[0] for path in checkpoints] == [model]  # rank 0 alone saved, under one name
    config, _, train_data, valid_data, test_data = build_pipeline(model, dataset, data_path, workdir, **overrides)
    assert any(loader.sample_size % 2 for loader in (valid_data, test_data)), "no phase where two ranks pad"
    trainer = build_trainer(config, train_data)
    for loader, two_processes in ((valid_data, result["best_valid_result"]), (test_data, result["test_result"])):
        one_process = trainer.evaluate(loader, load_best_model=True, model_file=str(checkpoints[0]))
        assert set(two_processes) == {"ndcg@10", "recall@10"}
        assert 0 < one_process["ndcg@10"] < 1
        assert dict(two_processes) == pytest.approx(dict(one_process), abs=1e-9)


@pytest.mark.parametrize("model", ["BPR", "DeepMusic"])  # DeepMusic: a backbone trained, then frozen
def test_two_processes(model, planted_k2, in_tmp, cpu_only):
    name, data_path = planted_k2
    config_dict = fast_config(data_path, in_tmp, **EXACT, **cpu_only, backbone_epochs=1)
    result = run_distributed(model, name, config_dict=config_dict, nproc=2, port=free_port())
    assert_one_process_agrees(model, name, data_path, in_tmp, result, **EXACT, **cpu_only, backbone_epochs=1)


def test_fewshotrec_on_two_processes_materialises_the_split_once(planted_source, in_tmp, cpu_only, monkeypatch):
    cache = in_tmp / "cache"
    overrides = {"fewshot": {"shots": 2, "max_shots": 3, "new_item_ratio": 0.3}, "fewshot_cache_dir": str(cache),
                 **EXACT, **cpu_only}
    real_materialize = recbole_fewshot.data.fewshot_config.materialize
    written = []

    def materialize(source, spec, out):
        name, manifest = real_materialize(source, spec, out)
        stat = manifest_path(out / name, name).stat()
        written.append((stat.st_ino, stat.st_mtime_ns))
        return name, manifest

    monkeypatch.setattr(recbole_fewshot.data.fewshot_config, "materialize", materialize)
    result = run_distributed("FewShotRec", "planted", config_dict=fast_config(planted_source, in_tmp, **overrides),
                             nproc=2, port=free_port(), backend="gloo")
    assert len(written) == 1  # by the launching process, before the workers started
    [split] = [path for path in cache.iterdir() if path.is_dir()]  # no second copy, no staging folder left
    stat = manifest_path(split, split.name).stat()
    assert [(stat.st_ino, stat.st_mtime_ns)] == written  # the workers only read it
    assert_one_process_agrees("FewShotRec", "planted", planted_source, in_tmp, result, **overrides)


def test_one_process_is_the_pipeline_in_this_process(monkeypatch):
    calls = []
    monkeypatch.setattr("recbole_fewshot.distributed.run_pipeline",
                        lambda *args, **kwargs: calls.append((args, kwargs)) or {"ok": 1})
    monkeypatch.setattr(torch.multiprocessing, "spawn", lambda *args, **kwargs: pytest.fail("spawned"))
    assert run_distributed("BPR", "planted", config_dict={"epochs": 1}) == {"ok": 1}
    assert calls == [(("BPR", "planted", None, {"epochs": 1}), {"saved": True, "log_run": True})]


def test_cli_run_passes_the_distributed_options(monkeypatch, capsys):
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        return {"best_valid_result": {"ndcg@10": 0.5}, "test_result": {"ndcg@10": 0.25}}

    monkeypatch.setattr("recbole_fewshot.distributed.run_distributed", fake_run)
    assert main(["run", "--model", "FewShotRec", "--dataset", "planted", "--nproc", "2", "--world-size", "4",
                 "--ip", "10.0.0.1", "--port", "29500", "--offset", "2", "--backend", "gloo", "--epochs=1"]) == 0
    assert calls == [{"model": "FewShotRec", "dataset": "planted", "config_file_list": None, "config_dict": None, "nproc": 2,
                      "world_size": 4, "ip": "10.0.0.1", "port": "29500", "group_offset": 2, "backend": "gloo"}]
    assert capsys.readouterr().out.splitlines()[-1] == "test result: {'ndcg@10': 0.25}"
    main(["run", "--model", "BPR", "--dataset", "planted"])
    assert calls[-1] == {"model": "BPR", "dataset": "planted", "config_file_list": None, "config_dict": None, "nproc": 1,
                         "world_size": -1, "ip": "localhost", "port": "5678", "group_offset": 0, "backend": None}
