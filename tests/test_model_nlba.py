"""NLBA: an item's biases are a function of its support set (and content) only; training helps."""

from __future__ import annotations

from pathlib import Path

import torch
from planted import FAST_CONFIG, planted_split, train_and_test
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction
from recbole.utils import get_model, init_seed


def build(name: str, data_path: Path, **overrides):
    config = Config(model="NLBA", dataset=name, config_dict={
        **FAST_CONFIG, "data_path": str(data_path), "checkpoint_dir": str(data_path.parent / "saved"), **overrides})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return get_model("NLBA")(config, train_data._dataset).eval()


def test_item_biases_are_a_function_of_the_support_set_only(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model = build(name, data_path)
    a, b = 5, 9
    items = torch.tensor([a, b])
    users = torch.arange(1, model.n_users)
    with torch.no_grad():
        biases = model.item_biases(items)
        assert len(biases) == len(model.layers) + 1
        assert all(not torch.allclose(bias[0], bias[1]) for bias in biases)
        # The documented function: adapter_l([R^0; R^1]) with R the support means (content a pseudo-member).
        r0, r1 = model.representatives(items)
        for adapter, bias in zip(model.adapters, biases):
            assert torch.allclose(adapter(torch.cat([r0, r1], -1)), bias)

        # Give item b the support sets and content of item a: same biases, same scores, whatever its id.
        for name_ in ("support", "support_len", "neg_support", "neg_support_len"):
            getattr(model, name_)[b] = getattr(model, name_)[a]
        for field in model.content.fields:
            getattr(model.content, f"feature_{field}")[b] = getattr(model.content, f"feature_{field}")[a]
        model.eval()
        copied = model.item_biases(items)
        scores = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
        members = set(model.support[a, : model.support_len[a]].tolist()) | set(
            model.neg_support[a, : model.neg_support_len[a]].tolist())
        outsiders = torch.tensor([u - 1 for u in users.tolist() if u not in members])

        # Changing one support member changes every bias of that item.
        newcomer = next(u for u in range(1, model.n_users) if u not in members)
        model.support[b, 0] = newcomer
        changed = model.item_biases(items)

    for bias in copied:
        assert torch.allclose(bias[0], bias[1])
    assert torch.allclose(scores[outsiders, a], scores[outsiders, b])
    for old, new in zip(copied, changed):
        assert torch.equal(old[0], new[0]) and not torch.allclose(old[1], new[1])


def test_training_beats_untrained(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    untrained = train_and_test("NLBA", name, data_path, epochs=0)
    trained = train_and_test("NLBA", name, data_path, epochs=5)
    assert trained["ndcg@10"] > untrained["ndcg@10"] + 0.05
