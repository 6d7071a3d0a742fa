"""A convolutional GRU cell: the temporal memory at the network bottleneck."""

from __future__ import annotations

import torch
from torch import nn


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al. 2016) over feature maps.

    `z, r = sigmoid(conv_gates([x, h]))`, `n = tanh(conv_candidate([x, r * h]))`,
    `h' = (1 - z) * h + z * n`. The state is never detached here, so gradients flow through time
    inside a training window; detaching between windows is the trainer's job. A missing state
    (`None`) is zeros, the state at the start of a stream.

    Parameters: `3 * (in + hidden) * hidden * k^2 + 3 * hidden` (about 226.5M for 2048 -> 2048, 3x3).
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        pad = kernel_size // 2
        self.conv_gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, kernel_size, padding=pad)
        self.conv_candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=pad)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """The zero state matching input `x` (N, in, h, w)."""
        return x.new_zeros(x.shape[0], self.hidden_channels, x.shape[2], x.shape[3])

    def gates(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The update gate z and the reset gate r, each (N, hidden, h, w), for input `x` and state `h`."""
        z, r = torch.sigmoid(self.conv_gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        return z, r

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """One step: input (N, in, h, w), state (N, hidden, h, w) or None -> new state (N, hidden, h, w)."""
        h = self.initial_state(x) if state is None else state
        z, r = self.gates(x, h)
        n = torch.tanh(self.conv_candidate(torch.cat([x, r * h], dim=1)))
        return torch.lerp(h.to(n.dtype), n, z.to(n.dtype))  # (1 - z) * h + z * n (dtypes agree under autocast)
