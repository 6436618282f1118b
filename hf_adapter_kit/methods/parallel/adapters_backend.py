"""Multi-task parallel adapters on ``adapters`` (``config="multitask_parallel"``); its own ``par_bn`` is untouched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from adapters import ParBnConfig
from adapters.methods.modeling import ParallelAdapter
from torch import nn

from ..common.adapters_glue import bottleneck_size, check_bottleneck_options, current_routing, init_flags
from ..common.weights import seeded
from .config import ParallelOptions
from .layer import MultiTaskBottleneck


ARCHITECTURE = "hf_adapter_kit.parallel"


@dataclass(eq=False)
class MultiTaskParallelConfig(ParallelOptions, ParBnConfig):
    """Multi-task parallel adapters on ``adapters``: one per task beside the FFN (and optionally attention)."""

    reduction_factor: float | Mapping = 16
    architecture: str | None = ARCHITECTURE
    init_weights: str = "mam_adapter"  # ParBnConfig's: the adapter starts as the identity

    def __post_init__(self):
        check_bottleneck_options(self)
        self.check_options()


class MultiTaskParallelAdapter(ParallelAdapter):
    """``s * up(act(down(x)))`` from the sub-block's input, each example through its own task's adapter."""

    def __init__(self, adapter_name: str, config: MultiTaskParallelConfig, hidden_size: int, layer_idx: int):
        nn.Module.__init__(self)
        init_flags(self, adapter_name, config)
        self.tasks = list(config.tasks)
        with seeded(config.init_weights_seed):
            self.blocks = MultiTaskBottleneck(
                len(self.tasks),
                hidden_size,
                bottleneck_size(config, hidden_size, layer_idx),
                config.non_linearity,
                config.init_weights,
            )
        self.learned_scaling = config.scaling == "learned"
        self.scaling = nn.Parameter(torch.ones(len(self.tasks))) if self.learned_scaling else float(config.scaling)

    def forward(self, x, residual_input, output_gating=False):
        route = current_routing(self.tasks, x)
        scale = self.scaling[route.ids] if self.learned_scaling else self.scaling
        up = self.blocks(x.to(self.blocks.down_weight.dtype), route, scale).to(x.dtype)
        return up, None, up


def build_layer(adapter_name: str, config: MultiTaskParallelConfig, layer_idx: int, location_key: str, model_config):
    return MultiTaskParallelAdapter(adapter_name, config, model_config.hidden_size, layer_idx)
