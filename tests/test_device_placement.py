"""No plugin model creates a tensor on the default (CPU) device in a forward pass.

CI has no GPU, so tests/test_gpu.py is skipped there. This check runs everywhere: every tensor factory
call (``torch.zeros``, ``torch.arange``, ``torch.tensor``, ...) made while a model computes its loss,
its scores or an onboarded item must name its device, or the tensor would sit on the CPU while the
model runs on CUDA. Factories that copy a tensor's device (``zeros_like``, ``new_zeros``) are fine.
"""

from __future__ import annotations

import inspect
import traceback

import pytest
import torch
from torch.overrides import TorchFunctionMode

import test_gpu
from conftest import build_pipeline, build_trainer
from recbole.data.interaction import Interaction

FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.rand, torch.randn, torch.randint,
             torch.randperm, torch.tensor, torch.as_tensor, torch.eye, torch.linspace, torch.sparse_coo_tensor,
             torch.sparse_csr_tensor}
# these take the device of tensor data passed to them (``torch.sparse_coo_tensor(indices, values)``)
FROM_DATA = {torch.tensor, torch.as_tensor, torch.sparse_coo_tensor, torch.sparse_csr_tensor}
CASES = test_gpu.CASES  # the models and variants run on CUDA


class DeviceNotNamed(TorchFunctionMode):
    """Records every factory call that leaves the device to the default, with where it was made."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        from_data = func in FROM_DATA and any(isinstance(arg, torch.Tensor) for arg in args)
        if func in FACTORIES and kwargs.get("device") is None and not from_data:
            caller = traceback.extract_stack(limit=2)[0]  # the line calling the factory
            self.calls.append(f"torch.{func.__name__} at {caller.filename}:{caller.lineno}")
        return func(*args, **kwargs)


def _check(work) -> list[str]:
    with DeviceNotNamed() as mode:
        work()
    return mode.calls


def test_the_check_catches_a_factory_without_a_device():
    line = inspect.currentframe().f_lineno + 1
    calls = _check(lambda: torch.zeros(3))
    assert calls == [f"torch.zeros at {__file__}:{line}"]
    assert _check(lambda: torch.zeros(3, device=torch.device("cpu")) + torch.ones_like(torch.empty(3, device="cpu"))) == []


@pytest.mark.parametrize("model, overrides", CASES, ids=[f"{m}{'-' + '-'.join(map(str, o.values())) if o else ''}"
                                                          for m, o in CASES])
def test_forward_passes_name_the_device_of_every_new_tensor(model, overrides, planted_k2, in_tmp):
    name, data_path = planted_k2
    config, _, train_data, _, test_data = build_pipeline(model, name, data_path, in_tmp, **overrides)
    net = build_trainer(config, train_data).model
    batch = next(iter(train_data))
    net.train()
    assert _check(lambda: net.calculate_loss(batch).backward()) == [], "training loss"
    net.eval()
    users = next(iter(test_data))[0]
    pairs = Interaction({net.USER_ID: users[net.USER_ID], net.ITEM_ID: users[net.USER_ID] % (net.n_items - 1) + 1})
    with torch.no_grad():
        assert _check(lambda: net.full_sort_predict(users)) == [], "full sort"
        assert _check(lambda: net.predict(pairs)) == [], "pair scores"
    if hasattr(net, "onboard"):
        tokens = train_data._dataset.field2id_token
        onboarded_support = [[str(tokens[net.USER_ID][1])]]
        assert _check(lambda: net.score_onboarded([str(tokens[net.USER_ID][2])],
                                                  net.onboard([{}], onboarded_support))) == [], "onboarding"
