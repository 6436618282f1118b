"""Hyperformer++ as the paper writes it (Karimi Mahabadi et al. 2021): the shared hypernetwork and its adapter.

The equations, and where they are:

- :meth:`HyperNetwork.generate`: ``z = LayerNorm(W2 ReLU(W1 [task; layer; position] + c1) + c2)`` from the task's,
  the layer's and the position's (attention or FFN) embeddings, then one shared linear generator per weight:
  ``W_down = D z``, ``b_down = d z``, ``W_up = U z``, ``b_up = u z``, and the conditional layer norm's
  ``gamma = G z``, ``beta = B z`` (each generator with its own bias).
- :meth:`HyperNetwork.forward`: the adapter, ``A(h) = W_up act(W_down LN_task(h) + b_down) + b_up`` with
  ``LN_task(h) = gamma * (h - mu) / sigma + beta``; every example of a batch with its own task's weights (generated
  once per task present, gathered per example, one batched matmul per projection).

Training (autograd) runs exactly that. Serving (no autograd) runs the same adapter folded and packed, in eval mode
from a bank, with pass tokens (:mod:`.serving`, :mod:`.packed`, :mod:`.passes`); :meth:`HyperNetwork.adapter` picks
one or the other, and the tests hold the two to the same outputs.

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

from ...errors import invalid
from ...routing import Routing
from ..common.checks import POSITIONS
from ..common.ops import per_example_linear
from ..common.weights import init_projection
from . import serving
from .config import LN_EPS


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
        # The serving engine carries the up projection's bias on a constant activation act(1) (packed.py).
        self.act_at_one = float(self.act(torch.ones(())))
        if not self.act_at_one:
            raise invalid("non_linearity", non_linearity, "an activation that is not zero at 1 (relu, gelu, ...).")
        self.cache_bytes = serving.CACHE_BYTES  # the serving bank's budget (serving.py); 0 keeps nothing
        self.bank = serving.ServingBank()

    def add_task(self, name: str) -> nn.Parameter:
        """Append a task; returns its new embedding (the only thing a new task needs to learn)."""
        ref = self.task_embeddings[0]
        self.task_embeddings.append(nn.Parameter(torch.randn(ref.shape, device=ref.device, dtype=ref.dtype)))
        self.tasks.append(name)
        return self.task_embeddings[-1]

    # -- the paper's math ------------------------------------------------------------------------------------------
    def generate(self, tasks: torch.Tensor, layer: int, position: str) -> dict[str, torch.Tensor]:
        """The adapter weights of each task in ``tasks`` (a 1-D tensor of task indices) at one (layer, position),
        stacked along a first dimension of ``len(tasks)``: generated for all of them at once."""
        device = self.layer_embeddings.weight.device
        task_emb = torch.stack([self.task_embeddings[t] for t in tasks.tolist()])
        slot = torch.tensor([layer, self.positions.index(position)], device=device)
        layer_emb = self.layer_embeddings(slot[0]).expand_as(task_emb)
        pos_emb = self.position_embeddings(slot[1]).expand_as(task_emb)
        z = self.projector_norm(self.projector(torch.cat([task_emb, layer_emb, pos_emb], dim=-1)))
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

    def forward(self, hidden: torch.Tensor, layer: int, position: str, routing: Routing) -> torch.Tensor:
        """The adapter as the paper writes it, ``up(act(down(LN_task(h))))``, each example with its own task's
        weights: generated for the tasks present, gathered per example (a mixed batch) and applied."""
        w = self.generate(routing.unique, layer, position)
        if routing.single is not None:
            w, linear = {k: v[0] for k, v in w.items()}, F.linear
        else:
            w, linear = {k: v.index_select(0, routing.inverse) for k, v in w.items()}, per_example_linear
        if w["down_weight"].dtype != hidden.dtype:
            w = {k: v.to(hidden.dtype) for k, v in w.items()}
        if self.conditional_layer_norm:
            hidden = task_layer_norm(hidden, w["ln_weight"], w["ln_bias"])
        return linear(self.act(linear(hidden, w["down_weight"], w["down_bias"])), w["up_weight"], w["up_bias"])

    # -- training or serving ---------------------------------------------------------------------------------------
    def adapter(
        self,
        hidden: torch.Tensor,
        layer: int,
        position: str,
        routing: Routing,
        pass_token: object | None = None,
        into: torch.Tensor | None = None,
        overwrite: bool = False,
    ) -> torch.Tensor:
        """The adapter's output (:meth:`forward`), plus ``into`` (a tensor of the output's shape) when given.

        Under autograd (training, or any forward that may be differentiated) :meth:`forward` runs, and ``into`` is
        added into a new tensor. Without autograd the serving engine runs (:func:`.serving.serve`): the same adapter,
        folded and packed, from the bank in eval mode (generated for the batch in training mode, e.g. an ``adapters``
        adapter added after ``eval()``), ``into`` added by the up projection's matmul itself, into ``into`` itself
        with ``overwrite`` (when the caller owns it). ``pass_token`` names the model's forward pass (``adapters``'
        ``ForwardContext``; PEFT's is found by the engine): the bank is then checked once per pass, not per call.
        """
        if not torch.is_grad_enabled():
            return serving.serve(self, hidden, layer, position, routing, pass_token, into, overwrite)
        out = self(hidden, layer, position, routing)
        return out if into is None else into + out.to(into.dtype)

    def train(self, mode: bool = True):
        if mode:  # training mode never reads the bank: its memory is not kept for nothing. `eval()` keeps it (a
            self.bank.clear()  # server calling `eval()` before each request would otherwise refill every slot)
        return super().train(mode)

    # -- the serving bank's budget and size (serving.py) -------------------------------------------------------------
    def bank_task_bytes(self) -> int:
        """Bytes one task takes in the serving bank: its folded adapter at every (layer, position)."""
        return serving.task_bytes(self)

    def bank_capacity(self) -> int:
        """How many tasks' adapters the serving bank holds: every task's when they fit in ``cache_bytes``."""
        return serving.capacity(self)

    def bank_bytes(self) -> int:
        """Bytes the serving bank holds now, every (layer, position) together."""
        return self.bank.nbytes()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # hf_adapter_kit 0.1.0 saved the task embeddings by name (`task_embeddings.<task>`); now by position
        for index, name in enumerate(self.tasks):
            old = f"{prefix}task_embeddings.{name}"
            if old in state_dict and f"{prefix}task_embeddings.{index}" not in state_dict:
                state_dict[f"{prefix}task_embeddings.{index}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def task_layer_norm(hidden: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``gamma * (h - mu) / sigma + beta`` over the last dimension: ``gamma`` and ``beta`` are ``(d,)`` (one task) or
    ``(batch, d)`` (one per example)."""
    if gamma.dim() == 1:
        return F.layer_norm(hidden, hidden.shape[-1:], gamma, beta, eps=LN_EPS)
    shape = (gamma.shape[0], *[1] * (hidden.dim() - 2), gamma.shape[-1])
    normed = F.layer_norm(hidden, hidden.shape[-1:], eps=LN_EPS)
    return torch.addcmul(beta.view(shape), normed, gamma.view(shape))


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
