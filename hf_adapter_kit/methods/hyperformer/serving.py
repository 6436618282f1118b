"""Hyperformer++'s serving engine: what :meth:`.hypernet.HyperNetwork.adapter` runs without autograd.

Training (autograd) never comes here: it runs the adapter as the paper writes it (``hypernet.py``). Serving gives the
same outputs (tests/test_hyperformer_bank.py holds it to the paper's adapter) from:

- in eval mode, a bank (:class:`ServingBank`): per (layer, position), every task's adapter folded and packed
  (``packed.py``), generated the first time the task is served (with the other tasks missing then) and kept while the
  parameters it came from are unchanged (same storage, version and dtype: an optimizer step, a reload, a move or a
  cast is seen; training mode empties it, ``eval()`` keeps it). A one-task batch runs on views of its row (made once
  per row and kept), a mixed batch gathers each example's row in one op and runs one batched matmul per projection,
  with no generation at all;
- its budget: the bank holds every task when they fit in ``net.cache_bytes`` (:data:`CACHE_BYTES` by default;
  :func:`task_bytes` per task; docs/benchmarks.md gives it for the embedded MiniLM), else its rows go to the tasks most recently served;
  a batch holding more tasks than it has rows is generated and folded for that batch alone, as is every batch in
  training mode, with ``cache_bytes = 0`` or with parameters that are inference tensors (their in-place changes are
  not recorded). Memory for N tasks is the hypernetwork plus ``N * task_embedding_dim`` floats, plus the bank;
- pass tokens (``passes.py``): inside a model's forward pass the parameters are checked once per pass, not once per
  layer.

A row's rounding depends on the tasks generated with it, so a served output may differ from one served before the
row was last refilled in its last bits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ...routing import Routing
from ..common.weights import params_state
from .packed import fold, packed_rows, run_unpacked, unpack
from .passes import current_pass


CACHE_BYTES = 128 * 2**20  # the bank's default budget, every (layer, position) together


def serve(
    net: nn.Module,
    hidden: torch.Tensor,
    layer: int,
    position: str,
    routing: Routing,
    pass_token: object | None,
    into: torch.Tensor | None,
    overwrite: bool,
) -> torch.Tensor:
    """:meth:`.hypernet.HyperNetwork.adapter` when serving: from the bank when it can hold the batch's tasks, else
    from weights generated and folded for this batch. ``pass_token``: the model's forward pass (``adapters``'
    ``ForwardContext``), else the tracked pass running (:func:`.passes.current_pass`)."""
    token = pass_token if pass_token is not None else current_pass()
    weights = net.bank.lookup(net, routing, layer, position, token)
    if weights is None:
        packed = fold(net, net.generate(routing.unique, layer, position))
        weights = unpack(net, packed[0] if routing.single is not None else packed.index_select(0, routing.inverse))
    return run_unpacked(net, hidden, weights, into, overwrite)


def task_bytes(net: nn.Module) -> int:
    """Bytes one task takes in the bank: its folded adapter at every (layer, position)."""
    per_slot = packed_rows(net) * net.hidden_size
    slots = net.layer_embeddings.num_embeddings * len(net.positions)
    return per_slot * slots * net.layer_embeddings.weight.element_size()


def capacity(net: nn.Module) -> int:
    """How many tasks' adapters the bank holds: every task's when they fit in ``net.cache_bytes``."""
    return min(len(net.tasks), net.cache_bytes // task_bytes(net))


# Read on every pass, so read directly from the modules' registries: the parameters as they are now (a parameter
# replaced by a load or a cast is seen at once), without `parameters()`' walk of the module tree.
def shared_params(net: nn.Module) -> list[torch.Tensor]:
    """Every parameter of ``net`` but the task embeddings: what every task's generated adapter depends on."""
    modules = [net.layer_embeddings, net.position_embeddings, net.projector[0], net.projector[2], net.projector_norm]
    modules += [net.down_weight, net.down_bias, net.up_weight, net.up_bias]
    if net.conditional_layer_norm:
        modules += [net.ln_weight, net.ln_bias]
    return [p for m in modules for p in m._parameters.values() if p is not None]


class Slot(NamedTuple):
    """The bank at one (layer, position)."""

    shared: tuple  # the state of the shared parameters the rows were generated from
    rows: torch.Tensor | None  # packed adapters, one row per task held (``None`` until first filled)
    held: list  # per row, the (task, task embedding's state) it holds, or ``None``
    views: dict  # row -> its unpacked views (a one-task batch's weights), made once per row


class ServingBank:
    """The bank of one hypernetwork: per (layer, position), packed rows of generated adapters (see the module's
    docstring). Filled by :func:`serve` only."""

    def __init__(self):
        self.slots: dict[tuple[int, str], Slot] = {}
        self.row_of: OrderedDict = OrderedDict()  # task -> its row in every slot, least recent first
        self.capacity = 0  # rows of each slot as allocated
        self.pass_memo: dict = {}  # name -> (forward pass token, key, value), see `in_pass`

    def clear(self) -> None:
        self.slots.clear()
        self.row_of.clear()
        self.pass_memo.clear()

    def nbytes(self) -> int:
        """Bytes the bank holds now, every (layer, position) together."""
        return sum(s.rows.numel() * s.rows.element_size() for s in self.slots.values() if s.rows is not None)

    def in_pass(self, name: str, token: object | None, compute: Callable[[], object], key: object = None):
        """``compute()``, once per forward pass ``token`` and ``key``; every call when ``token`` is ``None``."""
        if token is not None:
            memo = self.pass_memo.get(name)
            if memo is not None and memo[0] is token and memo[1] is key:
                return memo[2]
        value = compute()
        if token is not None:
            self.pass_memo[name] = (token, key, value)
        return value

    def rows_for(self, net: nn.Module, routing: Routing) -> tuple | None:
        """The bank rows of the tasks present (least recently used rows are reassigned), each example's row, and
        each present task's state; ``None`` when the bank cannot serve this batch."""
        rows_now = capacity(net)
        if not 0 < len(routing.present) <= rows_now:
            return None
        states = [params_state([net.task_embeddings[t]]) for t in routing.present]
        if None in states:
            return None
        if rows_now != self.capacity:  # tasks were added, or the budget or the dtype changed
            self.slots.clear()
            self.row_of.clear()
            self.capacity = rows_now
        for task in routing.present:
            if task in self.row_of:
                self.row_of.move_to_end(task)
        for task in routing.present:  # the least recent rows are never those of tasks present
            if task not in self.row_of:
                free = len(self.row_of)
                self.row_of[task] = free if free < rows_now else self.row_of.popitem(last=False)[1]
        rows = [self.row_of[t] for t in routing.present]
        return rows, torch.tensor(rows, device=routing.ids.device).index_select(0, routing.inverse), states

    def lookup(
        self, net: nn.Module, routing: Routing, layer: int, position: str, token: object | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The adapter's weights as :func:`.packed.unpack` gives them: each example's, gathered in one op (a mixed
        batch), or the one task's row (a one-task batch: views kept with the row, since a decoding step pays for
        every op), read from the bank and generated there first for the tasks whose row is missing or stale; ``None``
        when the bank cannot serve (training mode, inference-tensor parameters, more tasks than rows)."""
        if net.training:
            return None
        shared = self.in_pass("shared", token, lambda: params_state(shared_params(net)))
        found = self.in_pass("rows", token, lambda: self.rows_for(net, routing), routing) if shared else None
        if found is None:
            return None
        rows, example_rows, states = found
        slot = self._slot(layer, position, shared)
        bank, held, views = slot.rows, slot.held, slot.views
        held_now = list(zip(routing.present, states, strict=True))
        stale = [i for i, row in enumerate(rows) if held[row] != held_now[i]]
        if stale:
            packed = fold(net, net.generate(torch.tensor([routing.present[i] for i in stale]), layer, position))
            if bank is None:
                with torch.inference_mode(False):  # the bank stays writable outside inference mode too
                    bank = packed.new_empty((self.capacity, *packed.shape[1:]))
                self.slots[(layer, position)] = slot._replace(rows=bank)
            bank.index_copy_(0, torch.tensor([rows[i] for i in stale], device=bank.device), packed)
            for i in stale:
                held[rows[i]] = held_now[i]
        if routing.single is not None:
            row = rows[0]
            if row not in views:  # views see the row's refills: the bank is written in place
                views[row] = unpack(net, bank[row])
            return views[row]
        return unpack(net, bank.index_select(0, example_rows))  # one gather of everything each example needs

    def _slot(self, layer: int, position: str, shared: tuple) -> Slot:
        """The bank at (layer, position); emptied when a shared parameter changed."""
        slot = self.slots.get((layer, position))
        if slot is None or slot.shared != shared:
            slot = self.slots[(layer, position)] = Slot(shared, None, [None] * self.capacity, {})
        return slot
