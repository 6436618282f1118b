"""One token per serving forward pass of a model, so that a check every layer would repeat runs once per pass.

Hyperformer++'s serving engine (``serving.py``) reads adapters it generated and kept in a bank; before using them it
checks that the parameters they came from are unchanged (same storage, version, dtype), 17 tensors read per check.
Done by every layer of every decoding step, that check cost more than the adapter's own arithmetic. Parameters do
not change in the middle of a forward pass, so a layer that knows which pass it runs in checks once per pass and
reuses the answer.

:func:`track_passes` gives a model's forward calls their tokens (a pre-hook pushes one, a forward hook with
``always_call=True`` pops it, on error too); :func:`current_pass` reads the innermost one, or ``None`` outside any
tracked forward, where every call checks again. Only a pass the bank may serve (eval mode, no autograd) gets a
token; any other pushes ``None``, which nothing reads (autograd runs the paper's adapter, training mode skips the
bank). ``adapters`` has its own per-call object, the ``ForwardContext``, which its layers pass instead. The stack is
per thread, as a forward pass is.
"""

from __future__ import annotations

import threading

import torch
from torch import nn


_LOCAL = threading.local()


def current_pass() -> object | None:
    """The token of the innermost tracked forward pass running in this thread, or ``None``."""
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


def _begin(module: nn.Module, args: tuple) -> None:
    serving = not module.training and not torch.is_grad_enabled()
    _LOCAL.__dict__.setdefault("stack", []).append(object() if serving else None)


def _end(module: nn.Module, args: tuple, output: object) -> None:
    stack = getattr(_LOCAL, "stack", None)
    if stack:
        stack.pop()


def track_passes(model: nn.Module) -> None:
    """Give each serving forward call of ``model`` a token of its own (no-op if it already has)."""
    if _begin not in model._forward_pre_hooks.values():
        model.register_forward_pre_hook(_begin)
        model.register_forward_hook(_end, always_call=True)


def untrack_passes(model: nn.Module) -> None:
    """Remove :func:`track_passes`' hooks from ``model`` (no-op if it has none). The hooks are found by function,
    not by handle, so that a deep copy of a tracked model is untracked as well."""
    for hooks, function in ((model._forward_pre_hooks, _begin), (model._forward_hooks, _end)):
        for key in [key for key, hook in hooks.items() if hook is function]:
            del hooks[key]
            model._forward_hooks_always_called.pop(key, None)
