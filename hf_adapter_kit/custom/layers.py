"""The computations of the kit's own adapters, free of any adapter library.

- :class:`Bottleneck`: ``up(act(down(h)))`` for one task (Houlsby / Pfeiffer on PEFT). The caller adds the residual.
- :class:`MultiTaskBottleneck`: one such block per task, each example routed to its task's block (the multi-task
  parallel adapter of He et al. 2021; the caller scales it and adds it beside the sub-block).
- :class:`HyperNetwork`: Hyperformer++ (Karimi Mahabadi et al. 2021). Task, layer-id and position embeddings are
  concatenated, projected (Linear, ReLU, Linear) and layer-normed; one shared set of generators turns that vector into
  the adapter's down/up weights and biases and the gamma/beta of its conditional layer norm. In eval mode without
  autograd the generated weights are cached per (task, layer, position); the cache is dropped on ``train()`` and
  whenever a parameter changes (in-place update, reload, move to another device).

The up-projections start at zero, so every adapter starts as the identity and training starts from the base model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import get_activation

from .routing import Routing


POSITIONS = ("attention", "ffn")


def _activation(name: str) -> nn.Module:
    return get_activation(name.lower())


class Bottleneck(nn.Module):
    """``up(act(down(h)))`` with ``down: hidden -> bottleneck``; up starts at zero."""

    def __init__(self, hidden_size: int, bottleneck_size: int, non_linearity: str = "relu"):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.act = _activation(non_linearity)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        nn.init.normal_(self.down.weight, std=1 / math.sqrt(hidden_size))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(hidden)))


class MultiTaskBottleneck(nn.Module):
    """One bottleneck per task, stored stacked (``(tasks, out, in)``); rows run through their own task's block."""

    def __init__(self, num_tasks: int, hidden_size: int, bottleneck_size: int, non_linearity: str = "relu"):
        super().__init__()
        self.down_weight = nn.Parameter(torch.randn(num_tasks, bottleneck_size, hidden_size) / math.sqrt(hidden_size))
        self.down_bias = nn.Parameter(torch.zeros(num_tasks, bottleneck_size))
        self.up_weight = nn.Parameter(torch.zeros(num_tasks, hidden_size, bottleneck_size))
        self.up_bias = nn.Parameter(torch.zeros(num_tasks, hidden_size))
        self.act = _activation(non_linearity)

    def _one(self, hidden: torch.Tensor, task: int) -> torch.Tensor:
        down = F.linear(hidden, self.down_weight[task], self.down_bias[task])
        return F.linear(self.act(down), self.up_weight[task], self.up_bias[task])

    def forward(self, hidden: torch.Tensor, routing: Routing) -> torch.Tensor:
        return route(hidden, routing, self._one)


def route(hidden: torch.Tensor, routing: Routing, fn) -> torch.Tensor:
    """``fn(rows, task)`` on each task's rows of the batch; one call when the batch holds a single task."""
    if routing.single is not None:
        return fn(hidden, routing.single)
    out = None
    for task, rows in routing.rows.items():
        part = fn(hidden.index_select(0, rows), task)
        if out is None:
            out = part.new_zeros(hidden.shape[:-1] + part.shape[-1:])
        out.index_copy_(0, rows, part)
    return out


class HyperNetwork(nn.Module):
    """Hyperformer++'s shared hypernetwork: generates every (task, layer, position) adapter of a model."""

    def __init__(
        self,
        *,
        hidden_size: int,
        bottleneck_size: int,
        num_layers: int,
        tasks: Sequence[str],
        positions: Sequence[str] = POSITIONS,
        task_embedding_dim: int = 64,
        projector_hidden_dim: int = 128,
        projected_dim: int = 8,
        conditional_layer_norm: bool = True,
        non_linearity: str = "relu",
    ):
        super().__init__()
        self.hidden_size, self.bottleneck_size = hidden_size, bottleneck_size
        self.tasks, self.positions = list(tasks), list(positions)
        self.conditional_layer_norm = conditional_layer_norm
        e = task_embedding_dim
        self.task_embeddings = nn.ParameterDict({name: nn.Parameter(torch.randn(e)) for name in self.tasks})
        self.layer_embeddings = nn.Embedding(num_layers, e)
        self.position_embeddings = nn.Embedding(len(self.positions), e)
        self.projector = nn.Sequential(
            nn.Linear(3 * e, projector_hidden_dim), nn.ReLU(), nn.Linear(projector_hidden_dim, projected_dim)
        )
        self.projector_norm = nn.LayerNorm(projected_dim)
        d, b, p = hidden_size, bottleneck_size, projected_dim
        self.down_weight = nn.Linear(p, b * d)
        self.down_bias = nn.Linear(p, b)
        self.up_weight = nn.Linear(p, d * b)
        self.up_bias = nn.Linear(p, d)
        # generated down weights get variance 1/d (the projected vector is layer-normed to unit variance)
        nn.init.normal_(self.down_weight.weight, std=1 / math.sqrt(d * p))
        for gen in (self.down_bias, self.up_weight, self.up_bias):
            nn.init.zeros_(gen.weight)
        for gen in (self.down_weight, self.down_bias, self.up_weight, self.up_bias):
            nn.init.zeros_(gen.bias)
        if conditional_layer_norm:
            self.ln_weight = nn.Linear(p, d)
            self.ln_bias = nn.Linear(p, d)
            for gen in (self.ln_weight, self.ln_bias):
                nn.init.zeros_(gen.weight)
            nn.init.ones_(self.ln_weight.bias)
            nn.init.zeros_(self.ln_bias.bias)
        self.act = _activation(non_linearity)
        self._cache: dict = {}
        self._cache_key: tuple | None = None

    # -- tasks ---------------------------------------------------------------------------------------------------
    def add_task(self, name: str) -> nn.Parameter:
        """Append a task; returns its new embedding (the only thing a new task needs to learn)."""
        ref = next(iter(self.task_embeddings.values()))
        self.task_embeddings[name] = nn.Parameter(torch.randn(ref.shape, device=ref.device, dtype=ref.dtype))
        self.tasks.append(name)
        return self.task_embeddings[name]

    # -- generation ----------------------------------------------------------------------------------------------
    def generate(self, task: int, layer: int, position: str) -> dict[str, torch.Tensor]:
        """The adapter weights for one (task index, layer, position)."""
        use_cache = not self.training and not torch.is_grad_enabled()
        if use_cache:
            key = self._param_state()
            if key != self._cache_key:
                self._cache, self._cache_key = {}, key
            hit = self._cache.get((task, layer, position))
            if hit is not None:
                return hit
        weights = self._generate(task, layer, position)
        if use_cache:
            self._cache[(task, layer, position)] = weights
        return weights

    def _generate(self, task: int, layer: int, position: str) -> dict[str, torch.Tensor]:
        device = self.layer_embeddings.weight.device
        task_emb = self.task_embeddings[self.tasks[task]]
        layer_emb = self.layer_embeddings(torch.tensor(layer, device=device))
        pos_emb = self.position_embeddings(torch.tensor(self.positions.index(position), device=device))
        z = self.projector_norm(self.projector(torch.cat([task_emb, layer_emb, pos_emb])))
        d, b = self.hidden_size, self.bottleneck_size
        weights = {
            "down_weight": self.down_weight(z).view(b, d),
            "down_bias": self.down_bias(z),
            "up_weight": self.up_weight(z).view(d, b),
            "up_bias": self.up_bias(z),
        }
        if self.conditional_layer_norm:
            weights["ln_weight"] = self.ln_weight(z)
            weights["ln_bias"] = self.ln_bias(z)
        return weights

    def _param_state(self) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters())

    def train(self, mode: bool = True):
        self._cache, self._cache_key = {}, None
        return super().train(mode)

    # -- the adapter -----------------------------------------------------------------------------------------------
    def adapter(self, hidden: torch.Tensor, layer: int, position: str, routing: Routing) -> torch.Tensor:
        """``up(act(down(LN_task(h))))`` with generated weights, each example with its own task's weights."""

        def one(rows: torch.Tensor, task: int) -> torch.Tensor:
            w = self.generate(task, layer, position)
            if self.conditional_layer_norm:
                rows = F.layer_norm(rows, (self.hidden_size,), w["ln_weight"], w["ln_bias"])
            return F.linear(self.act(F.linear(rows, w["down_weight"], w["down_bias"])), w["up_weight"], w["up_bias"])

        return route(hidden, routing, one)


def hypernetwork_parameter_count(
    *,
    hidden_size: int,
    bottleneck_size: int,
    num_layers: int,
    num_tasks: int,
    num_positions: int = 2,
    task_embedding_dim: int = 64,
    projector_hidden_dim: int = 128,
    projected_dim: int = 8,
    conditional_layer_norm: bool = True,
) -> int:
    """Trainable parameters of :class:`HyperNetwork`; each added task costs ``task_embedding_dim`` more.

    ``e * (T + L + P)`` embeddings + ``(3e + 1) h + (h + 1) p`` projector + ``2p`` its layer norm
    + ``(p + 1) (2 d b + b + d)`` down/up generators + ``(p + 1) 2d`` conditional layer-norm generators,
    with d = hidden size, b = bottleneck, e = task embedding dim, h = projector hidden dim, p = projected dim.
    """
    e, h, p, d, b = task_embedding_dim, projector_hidden_dim, projected_dim, hidden_size, bottleneck_size
    count = e * (num_tasks + num_layers + num_positions) + (3 * e + 1) * h + (h + 1) * p + 2 * p
    count += (p + 1) * (2 * d * b + b + d)
    if conditional_layer_norm:
        count += (p + 1) * 2 * d
    return count
