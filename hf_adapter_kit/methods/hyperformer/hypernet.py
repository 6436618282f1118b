"""Hyperformer++'s shared hypernetwork (Karimi Mahabadi et al. 2021), free of any adapter library.

Task, layer-id and position embeddings are concatenated, projected (Linear, ReLU, Linear) and layer-normed; one
shared set of generators turns that vector into the adapter's down/up weights and biases and the gamma/beta of its
conditional layer norm. Every example of a batch gets its own task's adapter, without a loop over tasks: a batch that
mixes tasks generates each example's weights in one call per (layer, position) and runs one batched matmul per
projection.

Serving (eval mode, no autograd) reads the adapters from a bank: per (layer, position), every task's folded
adapter, generated the first time the task is served (with the other tasks missing then) and kept while the
parameters it came from are unchanged (same storage, version and dtype: an optimizer step, a reload, a move or a cast
is seen; ``train()`` empties it). Each row packs a task's whole adapter (:meth:`HyperNetwork._fold`): a one-task
batch runs on views of its row, a mixed batch gathers each example's row in one op and runs one batched matmul per
projection, with no generation at all. The bank holds every task when they fit in ``cache_bytes`` (``CACHE_BYTES``,
128 MiB, by default; :meth:`HyperNetwork.bank_task_bytes` per task, 498 KB for the embedded MiniLM), else its rows
go to the tasks most recently served; a batch holding more tasks than it has rows is generated for that batch
alone. Memory for N tasks is the hypernetwork plus ``N * task_embedding_dim`` floats, plus the bank (set
``cache_bytes = 0`` for none). A row's rounding depends on the tasks generated with it, so a served output may
differ from one served before the row was last refilled in its last bits. Inside a model's forward pass
(``common/passes.py``) the parameters are checked once per pass, not once per layer.

The conditional layer norm is folded into the down projection, so the activations of a large batch are never
normalised in a pass of their own: ``W (gamma * (h - mu) / sigma + beta) + c = W' h / sigma + (W beta + c)``, with
``W' = W diag(gamma)`` centred (its rows' means taken out, which takes out ``mu``) and ``sigma`` each token's
standard deviation (two reductions over ``h``). A few rows (a decoding step) are normalised by ``F.layer_norm`` and
projected with the same folded weights. The up projection's bias rides in its matrix (a last row, against a
constant activation the down projection makes), so the adapter's output is added into the sub-block's output by the
matmul itself (in place, when the caller owns that output and autograd is off).

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

from ...errors import invalid
from ...routing import Routing
from ..common.checks import POSITIONS
from ..common.ops import matmul_into, per_example_linear
from ..common.weights import init_projection


LN_EPS = 1e-5  # F.layer_norm's default, which the conditional layer norm used before it was folded
# From this many rows (tokens x examples) on, the folded layer norm beats F.layer_norm on the activations; below it,
# F.layer_norm's one op beats the folded form's dozen (on the 2-core CPU, d=576: 6 vs 24 us for one row, 76 vs 69
# for 256).
FOLD_FROM_ROWS = 128
CACHE_BYTES = 128 * 2**20  # the serving bank's default budget, every (layer, position) together


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
        # the up projection's bias rides on a constant activation act(1) (see `_fold`)
        self._act_one = float(self.act(torch.ones(())))
        if not self._act_one:
            raise invalid("non_linearity", non_linearity, "an activation that is not zero at 1 (relu, gelu, ...).")
        self.cache_bytes = CACHE_BYTES  # the serving bank's budget (see the module's docstring)
        self._bank: dict = {}  # (layer, position) -> (shared state, packed rows (see `_fold`), (task, state) per row)
        self._row_of: OrderedDict = OrderedDict()  # task -> its row in every slot of the bank, least recent first
        self._capacity = 0  # rows of the bank as allocated
        self._pass_memo: dict = {}  # name -> (forward pass token, key, value), see `_in_pass`

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

    # -- serving bank (eval mode, no autograd) ----------------------------------------------------------------------
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

    # Read on every pass when serving, so read directly from the modules' registries: the parameters as they are now
    # (a parameter replaced by a load or a cast is seen at once), without `parameters()`' walk of the module tree.
    def _shared_params(self) -> list[torch.Tensor]:
        """Every parameter but the task embeddings."""
        return _own_parameters(self._projector_modules() + self._generator_modules())

    def _in_pass(self, name: str, token: object | None, compute: Callable[[], object], key: object = None):
        """``compute()``, once per forward pass ``token`` (:mod:`..common.passes`) and ``key``; every call when
        ``token`` is ``None``."""
        if token is not None:
            memo = self._pass_memo.get(name)
            if memo is not None and memo[0] is token and memo[1] is key:
                return memo[2]
        value = compute()
        if token is not None:
            self._pass_memo[name] = (token, key, value)
        return value

    def bank_task_bytes(self) -> int:
        """Bytes one task takes in the serving bank: its folded adapter at every (layer, position)."""
        per_slot = self._packed_rows() * self.hidden_size  # see `_fold`
        slots = self.layer_embeddings.num_embeddings * len(self.positions)
        return per_slot * slots * self.layer_embeddings.weight.element_size()

    def bank_capacity(self) -> int:
        """How many tasks' adapters the serving bank holds: every task's when they fit in ``cache_bytes``."""
        return min(len(self.tasks), self.cache_bytes // self.bank_task_bytes())

    def bank_bytes(self) -> int:
        """Bytes the serving bank holds now, every (layer, position) together."""
        return sum(t.numel() * t.element_size() for _, t, _ in self._bank.values() if t is not None)

    def _rows_for(self, routing: Routing) -> tuple | None:
        """The bank rows of the tasks present (least recently used rows are reassigned), each example's row, and
        each present task's state; ``None`` when the bank cannot serve this batch."""
        capacity = self.bank_capacity()
        if not 0 < len(routing.present) <= capacity:  # (training and autograd never get here: `_from_bank`)
            return None
        states = [self._state([self.task_embeddings[t]]) for t in routing.present]
        if None in states:
            return None
        if capacity != self._capacity:  # tasks were added, or the budget or the dtype changed
            self._bank.clear()
            self._row_of.clear()
            self._capacity = capacity
        for task in routing.present:
            if task in self._row_of:
                self._row_of.move_to_end(task)
        for task in routing.present:  # the least recent rows are never those of tasks present
            if task not in self._row_of:
                free = len(self._row_of)
                self._row_of[task] = free if free < capacity else self._row_of.popitem(last=False)[1]
        rows = [self._row_of[t] for t in routing.present]
        return rows, torch.tensor(rows, device=routing.ids.device).index_select(0, routing.inverse), states

    def _from_bank(self, routing: Routing, layer: int, position: str, token: object | None) -> torch.Tensor | None:
        """Each example's packed adapter (:meth:`_fold`), stacked (a mixed batch) or the one task's (a one-task
        batch), read from the serving bank and generated there first for the tasks whose row is missing or stale;
        ``None`` when not serving (training, autograd, inference-tensor parameters) or when the batch holds more
        tasks than the bank."""
        if self.training or torch.is_grad_enabled():
            return None
        shared = self._in_pass("shared", token, lambda: self._state(self._shared_params()))
        found = self._in_pass("rows", token, lambda: self._rows_for(routing), routing) if shared else None
        if found is None:
            return None
        rows, example_rows, states = found
        bank, held = self._slot(layer, position, shared)
        held_now = list(zip(routing.present, states, strict=True))
        stale = [i for i, row in enumerate(rows) if held[row] != held_now[i]]
        if stale:
            packed = self._fold(self.generate(torch.tensor([routing.present[i] for i in stale]), layer, position))
            if bank is None:
                with torch.inference_mode(False):  # the bank stays writable outside inference mode too
                    bank = packed.new_empty((self._capacity, *packed.shape[1:]))
                self._bank[(layer, position)] = (shared, bank, held)
            bank.index_copy_(0, torch.tensor([rows[i] for i in stale], device=bank.device), packed)
            for i in stale:
                held[rows[i]] = held_now[i]
        if routing.single is not None:
            return bank[rows[0]]
        return bank.index_select(0, example_rows)  # one gather of everything each example needs

    def _slot(self, layer: int, position: str, shared: tuple) -> tuple[torch.Tensor | None, list]:
        """The bank's tensor at (layer, position) (``None`` until first filled) and, per row, the (task, state) it
        holds; emptied when a shared parameter changed."""
        slot = self._bank.get((layer, position))
        if slot is None or slot[0] != shared:
            slot = self._bank[(layer, position)] = (shared, None, [None] * self._capacity)
        return slot[1], slot[2]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # hf_adapter_kit 0.1.0 saved the task embeddings by name (`task_embeddings.<task>`); now by position
        for index, name in enumerate(self.tasks):
            old = f"{prefix}task_embeddings.{name}"
            if old in state_dict and f"{prefix}task_embeddings.{index}" not in state_dict:
                state_dict[f"{prefix}task_embeddings.{index}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True):
        self._bank.clear()
        self._row_of.clear()
        self._pass_memo.clear()
        return super().train(mode)

    # -- the adapter -----------------------------------------------------------------------------------------------
    def _packed_rows(self) -> int:
        """Rows of ``d`` values one (task, layer, position) adapter takes packed: see :meth:`_fold`."""
        n = self.bottleneck_size + 1
        return 2 * n + -(-n // self.hidden_size)

    def _fold(self, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """Stacked generated weights ``(k, ...)``, packed into one ``(k, 2 (b + 1) + 1, d)`` tensor, in the form
        the adapter computes with (so a mixed batch gathers each example's adapter in one op):

        - rows ``[0, b]``: the down weight, with a last row of zeros and a bias of one, so the down projection's
          last output is the constant ``act(1)`` after the activation;
        - rows ``[b + 1, 2b + 1]``: the up projection ``[W_up^T; b_up / act(1)]``, whose last row is its bias:
          one matmul, which can add its output into another tensor;
        - the last row (rows, for a bottleneck as wide as ``d``): the down projection's bias, then zeros.

        The conditional layer norm is folded into the down projection: with ``W' = W diag(gamma)`` centred (each row
        minus its mean, so that ``W' h = W diag(gamma) (h - mu)``), ``down(LN(h)) = W' h / sigma + (W beta + c)``."""
        k, d, b = w["down_weight"].shape[0], self.hidden_size, self.bottleneck_size
        down, bias = w["down_weight"], w["down_bias"]
        if self.conditional_layer_norm:
            scaled = down * w["ln_weight"].unsqueeze(1)
            bias = bias + torch.bmm(down, w["ln_bias"].unsqueeze(2)).squeeze(2)
            down = scaled - scaled.mean(-1, keepdim=True)
        bias_rows = self._packed_rows() - 2 * (b + 1)
        bias = torch.cat([bias, bias.new_ones(k, 1), bias.new_zeros(k, bias_rows * d - b - 1)], dim=1)
        up_bias = w["up_bias"] / self._act_one
        parts = [down, down.new_zeros(k, 1, d), w["up_weight"].transpose(1, 2), up_bias.unsqueeze(1)]
        return torch.cat([*parts, bias.view(k, bias_rows, d)], dim=1)

    def _unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Views of a packed adapter (one, or one per example): down weight, down bias, up (see :meth:`_fold`)."""
        n = self.bottleneck_size + 1
        return packed[..., :n, :], packed[..., 2 * n :, :].flatten(-2)[..., :n], packed[..., n : 2 * n, :]

    def _normalised_down(self, hidden: torch.Tensor, projected: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``projected`` (``hidden`` times the centred folded down weight) divided by each token's standard deviation,
        plus ``bias``: the down projection of the layer-normed ``hidden``. With ``m`` the sum of a token's ``d``
        values and ``s`` the sum of their squares, ``d var = s - m^2 / d``, so ``1 / sigma = sqrt(d) / sqrt(s - m^2
        / d + d eps)``: two reductions over ``hidden``, in float32, and a few ops on one number per token."""
        d = hidden.shape[-1]
        total = hidden.sum(-1, keepdim=True, dtype=torch.float32)
        if hidden.requires_grad:  # the norm's gradient is undefined at 0; the squares' is not
            squares = hidden.float().square().sum(-1, keepdim=True)
        else:  # one read of the activations, no write
            squares = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=torch.float32).square()
        inv = torch.rsqrt(torch.addcmul(squares, total, total, value=-1 / d).clamp_min(0) + d * LN_EPS)
        if bias.dim() == 2:  # one adapter per example: (batch, out) -> (batch, 1, out) against (batch, tokens, out)
            bias = bias.unsqueeze(1)
        return torch.addcmul(bias, projected, inv.to(hidden.dtype), value=math.sqrt(d))

    def _down(self, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, linear) -> torch.Tensor:
        """The down projection of the task-normed ``hidden`` with folded ``weight`` and ``bias``; ``linear`` is
        ``F.linear`` (one adapter) or :func:`per_example_linear` (one per example). A few rows (decoding) are
        normalised by ``F.layer_norm``, one op instead of the folded form's handful of small ones; the same result
        either way."""
        if not self.conditional_layer_norm:
            return linear(hidden, weight, bias)
        if hidden.numel() <= FOLD_FROM_ROWS * hidden.shape[-1]:
            return linear(F.layer_norm(hidden, hidden.shape[-1:], eps=LN_EPS), weight, bias)
        return self._normalised_down(hidden, linear(hidden, weight, None), bias)

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
        """``up(act(down(LN_task(h))))`` with generated weights, each example with its own task's weights; plus
        ``into`` (a tensor of the output's shape) when given, added by the up projection's matmul itself: into
        ``into`` itself with ``overwrite`` (when the caller owns it and nothing records it for autograd), else into
        a new tensor.

        Serving reads the weights from the bank (one gather for a mixed batch, a view for a one-task batch);
        otherwise they are generated for the tasks present in one call. A mixed batch runs one batched matmul per
        projection. ``pass_token`` names the model's forward pass (see :mod:`..common.passes`): the bank is then
        checked once per pass instead of once per call.
        """
        packed = self._from_bank(routing, layer, position, pass_token)
        if packed is None:
            packed = self._fold(self.generate(routing.unique, layer, position))
            packed = packed[0] if routing.single is not None else packed.index_select(0, routing.inverse)
        if packed.dtype != hidden.dtype:
            packed = packed.to(hidden.dtype)
        down_weight, down_bias, up = self._unpack(packed)
        linear = F.linear if packed.dim() == 2 else per_example_linear
        overwrite = overwrite and not torch.is_grad_enabled()  # autograd may have saved `into` (it can be `hidden`)
        return matmul_into(self.act(self._down(hidden, down_weight, down_bias, linear)), up, into, overwrite)


def _own_parameters(modules: list[nn.Module]) -> list[torch.Tensor]:
    return [p for m in modules for p in m._parameters.values() if p is not None]


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
