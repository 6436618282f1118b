"""Hyperformer++'s shared hypernetwork (Karimi Mahabadi et al. 2021), free of any adapter library.

Task, layer-id and position embeddings are concatenated, projected (Linear, ReLU, Linear) and layer-normed; one
shared set of generators turns that vector into the adapter's down/up weights and biases and the gamma/beta of its
conditional layer norm. A batch that mixes tasks generates each example's weights in one call per (layer,
position) and runs one batched matmul per projection, so its cost does not grow with the number of tasks. In eval
mode without autograd the weights of one-task batches are cached per (task, layer, position) for the last
``CACHED_TASKS`` tasks; an entry is dropped on ``train()`` and whenever a parameter it depends on changes (in-place
update, reload, move, cast). Memory for N tasks is the
hypernetwork plus ``N * task_embedding_dim`` floats, plus at most ``CACHED_TASKS`` tasks' generated adapters.

With ``init_weights`` ``"mam_adapter"`` / ``"lora"`` (the default) the up-projection generators start at zero, so
every adapter starts as the identity; ``"bert"`` / ``"houlsby"`` draw them too (a non-identity start).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import get_activation

from ..common.checks import POSITIONS
from ..common.routing import Routing, per_example_linear
from ..common.weights import init_projection


class HyperNetwork(nn.Module):
    """Hyperformer++'s shared hypernetwork: generates every (task, layer, position) adapter of a model."""

    CACHED_TASKS = 16  # one-task batches in eval mode keep this many tasks' generated adapters (LRU)

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
        self._cache: OrderedDict = OrderedDict()  # (task, layer, position) -> (state, weights), one-task batches

    # -- tasks ---------------------------------------------------------------------------------------------------
    def add_task(self, name: str) -> nn.Parameter:
        """Append a task; returns its new embedding (the only thing a new task needs to learn)."""
        ref = self.task_embeddings[0]
        self.task_embeddings.append(nn.Parameter(torch.randn(ref.shape, device=ref.device, dtype=ref.dtype)))
        self.tasks.append(name)
        return self.task_embeddings[-1]

    # -- generation ----------------------------------------------------------------------------------------------
    def generate(self, tasks: torch.Tensor, layer: int, position: str) -> dict[str, torch.Tensor]:
        """The adapter weights of each task in ``tasks`` (a 1-D tensor of task indices) at one (layer, position),
        stacked along a first dimension of ``len(tasks)``: generated for all of them at once."""
        return self._weights(self._embed(tasks, layer, position))

    def _embed(self, tasks: torch.Tensor, layer: int, position: str) -> torch.Tensor:
        """The projected, layer-normed embedding ``(len(tasks), projected_dim)`` the generators read."""
        device = self.layer_embeddings.weight.device
        task_emb = torch.stack([self.task_embeddings[t] for t in tasks.tolist()])
        slot = torch.tensor([layer, self.positions.index(position)], device=device)
        layer_emb = self.layer_embeddings(slot[0]).expand_as(task_emb)
        pos_emb = self.position_embeddings(slot[1]).expand_as(task_emb)
        return self.projector_norm(self.projector(torch.cat([task_emb, layer_emb, pos_emb], dim=-1)))

    def _weights(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        k, d, b = z.shape[0], self.hidden_size, self.bottleneck_size
        weights = {
            "down_weight": self.down_weight(z).view(k, b, d),
            "down_bias": self.down_bias(z),
            "up_weight": self.up_weight(z).view(k, d, b),
            "up_bias": self.up_bias(z),
        }
        if self.conditional_layer_norm:
            weights["ln_weight"] = self.ln_weight(z)
            weights["ln_bias"] = self.ln_bias(z)
        return weights

    def _generate_one(self, task: int, layer: int, position: str) -> dict[str, torch.Tensor]:
        """One task's weights, unstacked; kept in eval mode without autograd for the last ``CACHED_TASKS`` tasks.

        An entry is reused while the parameters it was generated from are unchanged (same storage, version, dtype).
        """

        def fresh() -> dict[str, torch.Tensor]:
            return {k: v[0] for k, v in self.generate(torch.tensor([task]), layer, position).items()}

        state = None if self.training or torch.is_grad_enabled() else self._param_state(task)
        if state is None:  # training, autograd, or parameters made under inference_mode (no version counter)
            return fresh()
        key = (task, layer, position)
        hit = self._cache.get(key)
        if hit is None or hit[0] != state:
            hit = self._cache[key] = (state, fresh())
        self._cache.move_to_end(key)
        slots = self.layer_embeddings.num_embeddings * len(self.positions)
        while len(self._cache) > self.CACHED_TASKS * slots:
            self._cache.popitem(last=False)
        return hit[1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # hf_adapter_kit 0.1.0 saved the task embeddings by name (`task_embeddings.<task>`); now by position
        for index, name in enumerate(self.tasks):
            old = f"{prefix}task_embeddings.{name}"
            if old in state_dict and f"{prefix}task_embeddings.{index}" not in state_dict:
                state_dict[f"{prefix}task_embeddings.{index}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _param_state(self, task: int) -> tuple | None:
        """What one task's generated weights depend on: the shared parameters and that task's embedding (``None``
        when a parameter is an inference tensor, whose in-place changes nothing records)."""
        shared = [p for name, child in self.named_children() if name != "task_embeddings" for p in child.parameters()]
        params = (*shared, self.task_embeddings[task])
        if any(p.is_inference() for p in params):
            return None
        return tuple((p.data_ptr(), p._version, p.dtype) for p in params)

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)

    # -- the adapter -----------------------------------------------------------------------------------------------
    def adapter(self, hidden: torch.Tensor, layer: int, position: str, routing: Routing) -> torch.Tensor:
        """``up(act(down(LN_task(h))))`` with generated weights, each example with its own task's weights.

        A one-task batch uses that task's (cached) weights; a mixed batch generates every example's weights in one
        call and runs one batched matmul per projection.
        """
        task = routing.single
        if task is not None:
            w = self._generate_one(task, layer, position)
            if self.conditional_layer_norm:
                # under autocast the generated gamma/beta come out in the autocast dtype; layer_norm wants the input's
                hidden = F.layer_norm(
                    hidden, (self.hidden_size,), w["ln_weight"].to(hidden.dtype), w["ln_bias"].to(hidden.dtype)
                )
            down = F.linear(hidden, w["down_weight"], w["down_bias"])
            return F.linear(self.act(down), w["up_weight"], w["up_bias"])
        # each example's embedding, then its weights: generators are cheap next to gathering generated weights
        w = self._weights(self._embed(routing.unique, layer, position).index_select(0, routing.inverse))
        w = {k: v.to(hidden.dtype) for k, v in w.items()}
        down_weight, down_bias = w["down_weight"], w["down_bias"]
        if self.conditional_layer_norm:
            # W (n * gamma + beta) + c = (W diag(gamma)) n + (W beta + c): the per-example layer-norm affine is folded
            # into the down projection, so the activations are normalised once and never scaled
            hidden = F.layer_norm(hidden, (self.hidden_size,))
            down_bias = down_bias + torch.bmm(down_weight, w["ln_bias"].unsqueeze(2)).squeeze(2)
            down_weight = down_weight * w["ln_weight"].unsqueeze(1)
        down = self.act(per_example_linear(hidden, down_weight, down_bias))
        return per_example_linear(down, w["up_weight"], w["up_bias"])


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
