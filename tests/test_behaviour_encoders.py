"""Behaviour encoders: the evaluation's final state equals the state ``forward`` reaches after the whole history."""

from __future__ import annotations

import pytest
import torch

from recbole_fewshot.nn.behaviour import CNNBehaviourEncoder, GRUBehaviourEncoder


def histories(n_items: int, users: int, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-aligned, 0-padded histories [users, steps] of ids 1..n_items-1, lengths 0..steps (both ends included)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, steps + 1, (users,), generator=generator)
    lengths[:2] = torch.tensor([0, steps])
    ids = torch.randint(1, n_items, (users, steps), generator=generator)
    return ids * (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)), lengths


@pytest.mark.parametrize("encoder_class", [GRUBehaviourEncoder, CNNBehaviourEncoder])
def test_final_state_is_the_state_after_the_whole_history(encoder_class):
    torch.manual_seed(0)
    d, n_items = 8, 30
    encoder = encoder_class(d, dropout=0.5).eval()
    for parameter in encoder.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    items = torch.randn(n_items, d)
    items[0] = 0
    history, lengths = histories(n_items, users=40, steps=7, seed=1)
    with torch.no_grad():
        states = encoder(items[history])
        expected = states[torch.arange(len(history)), (lengths - 1).clamp_min(0)]
        final = encoder.final_state(items, history, lengths)
    has_history = lengths > 0
    assert final.shape == (len(history), encoder.width)
    assert torch.allclose(final[has_history], expected[has_history], atol=1e-5)
    assert expected[has_history].abs().sum() > 0


def test_final_state_ignores_what_follows_the_history():
    """Ids after a user's length (which the model's padding keeps at 0) do not reach the final state."""
    torch.manual_seed(0)
    encoder = GRUBehaviourEncoder(4, dropout=0.0).eval()
    cnn = CNNBehaviourEncoder(4, dropout=0.0).eval()
    items = torch.randn(10, 4)
    items[0] = 0
    history = torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0]])
    noisy = torch.tensor([[1, 2, 7, 8], [3, 9, 9, 9]])
    lengths = torch.tensor([2, 1])
    with torch.no_grad():
        for model in (encoder, cnn):
            assert torch.allclose(model.final_state(items, history, lengths),
                                  model.final_state(items, noisy, lengths), atol=1e-6)
