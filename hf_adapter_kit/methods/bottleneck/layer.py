"""The bottleneck block itself, free of any adapter library: ``up(act(down(h)))``; the caller adds the residual.

Parameters per adapted sub-block: ``2 * d * b + b + d`` (d = hidden size, b = bottleneck = d // reduction_factor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        # the projections' weights read directly: two module calls fewer on every decoding step
        down = F.linear(hidden, self.down.weight, self.down.bias)
        return F.linear(self.act(down), self.up.weight, self.up.bias)
