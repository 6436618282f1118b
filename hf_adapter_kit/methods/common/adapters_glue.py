"""What the kit's ``adapters`` (AdapterHub) modules share.

The kit's modules subclass ``adapters``' own ``Adapter`` / ``ParallelAdapter`` to keep its residual and layer-norm
handling (``pre_forward`` / ``post_forward``); only the adapter computation differs. ``task_ids`` reach them through
``adapters``' ``ForwardContext`` (the model's forward call takes ``task_ids=``) or the kit's ``task_context``.
Precision follows PEFT's convention: the module computes in its weights' dtype (fp32 as ``adapters`` creates them,
or what ``model.adapter_to(name, dtype=...)`` made them) and hands back the caller's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from adapters import BnConfig
from adapters.context import ForwardContext
from torch import nn

from .routing import Routing, routing


def positions_of(config: BnConfig) -> list[str]:
    return [p for p, on in (("attention", config.mh_adapter), ("ffn", config.output_adapter)) if on]


def init_flags(module: nn.Module, name: str, config: BnConfig) -> None:
    """The attributes ``adapters``' ``Adapter.pre_forward`` / ``post_forward`` read."""
    module.name = name
    module.residual_before_ln = config["residual_before_ln"]
    module.original_ln_before = config["original_ln_before"]
    module.original_ln_after = config["original_ln_after"]


def current_routing(tasks: Sequence[str], hidden: torch.Tensor) -> Routing:
    return routing(list(tasks), hidden.shape[0], hidden.device, holder=ForwardContext.get_context())


def bottleneck_size(config: BnConfig, hidden_size: int) -> int:
    return max(1, int(hidden_size // config.reduction_factor))
