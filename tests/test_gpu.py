"""Every plugin model on a CUDA device, through RecBole's own trainer and evaluator.

Skipped where there is no CUDA device (CI has none). Each model is trained for one epoch on the GPU,
evaluated there, and its full-sort scores must equal those of a CPU twin holding the same weights, so
no part of a forward pass silently runs on (or depends on) the CPU. RecBole's distributed path with the
nccl backend and FewShotRec's onboarding API are checked on the GPU too.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import build_pipeline, build_trainer, free_port
from recbole.data.interaction import Interaction
from recbole_fewshot.data.atomic import read_atomic
from recbole_fewshot.data.split import read_manifest
from recbole_fewshot.registry import plugin_models

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.usefixtures("in_tmp")]

ON_CUDA = {"gpu_id": "0", "use_gpu": True}  # the unit tests' FAST_CONFIG pins the CPU
CASES = [(model, {}) for model in sorted(plugin_models())] + [
    ("FewShotRec", {"behaviour_encoder": "cnn"}),
    ("FewShotRec", {"freeze_backbone": False}),
]


def _cpu_twin(config, dataset, trained: torch.nn.Module) -> torch.nn.Module:
    """The same model class built on the CPU from the same training split, holding ``trained``'s weights."""
    from recbole.utils import get_model

    device = config["device"]
    config["device"] = torch.device("cpu")
    try:
        twin = get_model(config["model"])(config, dataset)
    finally:
        config["device"] = device
    twin.load_state_dict({key: value.cpu() for key, value in trained.state_dict().items()})
    return twin.eval()


@pytest.mark.parametrize("model, overrides", CASES, ids=[f"{m}{'-' + '-'.join(map(str, o.values())) if o else ''}"
                                                          for m, o in CASES])
def test_trains_evaluates_and_scores_on_cuda_as_on_the_cpu(model, overrides, planted_k2, in_tmp):
    name, data_path = planted_k2
    config, _, train_data, valid_data, test_data = build_pipeline(model, name, data_path, in_tmp, **ON_CUDA,
                                                                  backbone_epochs=1, **overrides)
    assert config["device"].type == "cuda"
    trainer = build_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    assert all(math.isfinite(value) for value in result.values()) and 0 < result["ndcg@10"] <= 1

    gpu_model = trainer.model.eval()
    assert all(p.device.type == "cuda" for p in gpu_model.parameters())
    assert all(b.device.type == "cuda" for b in gpu_model.buffers())
    cpu_model = _cpu_twin(config, train_data._dataset, gpu_model)
    batch = next(iter(test_data))[0]
    with torch.no_grad():
        gpu_scores = gpu_model.full_sort_predict(batch.to(config["device"]))
        cpu_scores = cpu_model.full_sort_predict(batch.to("cpu"))
    assert gpu_scores.device.type == "cuda"
    torch.testing.assert_close(gpu_scores.cpu(), cpu_scores, rtol=1e-4, atol=1e-4)


def test_fewshotrec_onboards_on_cuda_as_full_sort_scores(planted_k2, in_tmp):
    name, data_path = planted_k2
    config, _, train_data, valid_data, _ = build_pipeline("FewShotRec", name, data_path, in_tmp, **ON_CUDA)
    trainer = build_trainer(config, train_data)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    model, train = trainer.model.eval(), train_data._dataset
    token = read_manifest(data_path / name / f"{name}.fewshot.json")["test_new_items"][0]
    items, _ = read_atomic(data_path / name / f"{name}.item")
    row = items[items.item_id == token].iloc[0].to_dict()
    item = int(train.token2id("item_id", token))
    length = int(model.support_len[item])
    support = [train.id2token("user_id", int(u)) for u in model.support[item, :length]]
    times = model.support_times[item, :length].tolist()
    users = [train.id2token("user_id", u) for u in range(1, train.user_num)]
    onboarded = model.onboard([row], [support], [times])
    scores = model.score_onboarded(users, onboarded)
    user_ids = torch.arange(1, train.user_num, device=config["device"])
    with torch.no_grad():
        full_sort = model.full_sort_predict(Interaction({"user_id": user_ids})).view(len(users), -1)[:, item]
    assert onboarded.embedding.device.type == "cuda" and scores.device.type == "cuda"
    torch.testing.assert_close(scores[:, 0], full_sort, rtol=1e-4, atol=1e-4)


def test_distributed_fit_with_nccl_in_a_world_of_one(planted_k2, in_tmp):
    from torch.nn.parallel import DistributedDataParallel

    world = {"local_rank": 0, "world_size": 1, "nproc": 1, "ip": "localhost", "port": str(free_port()), "offset": 0,
             **ON_CUDA}
    try:
        config, _, train_data, valid_data, test_data = build_pipeline("FewShotRec", *planted_k2, in_tmp, **world)
        assert torch.distributed.get_backend() == "nccl" and config["device"] == torch.device("cuda", 0)
        trainer = build_trainer(config, train_data)
        assert isinstance(trainer.distributed_model, DistributedDataParallel)
        trainer.fit(train_data, valid_data, saved=False, show_progress=False)
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        assert 0 < result["ndcg@10"] <= 1
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
