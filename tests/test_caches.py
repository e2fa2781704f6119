"""A model's values derived from its parameters (evaluation tables) never outlive those parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import build_pipeline, build_trainer
from recbole_fewshot.nn.caches import DerivedCaches
from recbole_fewshot.registry import plugin_models


class Base(DerivedCaches, nn.Module):
    CACHED = ("_base",)


class Child(Base):
    CACHED = ("_child",)

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self._base, self._child, self._kept = 1, 2, 3


@pytest.mark.parametrize("drop", [lambda m: m.train(), lambda m: m.eval(),
                                  lambda m: m.load_state_dict({"weight": torch.ones(2)})],
                         ids=["train", "eval", "load_state_dict"])
def test_every_class_s_caches_are_dropped_and_nothing_else(drop):
    module = Child()
    drop(module)
    assert (module._base, module._child, module._kept) == (None, None, 3)


PARAMETER_FREE = {"ContentProfile"}  # training-free: its scores read no parameter, so new weights change nothing


@pytest.mark.parametrize("model", sorted(set(plugin_models()) - PARAMETER_FREE))
def test_loading_weights_in_eval_mode_rescores_with_them(model, planted_k2, in_tmp):
    name, data_path = planted_k2
    config, _, train_data, _, test_data = build_pipeline(model, name, data_path, in_tmp)
    net = build_trainer(config, train_data).model.eval()
    users = next(iter(test_data))[0]
    with torch.no_grad():
        before = net.full_sort_predict(users)  # fills the evaluation caches
        generator = torch.Generator().manual_seed(0)
        parameters = dict(net.named_parameters())
        weights = {key: value + 0.1 * torch.randn(value.shape, generator=generator) if key in parameters else value
                   for key, value in net.state_dict().items()}
        net.load_state_dict(weights)  # no train()/eval() call in between
        after = net.full_sort_predict(users)
        fresh = build_trainer(config, train_data).model
        fresh.load_state_dict(weights)
        expected = fresh.eval().full_sort_predict(users)
    assert torch.isfinite(expected).all() and not torch.allclose(before, expected), "new weights, new scores"
    torch.testing.assert_close(after, expected)
