"""Batched linear algebra the kit's multi-task layers share: one matmul for a batch whose examples each have their own
weights, and a matmul that adds its result into another tensor (in place when its owner allows)."""

from __future__ import annotations

import torch


def per_example_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` with a weight ``(out, in)`` and bias ``(out,)`` per example: ``weight`` is ``(batch, out, in)``.

    One batched matmul over the whole batch, whatever the number of tasks in it.
    """
    flat = hidden.reshape(hidden.shape[0], -1, hidden.shape[-1])
    if bias is None:
        out = torch.bmm(flat, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return out.reshape(*hidden.shape[:-1], weight.shape[1])


def matmul_into(
    act: torch.Tensor, weight: torch.Tensor, into: torch.Tensor | None = None, overwrite: bool = False
) -> torch.Tensor:
    """``act @ weight`` (``+ into``, added by the matmul itself; written into ``into`` in place with ``overwrite``,
    which only its owner may ask, without autograd): ``weight`` is ``(in, out)``, or ``(batch, in, out)`` with one
    matrix per example. An ``into`` of another shape or dtype is added after the matmul, in its own dtype."""
    out_features = weight.shape[-1]
    per_example = weight.dim() == 3
    flat = act.reshape(act.shape[0], -1, act.shape[-1]) if per_example else act.reshape(-1, act.shape[-1])
    out_shape = (*act.shape[:-1], out_features)
    if into is None or into.shape != out_shape or into.dtype != weight.dtype:
        out = (torch.bmm if per_example else torch.mm)(flat, weight).view(out_shape)
        return out if into is None else into + out.to(into.dtype)
    target = into.reshape(*flat.shape[:-1], out_features)
    if overwrite and into.is_contiguous():  # `target` is then a view of `into`
        (target.baddbmm_ if per_example else target.addmm_)(flat, weight)
        return into
    return (torch.baddbmm if per_example else torch.addmm)(target, flat, weight).view(out_shape)
