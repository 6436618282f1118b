"""The serving engine's form of Hyperformer++'s adapter: generated weights folded and packed into one tensor.

Only :mod:`.serving` (no autograd) runs this; training (autograd) runs the adapter as the paper writes it
(:meth:`.hypernet.HyperNetwork.forward`), and the tests hold the two to the same outputs.

Packing: each (task, layer, position) adapter is one ``(2 (b + 1) + 1, d)`` tensor (:func:`fold`), so a mixed batch
gathers each example's adapter in one op and runs one batched matmul per projection; a one-task batch runs on views.
The up projection's bias rides in its matrix (a last row, against a constant activation the down projection makes),
so the adapter's output is added into the sub-block's output by the matmul itself (in place, when the caller owns
that output).

Folding: the conditional layer norm is folded into the down projection, so the activations of a large batch are never
normalised in a pass of their own: ``W (gamma * (h - mu) / sigma + beta) + c = W' h / sigma + (W beta + c)``, with
``W' = W diag(gamma)`` centred (its rows' means taken out, which takes out ``mu``) and ``sigma`` each token's standard
deviation (two reductions over ``h``). A few rows (a decoding step) are normalised by ``F.layer_norm`` and projected
with the same folded weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..common.ops import matmul_into, per_example_linear
from .config import LN_EPS


# From this many rows (tokens x examples) on, the folded layer norm beats F.layer_norm on the activations; below it,
# F.layer_norm's one op beats the folded form's dozen (docs/benchmarks.md, "Serving many tasks", has the timings).
FOLD_FROM_ROWS = 128


def packed_rows(net: nn.Module) -> int:
    """Rows of ``d`` values one (task, layer, position) adapter takes packed: see :func:`fold`."""
    n = net.bottleneck_size + 1
    return 2 * n + -(-n // net.hidden_size)


def fold(net: nn.Module, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stacked generated weights ``(k, ...)`` (:meth:`.hypernet.HyperNetwork.generate`), packed into one
    ``(k, 2 (b + 1) + 1, d)`` tensor, in the form the adapter computes with:

    - rows ``[0, b]``: the down weight, with a last row of zeros and a bias of one, so the down projection's last
      output is the constant ``act(1)`` after the activation;
    - rows ``[b + 1, 2b + 1]``: the up projection ``[W_up^T; b_up / act(1)]``, whose last row is its bias: one
      matmul, which can add its output into another tensor;
    - the last row (rows, for a bottleneck as wide as ``d``): the down projection's bias, then zeros.

    The conditional layer norm is folded into the down projection: with ``W' = W diag(gamma)`` centred (each row minus
    its mean, so that ``W' h = W diag(gamma) (h - mu)``), ``down(LN(h)) = W' h / sigma + (W beta + c)``."""
    k, d, b = w["down_weight"].shape[0], net.hidden_size, net.bottleneck_size
    down, bias = w["down_weight"], w["down_bias"]
    if net.conditional_layer_norm:
        scaled = down * w["ln_weight"].unsqueeze(1)
        bias = bias + torch.bmm(down, w["ln_bias"].unsqueeze(2)).squeeze(2)
        down = scaled - scaled.mean(-1, keepdim=True)
    bias_rows = packed_rows(net) - 2 * (b + 1)
    bias = torch.cat([bias, bias.new_ones(k, 1), bias.new_zeros(k, bias_rows * d - b - 1)], dim=1)
    up_bias = w["up_bias"] / net.act_at_one
    parts = [down, down.new_zeros(k, 1, d), w["up_weight"].transpose(1, 2), up_bias.unsqueeze(1)]
    return torch.cat([*parts, bias.view(k, bias_rows, d)], dim=1)


def unpack(net: nn.Module, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views of a packed adapter (one, or one per example): down weight, down bias, up (see :func:`fold`)."""
    n = net.bottleneck_size + 1
    return packed[..., :n, :], packed[..., 2 * n :, :].flatten(-2)[..., :n], packed[..., n : 2 * n, :]


def _normalised_down(hidden: torch.Tensor, projected: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``projected`` (``hidden`` times the centred folded down weight) divided by each token's standard deviation,
    plus ``bias``: the down projection of the layer-normed ``hidden``. With ``m`` the sum of a token's ``d`` values
    and ``s`` the sum of their squares, ``d var = s - m^2 / d``, so ``1 / sigma = sqrt(d) / sqrt(s - m^2 / d + d
    eps)``: two reductions over ``hidden`` (one read of the activations, no write), in float32, and a few ops on one
    number per token. (No autograd here: the norm's gradient would be undefined at 0.)"""
    d = hidden.shape[-1]
    total = hidden.sum(-1, keepdim=True, dtype=torch.float32)
    squares = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=torch.float32).square()
    inv = torch.rsqrt(torch.addcmul(squares, total, total, value=-1 / d).clamp_min(0) + d * LN_EPS)
    if bias.dim() == 2:  # one adapter per example: (batch, out) -> (batch, 1, out) against (batch, tokens, out)
        bias = bias.unsqueeze(1)
    return torch.addcmul(bias, projected, inv.to(hidden.dtype), value=math.sqrt(d))


def _down(net: nn.Module, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, linear) -> torch.Tensor:
    """The down projection of the task-normed ``hidden`` with folded ``weight`` and ``bias``; ``linear`` is
    ``F.linear`` (one adapter) or :func:`per_example_linear` (one per example). A few rows (decoding) are normalised
    by ``torch.layer_norm``, one op instead of the folded form's handful of small ones; the same result either way."""
    if not net.conditional_layer_norm:
        return linear(hidden, weight, bias)
    if hidden.numel() <= FOLD_FROM_ROWS * hidden.shape[-1]:
        return linear(torch.layer_norm(hidden, hidden.shape[-1:], None, None, LN_EPS), weight, bias)
    return _normalised_down(hidden, linear(hidden, weight, None), bias)


def run_unpacked(
    net: nn.Module,
    hidden: torch.Tensor,
    weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    into: torch.Tensor | None,
    overwrite: bool,
) -> torch.Tensor:
    """The adapter from the views :func:`unpack` gives of packed weights (one adapter, or one per example), plus
    ``into`` when given, added by the up projection's matmul (into ``into`` itself with ``overwrite``). Weights of
    another dtype than ``hidden``'s are cast to it."""
    if weights[0].dtype != hidden.dtype:
        weights = tuple(w.to(hidden.dtype) for w in weights)
    down_weight, down_bias, up = weights
    linear = F.linear if up.dim() == 2 else per_example_linear
    down = _down(net, hidden, down_weight, down_bias, linear)
    return matmul_into(net.act.forward(down), up, into, overwrite)  # the function, not a module call per place
