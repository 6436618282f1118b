"""One bottleneck per task, stored stacked; each example runs through its own task's block (He et al. 2021).

A batch of one task runs as one bottleneck. A batch that mixes tasks gathers each example's weights from the stacks
and runs one batched matmul per projection, so its cost does not grow with the number of tasks in it.

Parameters per adapted sub-block: ``tasks * (2 * d * b + b + d)`` (+ ``tasks`` for a learned scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import get_activation

from ..common.routing import Routing, matmul_into, per_example_linear
from ..common.weights import init_projection


class MultiTaskBottleneck(nn.Module):
    """``up(act(down(x)))`` with one ``(out, in)`` matrix pair per task, stacked as ``(tasks, out, in)``."""

    def __init__(self, num_tasks: int, hidden_size: int, bottleneck_size: int, non_linearity: str, scheme: str):
        super().__init__()
        self.down_weight = nn.Parameter(torch.empty(num_tasks, bottleneck_size, hidden_size))
        self.down_bias = nn.Parameter(torch.zeros(num_tasks, bottleneck_size))
        self.up_weight = nn.Parameter(torch.empty(num_tasks, hidden_size, bottleneck_size))
        self.up_bias = nn.Parameter(torch.zeros(num_tasks, hidden_size))
        init_projection(self.down_weight, "down", scheme)
        init_projection(self.up_weight, "up", scheme)
        self.act = get_activation(non_linearity.lower())

    def forward(
        self,
        hidden: torch.Tensor,
        routing: Routing,
        scale: float | torch.Tensor = 1.0,
        into: torch.Tensor | None = None,
        overwrite: bool = False,
    ) -> torch.Tensor:
        """``scale * up(act(down(hidden)))``, each example through its task's block; ``scale`` a number or one per
        example. Plus ``into`` when given, added by the up projection's matmul (see :func:`matmul_into`).

        The scale multiplies the bottleneck activations (``b`` values per token, not ``d``), and the up projection's
        bias rides in its matrix as a last row against a column of ``scale``: one matmul, no pass over the output."""
        task = routing.single
        if task is not None:
            down = F.linear(hidden, self.down_weight[task], self.down_bias[task])
            up = torch.cat([self.up_weight[task].t(), self.up_bias[task].unsqueeze(0)])
        else:
            ids = routing.ids
            weights = (self.down_weight.index_select(0, ids), self.down_bias.index_select(0, ids))
            down = per_example_linear(hidden, *weights)
            up_weight = self.up_weight.index_select(0, ids).transpose(1, 2)
            up = torch.cat([up_weight, self.up_bias.index_select(0, ids).unsqueeze(1)], dim=1)
        act = self.act(down)
        act = torch.cat([act, act.new_ones(*act.shape[:-1], 1)], dim=-1)
        if isinstance(scale, torch.Tensor):  # one per example
            act = act * scale.view(-1, *[1] * (act.dim() - 1)).to(act.dtype)
        elif scale != 1.0:
            act = act * scale
        return matmul_into(act, up, into, overwrite)
