"""Hyperformer++'s shared hypernetwork (Karimi Mahabadi et al. 2021), free of any adapter library.

Task, layer-id and position embeddings are concatenated, projected (Linear, ReLU, Linear) and layer-normed; one
shared set of generators turns that vector into the adapter's down/up weights and biases and the gamma/beta of its
conditional layer norm. Every example of a batch gets its own task's adapter, without a loop over tasks: a batch that
mixes tasks generates each example's weights in one call per (layer, position) and runs one batched matmul per
projection.

Serving (eval mode, no autograd) caches what the parameters determine, and drops an entry whenever a parameter it
depends on changes (in-place update, reload, move, cast) and on ``train()``:
- each task's projected embedding per (layer, position): ``projected_dim`` floats, so a mixed batch only runs the
  generators;
- for one-task batches, the generated adapters of the last ``CACHED_TASKS`` tasks (LRU).
Memory for N tasks is the hypernetwork plus ``N * task_embedding_dim`` floats, plus these caches. Inside a model's
forward pass (``common/passes.py``) the parameters are checked once per pass, not once per layer.

The conditional layer norm is folded into the down projection, so the activations of a large batch are never
normalised in a pass of their own: ``W (gamma * (h - mu) / sigma + beta) + c = (W diag(gamma) h - mu W gamma) / sigma
+ (W beta + c)``, with ``mu`` and ``sigma`` the per-token mean and standard deviation (two reductions over ``h``).
A few rows (a decoding step) are normalised by ``F.layer_norm`` and projected with the same folded weights.

With ``init_weights`` ``"mam_adapter"`` / ``"lora"`` (the default) the up-projection generators start at zero, so
every adapter starts as the identity; ``"bert"`` / ``"houlsby"`` draw them too (a non-identity start).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import get_activation

from ..common.checks import POSITIONS
from ..common.routing import Routing, per_example_linear
from ..common.weights import init_projection


LN_EPS = 1e-5  # F.layer_norm's default, which the conditional layer norm used before it was folded
# From this many rows (tokens x examples) on, the folded layer norm beats F.layer_norm on the activations; below it,
# F.layer_norm's one op beats the folded form's dozen (on the 2-core CPU, d=576: 6 vs 24 us for one row, 76 vs 69
# for 256).
FOLD_FROM_ROWS = 128


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
        self._cache: OrderedDict = OrderedDict()  # (task, layer, position) -> (state, folded weights)
        self._rows: dict = {}  # (layer, position) -> (state, {task: (state, projected embedding)})
        self._pass_states: dict = {}  # what `_state` read -> (forward pass token, state), see `_state_in_pass`

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

    # -- serving caches (eval mode, no autograd) -----------------------------------------------------------------
    def _state(self, params: Sequence[torch.Tensor]) -> tuple | None:
        """What a cached value made from ``params`` depends on, or ``None`` when nothing may be cached: training,
        autograd, or a parameter that is an inference tensor (its in-place changes are not recorded)."""
        if self.training or torch.is_grad_enabled() or any(p.is_inference() for p in params):
            return None
        return tuple((p.data_ptr(), p._version, p.dtype) for p in params)

    def _projector_modules(self) -> list[nn.Module]:
        return [self.layer_embeddings, self.position_embeddings, self.projector[0], self.projector[2],
                self.projector_norm]  # fmt: skip

    def _generator_modules(self) -> list[nn.Module]:
        generators = [self.down_weight, self.down_bias, self.up_weight, self.up_bias]
        return generators + ([self.ln_weight, self.ln_bias] if self.conditional_layer_norm else [])

    # Read on every call when serving, so read directly from the modules' registries: the parameters as they are now
    # (a parameter replaced by a load or a cast is seen at once), without `parameters()`' walk of the module tree.
    def _shared_params(self) -> list[torch.Tensor]:
        """Every parameter but the task embeddings."""
        return _own_parameters(self._projector_modules() + self._generator_modules())

    def _projector_params(self) -> list[torch.Tensor]:
        return _own_parameters(self._projector_modules())

    def _state_in_pass(self, name: tuple, params: Callable[[], list[torch.Tensor]], token: object | None):
        """``_state(params())``, read once per forward pass ``token`` (:mod:`..common.passes`) and reused by the
        pass's other layers; every call when ``token`` is ``None``. Training and autograd never cache, memo or not."""
        if self.training or torch.is_grad_enabled():
            return None
        if token is not None:
            memo = self._pass_states.get(name)
            if memo is not None and memo[0] is token:
                return memo[1]
        state = self._state(params())
        if token is not None:
            self._pass_states[name] = (token, state)
        return state

    def _projected(self, routing: Routing, layer: int, position: str, token: object | None = None) -> torch.Tensor:
        """Each example's projected embedding ``(batch, projected_dim)``; when serving, each task's is computed once
        per (layer, position) and kept."""
        shared = self._state_in_pass(("projector",), self._projector_params, token)
        states = {
            t: self._state_in_pass(("task", t), lambda t=t: [self.task_embeddings[t]], token) for t in routing.present
        } if shared else {}  # fmt: skip
        if shared is None or None in states.values():
            return self._embed(routing.unique, layer, position).index_select(0, routing.inverse)
        key = (layer, position)
        if key not in self._rows or self._rows[key][0] != shared:
            self._rows[key] = (shared, {})
        rows = self._rows[key][1]
        stale = [t for t, state in states.items() if t not in rows or rows[t][0] != state]
        if stale:
            for t, z in zip(stale, self._embed(torch.tensor(stale), layer, position), strict=True):
                rows[t] = (states[t], z)
        return torch.stack([rows[t][1] for t in routing.present]).index_select(0, routing.inverse)

    def _folded_one(
        self, task: int, layer: int, position: str, token: object | None = None
    ) -> dict[str, torch.Tensor]:
        """One task's folded adapter (:meth:`_fold`), unstacked; kept when serving for the last ``CACHED_TASKS``
        tasks, while the parameters it was generated from are unchanged (same storage, version, dtype)."""
        params = lambda: [*self._shared_params(), self.task_embeddings[task]]  # noqa: E731
        state = self._state_in_pass(("one", task), params, token)
        key = (task, layer, position)
        hit = self._cache.get(key) if state is not None else None
        if hit is None or hit[0] != state:
            folded = self._fold(self.generate(torch.tensor([task]), layer, position))
            hit = (state, {k: v[0] for k, v in folded.items()})
            if state is None:
                return hit[1]
            self._cache[key] = hit
            slots = self.layer_embeddings.num_embeddings * len(self.positions)
            while len(self._cache) > self.CACHED_TASKS * slots:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return hit[1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # hf_adapter_kit 0.1.0 saved the task embeddings by name (`task_embeddings.<task>`); now by position
        for index, name in enumerate(self.tasks):
            old = f"{prefix}task_embeddings.{name}"
            if old in state_dict and f"{prefix}task_embeddings.{index}" not in state_dict:
                state_dict[f"{prefix}task_embeddings.{index}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True):
        self._cache.clear()
        self._rows.clear()
        self._pass_states.clear()
        return super().train(mode)

    # -- the adapter -----------------------------------------------------------------------------------------------
    def _fold(self, w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Stacked generated weights with the conditional layer norm folded into the down projection:
        ``down_weight`` becomes ``W diag(gamma)``, ``down_bias`` ``W beta + c``, and ``down_sum`` (the new weight's
        row sums, ``W gamma``) takes the mean out. Without the conditional layer norm, the weights as generated."""
        if not self.conditional_layer_norm:
            return w
        gamma_beta = torch.stack([w["ln_weight"], w["ln_bias"]], dim=2)  # (k, d, 2)
        down_sum, beta_part = torch.bmm(w["down_weight"], gamma_beta).unbind(2)
        return {
            "down_weight": w["down_weight"] * w["ln_weight"].unsqueeze(1),
            "down_bias": w["down_bias"] + beta_part,
            "down_sum": down_sum,
            "up_weight": w["up_weight"],
            "up_bias": w["up_bias"],
        }

    def _normalised_down(self, hidden: torch.Tensor, projected: torch.Tensor, w: dict[str, torch.Tensor]):
        """``projected`` (``hidden`` times the folded down weight) turned into the down projection of the layer-normed
        ``hidden``: ``(projected - mu * down_sum) / sigma + down_bias``, per token."""
        mean = hidden.mean(-1, keepdim=True, dtype=torch.float32)
        if hidden.requires_grad:  # the norm's gradient is undefined at 0; the squares' is not
            mean_square = hidden.float().square().mean(-1, keepdim=True)
        else:  # one read of the activations, no write
            mean_square = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=torch.float32).square()
            mean_square = mean_square / hidden.shape[-1]
        inv_std = torch.rsqrt((mean_square - mean.square()).clamp_min(0) + LN_EPS).to(hidden.dtype)
        down_sum, down_bias = w["down_sum"], w["down_bias"]
        # one adapter per example: (batch, out) -> (batch, 1, out) against (batch, tokens, out)
        if down_sum.dim() == 2:
            down_sum, down_bias = down_sum.unsqueeze(1), down_bias.unsqueeze(1)
        return torch.addcmul(down_bias, projected - mean.to(hidden.dtype) * down_sum, inv_std)

    def _down(self, hidden: torch.Tensor, w: dict[str, torch.Tensor], linear) -> torch.Tensor:
        """The down projection of the task-normed ``hidden`` with folded weights ``w``; ``linear`` is ``F.linear``
        (one adapter) or :func:`per_example_linear` (one per example). A few rows (decoding) are normalised by
        ``F.layer_norm``, one op instead of the folded form's dozen small ones; the same result either way."""
        if not self.conditional_layer_norm:
            return linear(hidden, w["down_weight"], w["down_bias"])
        if hidden.numel() <= FOLD_FROM_ROWS * hidden.shape[-1]:
            return linear(F.layer_norm(hidden, hidden.shape[-1:], eps=LN_EPS), w["down_weight"], w["down_bias"])
        return self._normalised_down(hidden, linear(hidden, w["down_weight"], None), w)

    def adapter(
        self, hidden: torch.Tensor, layer: int, position: str, routing: Routing, pass_token: object | None = None
    ) -> torch.Tensor:
        """``up(act(down(LN_task(h))))`` with generated weights, each example with its own task's weights.

        A one-task batch uses that task's (cached) weights; a mixed batch generates every example's weights in one
        call and runs one batched matmul per projection. ``pass_token`` names the model's forward pass (see
        :mod:`..common.passes`): the caches are then checked once per pass instead of once per call.
        """
        task = routing.single
        if task is not None:
            w = _in_dtype(self._folded_one(task, layer, position, pass_token), hidden.dtype)
            return F.linear(self.act(self._down(hidden, w, F.linear)), w["up_weight"], w["up_bias"])
        # each example's projected embedding, then its weights: the generators are cheap next to the matmuls
        projected = self._projected(routing, layer, position, pass_token)
        w = _in_dtype(self._fold(self._weights(projected)), hidden.dtype)
        return per_example_linear(self.act(self._down(hidden, w, per_example_linear)), w["up_weight"], w["up_bias"])


def _own_parameters(modules: list[nn.Module]) -> list[torch.Tensor]:
    return [p for m in modules for p in m._parameters.values() if p is not None]


def _in_dtype(weights: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    if weights["up_weight"].dtype == dtype:
        return weights
    return {k: v.to(dtype) for k, v in weights.items()}


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
