"""The bottleneck block itself, free of any adapter library: ``up(act(down(h)))``; the caller adds the residual.

Parameters per adapted sub-block: ``2 * d * b + b + d`` (d = hidden size, b = bottleneck = d // reduction_factor).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import get_activation

from ..common.weights import init_bottleneck


class Bottleneck(nn.Module):
    """``up(act(down(h)))`` with ``down: hidden -> bottleneck``, initialised by a named scheme (``common.weights``)."""

    def __init__(self, hidden_size: int, bottleneck_size: int, non_linearity: str, scheme: str):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.act = get_activation(non_linearity.lower())
        self.up = nn.Linear(bottleneck_size, hidden_size)
        init_bottleneck(self.down, self.up, scheme)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(hidden)))
