"""Weight initialisation and precision rules shared by the kit's adapter modules (no adapter library here).

Initialisation follows ``adapters``' named schemes, so that ``init_weights`` means the same on both backends:

- ``"mam_adapter"`` / ``"lora"``: down-projection Kaiming-uniform (``a=sqrt(5)``), up-projection zero. The adapter
  starts as the identity (its output is 0), so training starts from the base model. The kit's default.
- ``"bert"``: both projections normal with std 0.02 (BERT's initialiser): a non-identity start.
- ``"houlsby"``: both projections truncated normal with std 0.01.

Biases start at zero. PEFT configs take ``init_weights=True`` (identity start, ``"mam_adapter"``) or ``False``
(non-identity, ``"bert"``), PEFT's own convention. ``init_weights_seed`` makes the draw reproducible without
touching the global random state.

Precision: adapter weights keep their own dtype (fp32 unless cast); the input is cast to it and the adapter's output
back to the base model's dtype (PEFT's ``autocast_adapter_dtype`` convention).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn


INIT_SCHEMES = ("mam_adapter", "lora", "bert", "houlsby")


def scheme_for(init_weights: bool | str) -> str:
    """PEFT's boolean ``init_weights`` as a named scheme; a name passes through."""
    if isinstance(init_weights, bool):
        return "mam_adapter" if init_weights else "bert"
    return init_weights


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Draw from ``torch.manual_seed(seed)`` inside the block, leaving the global random state as it was."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def init_projection(weight: torch.Tensor, role: str, scheme: str) -> None:
    """Initialise a down (``role="down"``) or up projection weight in place; a 3-D tensor is one matrix per task."""
    if weight.device.type == "meta":
        return
    with torch.no_grad():
        for matrix in weight if weight.dim() == 3 else [weight]:
            if scheme == "bert":
                nn.init.normal_(matrix, std=0.02)
            elif scheme == "houlsby":
                nn.init.trunc_normal_(matrix, std=1e-2, a=-2e-2, b=2e-2)
            elif role == "down":  # mam_adapter / lora
                nn.init.kaiming_uniform_(matrix, a=math.sqrt(5))
            else:
                nn.init.zeros_(matrix)


def init_bottleneck(down: nn.Linear, up: nn.Linear, scheme: str) -> None:
    init_projection(down.weight, "down", scheme)
    init_projection(up.weight, "up", scheme)
    for bias in (down.bias, up.bias):
        if bias.device.type != "meta":
            nn.init.zeros_(bias)


def adapter_dtype(module: nn.Module) -> torch.dtype:
    """The dtype the adapter computes in: that of its first floating-point parameter."""
    for param in module.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.get_default_dtype()


def params_state(params) -> tuple | None:
    """What a value made from ``params`` depends on (storage, version and dtype of each: an optimizer step, a load, a
    move or a cast changes it), or ``None`` when nothing may be kept: a parameter that is an inference tensor (its
    in-place changes are not recorded). The key of the serving caches."""
    if any(p.is_inference() for p in params):
        return None
    return tuple((p.data_ptr(), p._version, p.dtype) for p in params)
