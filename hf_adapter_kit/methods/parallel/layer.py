"""One bottleneck per task, stored stacked; each example runs through its own task's block (He et al. 2021).

A batch of one task runs as one bottleneck. A batch that mixes tasks gathers each example's weights from the stacks
and runs one batched matmul per projection, so its cost does not grow with the number of tasks in it. Without
autograd (serving), the four stacks are kept packed as one, ``(tasks, d * b + b + (b + 1) * d)``, in the layout the
matmuls read: a mixed batch then gathers everything each example needs in one op (the weights an example reads
outweigh its activations when inputs are short). The pack is remade when a parameter changes (storage, version or
dtype: an optimizer step, a load, a move or a cast) and costs the stacks' size again in memory.

Parameters per adapted sub-block: ``tasks * (2 * d * b + b + d)`` (+ ``tasks`` for a learned scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import get_activation

from ...routing import Routing
from ..common.ops import matmul_into
from ..common.weights import init_projection, params_state


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
        example. Plus ``into`` when given, written into ``into`` itself with ``overwrite`` (see :func:`matmul_into`).

        A mixed batch scales its bottleneck activations (``b`` values per token, not ``d``) and carries the up
        projection's bias in its matrix as a last row against a column of ``scale``: one matmul, which adds into
        ``into``. A one-task batch (a decoding step: every op counts) keeps its two linear layers and scales while
        adding (``add(..., alpha=scale)``)."""
        task = routing.single
        if task is not None:
            down = F.linear(hidden, self.down_weight[task], self.down_bias[task])
            return _scaled_add(
                F.linear(self.act(down), self.up_weight[task], self.up_bias[task]), scale, into, overwrite
            )
        if torch.is_grad_enabled() and self.down_weight.requires_grad:
            ids = routing.ids
            down_t = self.down_weight.index_select(0, ids).transpose(1, 2)
            down_bias = self.down_bias.index_select(0, ids).unsqueeze(1)
            up = torch.cat(
                [self.up_weight.index_select(0, ids).transpose(1, 2), self.up_bias.index_select(0, ids).unsqueeze(1)],
                1,
            )
        else:  # serving: one gather of the packed stacks (see the module docstring)
            _, b, d = self.down_weight.shape
            rows = self._packed().index_select(0, routing.ids)
            down_t, down_bias = rows[:, : d * b].view(-1, d, b), rows[:, d * b : d * b + b].unsqueeze(1)
            up = rows[:, d * b + b :].view(-1, b + 1, d)
        flat = hidden.reshape(hidden.shape[0], -1, hidden.shape[-1])
        act = self.act(torch.baddbmm(down_bias, flat, down_t)).view(*hidden.shape[:-1], down_t.shape[-1])
        act = _scaled(torch.cat([act, act.new_ones(*act.shape[:-1], 1)], dim=-1), scale)
        return matmul_into(act, up, into, overwrite)

    def _packed(self) -> torch.Tensor:
        """The four stacks packed per task (down weight transposed, down bias, up weight transposed with the up bias
        as a last row), made again when a parameter changed."""
        params = (self.down_weight, self.down_bias, self.up_weight, self.up_bias)
        state = params_state(params)
        cached = self.__dict__.get("_pack")
        if state is not None and cached is not None and cached[0] == state:
            return cached[1]
        with torch.no_grad(), torch.inference_mode(False):
            tasks = self.down_weight.shape[0]
            parts = [self.down_weight.transpose(1, 2), self.down_bias, self.up_weight.transpose(1, 2), self.up_bias]
            pack = torch.cat([part.reshape(tasks, -1) for part in parts], dim=1)
        if state is not None:  # None: inference-tensor parameters, whose in-place changes are not recorded
            self.__dict__["_pack"] = (state, pack)
        return pack

    def train(self, mode: bool = True):
        if mode:  # training changes the stacks: the pack's memory is not kept for nothing; `eval()` keeps it
            self.__dict__.pop("_pack", None)
        return super().train(mode)


def _scaled(x: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """``scale * x``; ``scale`` a number or one per example (along ``x``'s first dimension)."""
    if isinstance(scale, torch.Tensor):
        return x * scale.view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
    return x if scale == 1.0 else x * scale


def _scaled_add(
    up: torch.Tensor, scale: float | torch.Tensor, into: torch.Tensor | None, overwrite: bool
) -> torch.Tensor:
    """``into + scale * up`` (into ``into`` itself with ``overwrite``), or ``scale * up``."""
    if isinstance(scale, torch.Tensor):  # one per example
        up, scale = _scaled(up, scale), 1.0
    if into is None:
        return _scaled(up, scale)
    if into.dtype != up.dtype or into.shape != up.shape:
        return into + _scaled(up, scale).to(into.dtype)
    return into.add_(up, alpha=scale) if overwrite else torch.add(into, up, alpha=scale)
