"""Behaviour encoders: a user's state after each prefix of their history of item vectors.

``forward`` returns the state after every prefix (training reads the state before each scored item);
``final_state`` returns only the state after each user's whole history, computed from per-item tables
of the encoder's first linear layer: the same function without dropout, evaluated at a fraction of the
cost, since an evaluation encodes every user and items repeat across histories.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CNN_HEIGHTS = (2, 3, 4)
CNN_FILTERS = 32


def within_length(history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[U, L]: whether each position of a left-aligned history is within the user's length."""
    return torch.arange(history.shape[1], device=history.device).unsqueeze(0) < lengths.unsqueeze(1)


def prefix_mean_at_end(items: torch.Tensor, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The mean [U, d] of each user's item vectors ``items[history]`` over their length (0 for an empty history)."""
    total = (items[history] * within_length(history, lengths).unsqueeze(-1)).sum(1)
    return total / lengths.clamp_min(1).unsqueeze(1).to(items.dtype)


class GRUBehaviourEncoder(nn.Module):
    """GRU over the history (left-aligned, 0-padded), its state at t joined by the mean of items 0..t."""

    def __init__(self, embedding_size: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(embedding_size, embedding_size, batch_first=True)
        self.width = 2 * embedding_size

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        x = self.dropout(history)
        states, _ = self.gru(x)
        count = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype).view(1, -1, 1)
        return torch.cat([states, x.cumsum(dim=1) / count], dim=2)

    def final_state(self, items: torch.Tensor, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``forward``'s state after each whole history, without dropout: ``items`` [n_items, d] (row 0 the
        padding, zero), ``history`` [U, L] item ids, ``lengths`` [U]. The GRU's input gates are read from a
        per-item table, and each step advances only the users whose history is that long."""
        gru = self.gru
        input_gates = F.linear(items, gru.weight_ih_l0, gru.bias_ih_l0)  # [n_items, 3h]
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_history, sorted_lengths = history[order], lengths[order]
        hidden = items.new_zeros(len(history), gru.hidden_size)
        active = len(history)
        for step in range(history.shape[1]):
            while active and sorted_lengths[active - 1] <= step:
                active -= 1
            if not active:
                break
            h = hidden[:active]
            gi = input_gates[sorted_history[:active, step]]
            gh = F.linear(h, gru.weight_hh_l0, gru.bias_hh_l0)
            i_r, i_z, i_n = gi.chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            candidate = torch.tanh(i_n + reset * h_n)
            hidden[:active] = candidate + update * (h - candidate)
        states = torch.empty_like(hidden)
        states[order] = hidden
        return torch.cat([states, prefix_mean_at_end(items, history, lengths)], dim=1)


class CNNBehaviourEncoder(nn.Module):
    """Causal convolutions of several heights, max-pooled over each prefix (Caser/TextCNN), plus the
    prefix mean; the state at t encodes items 0..t."""

    def __init__(self, embedding_size: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_size, CNN_FILTERS, h, padding=h - 1) for h in CNN_HEIGHTS)
        self.width = CNN_FILTERS * len(CNN_HEIGHTS) + embedding_size

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        steps = history.shape[1]
        x = self.dropout(history).transpose(1, 2)  # [B, d, L]
        pooled = [F.relu(conv(x))[:, :, :steps].cummax(dim=2).values for conv in self.convs]
        count = torch.arange(1, steps + 1, device=history.device, dtype=history.dtype).view(1, 1, -1)
        return torch.cat(pooled + [x.cumsum(dim=2) / count], dim=1).transpose(1, 2)

    def final_state(self, items: torch.Tensor, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``forward``'s state after each whole history, without dropout (arguments as
        ``GRUBehaviourEncoder.final_state``). A convolution is linear in its inputs, so its output at t is
        the bias plus one per-item table lookup per kernel row: ``sum_j W_j . x_{t-j}``."""
        steps = history.shape[1]
        valid = within_length(history, lengths)
        padded = F.pad(history, (max(CNN_HEIGHTS) - 1, 0))  # item 0 before the start: the zero vector
        pooled = []
        for conv, height in zip(self.convs, CNN_HEIGHTS):
            # kernel row k reads x_{t - (height - 1 - k)}; tables [height, n_items, filters]
            tables = torch.einsum("fdk,nd->knf", conv.weight, items)
            out = conv.bias.expand(len(history), steps, -1).clone()
            for k in range(height):
                shift = height - 1 - k
                start = max(CNN_HEIGHTS) - 1 - shift
                out += tables[k][padded[:, start:start + steps]]
            out = F.relu(out).masked_fill(~valid.unsqueeze(-1), 0)  # relu >= 0: padding never wins the max
            pooled.append(out.amax(dim=1))
        return torch.cat(pooled + [prefix_mean_at_end(items, history, lengths)], dim=1)
