"""NLBA: each user is a task; a shared network scores an item's content, with biases adapted from the user's history."""

from __future__ import annotations

import torch
from planted import planted_split
from recbole.data.interaction import Interaction
from user_task import ATOL, all_scores, build


def test_user_biases_are_a_function_of_the_history_only(in_tmp):
    name, data_path = planted_split(in_tmp, shots=3)
    model, _ = build("NLBA", name, data_path)
    users = torch.tensor([2, 6])
    with torch.no_grad():
        r0, r1 = model.representatives(users)
        biases = model.adapt(r0, r1)
        assert len(biases) == len(model.layers) + 1
        for adapter, bias in zip(model.adapters, biases):  # the documented function: V^l [R^0; R^1] + c^l
            assert torch.allclose(adapter(torch.cat([r0, r1], -1)), bias, atol=ATOL)
        assert all(not torch.allclose(bias[0], bias[1], atol=ATOL) for bias in biases)
        full = model.full_sort_predict(Interaction({"user_id": users})).view(2, -1)
        pairs = model.predict(Interaction({"user_id": users.repeat_interleave(model.n_items),
                                           "item_id": torch.arange(model.n_items).repeat(2)})).view(2, -1)
        assert torch.allclose(full, pairs, atol=ATOL)

        # User 6 takes user 2's history: same R^1, so every bias moves (R^0 still reads 6's training items).
        before = all_scores(model)
        model.history[6] = model.history[2]
        model.eval()
        r0_new, r1_new = model.representatives(users)
        changed = model.adapt(r0_new, r1_new)
        after = all_scores(model)
    assert torch.allclose(r1_new[1], r1[0], atol=ATOL) and torch.allclose(r0_new, r0, atol=ATOL)
    for old, new in zip(biases, changed):
        assert torch.allclose(old[0], new[0], atol=ATOL) and not torch.allclose(old[1], new[1], atol=ATOL)
    moved = ~torch.isclose(after, before, atol=ATOL).all(1)
    assert moved[6 - 1] and moved.sum() == 1
