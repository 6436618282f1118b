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

from ...errors import AdapterKitError
from ...routing import Routing, routing
from . import checks
from .weights import INIT_SCHEMES


def positions_of(config: BnConfig) -> list[str]:
    return [p for p, on in (("attention", config.mh_adapter), ("ffn", config.output_adapter)) if on]


def check_bottleneck_options(config: BnConfig) -> None:
    """The checks every kit config on ``adapters`` runs (its own options are checked by the method)."""
    checks.positive("reduction_factor", config.reduction_factor)
    checks.positions(positions_of(config))
    checks.activation("non_linearity", config.non_linearity)
    checks.one_of("init_weights", config.init_weights, INIT_SCHEMES)
    checks.seed("init_weights_seed", config.init_weights_seed)


def init_flags(module: nn.Module, name: str, config: BnConfig) -> None:
    """The attributes ``adapters``' ``Adapter.pre_forward`` / ``post_forward`` read."""
    module.name = name
    module.residual_before_ln = config["residual_before_ln"]
    module.original_ln_before = config["original_ln_before"]
    module.original_ln_after = config["original_ln_after"]


def current_routing(tasks: Sequence[str], hidden: torch.Tensor) -> Routing:
    """The task ids of the rows this module computes. Under ``BatchSplit`` a module sees a slice of the batch
    (``kit_rows``, noted by :mod:`hf_adapter_kit.patches.adapters_methods`) while ``task_ids`` cover all of it."""
    context = ForwardContext.get_context()
    rows = getattr(context, "kit_rows", None)
    size = hidden.shape[0]
    if rows is not None and rows[1] - rows[0] == size != rows[2]:
        try:
            whole = routing(list(tasks), rows[2], hidden.device, holder=context)
        except AdapterKitError:
            pass  # the ids are this slice's own (Parallel hands every child the whole original batch)
        else:
            return Routing(whole.ids[rows[0] : rows[1]])
    return routing(list(tasks), size, hidden.device, holder=context)


def bottleneck_size(config: BnConfig, hidden_size: int, layer_idx: int | None = None) -> int:
    """The bottleneck of a kit module on ``adapters`` at ``layer_idx`` (``checks.bottleneck_size``)."""
    return checks.bottleneck_size(config.reduction_factor, hidden_size, layer_idx)
