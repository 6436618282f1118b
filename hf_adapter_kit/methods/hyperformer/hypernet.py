"""Hyperformer++'s shared hypernetwork (Karimi Mahabadi et al. 2021), free of any adapter library.

Task, layer-id and position embeddings are concatenated, projected (Linear, ReLU, Linear) and layer-normed; one
shared set of generators turns that vector into the adapter's down/up weights and biases and the gamma/beta of its
conditional layer norm. In eval mode without autograd the generated weights are cached per (task, layer, position);
the cache is dropped on ``train()`` and whenever a parameter changes (in-place update, reload, move, cast).

With ``init_weights`` ``"mam_adapter"`` / ``"lora"`` (the default) the up-projection generators start at zero, so
every adapter starts as the identity; ``"bert"`` / ``"houlsby"`` draw them too (a non-identity start).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import get_activation

from ..common.checks import POSITIONS
from ..common.routing import Routing, route
from ..common.weights import init_projection


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
        init_weights: str = "mam_adapter",
    ):
        super().__init__()
        self.hidden_size, self.bottleneck_size = hidden_size, bottleneck_size
        self.tasks, self.positions = list(tasks), list(positions)
        self.conditional_layer_norm = conditional_layer_norm
        e = task_embedding_dim
        # A list, keyed by position in `tasks`: a dict keyed by task names made state-dict keys end in a task name,
        # which PEFT's save filter drops when another adapter has that name (the default task and adapter names are
        # both "default").
        self.task_embeddings = nn.ParameterList([nn.Parameter(torch.randn(e)) for _ in self.tasks])
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
        if init_weights not in ("mam_adapter", "lora"):
            init_projection(self.up_weight.weight, "up", init_weights)
        self.act = get_activation(non_linearity.lower())
        self._cache: dict = {}
        self._cache_key: tuple | None = None

    # -- tasks ---------------------------------------------------------------------------------------------------
    def add_task(self, name: str) -> nn.Parameter:
        """Append a task; returns its new embedding (the only thing a new task needs to learn)."""
        ref = self.task_embeddings[0]
        self.task_embeddings.append(nn.Parameter(torch.randn(ref.shape, device=ref.device, dtype=ref.dtype)))
        self.tasks.append(name)
        return self.task_embeddings[-1]

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
        task_emb = self.task_embeddings[task]
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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # hf_adapter_kit 0.1.0 saved the task embeddings by name (`task_embeddings.<task>`); now by position
        for index, name in enumerate(self.tasks):
            old = f"{prefix}task_embeddings.{name}"
            if old in state_dict and f"{prefix}task_embeddings.{index}" not in state_dict:
                state_dict[f"{prefix}task_embeddings.{index}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
                # under autocast the generated gamma/beta come out in the autocast dtype; layer_norm wants the input's
                rows = F.layer_norm(
                    rows, (self.hidden_size,), w["ln_weight"].to(rows.dtype), w["ln_bias"].to(rows.dtype)
                )
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
