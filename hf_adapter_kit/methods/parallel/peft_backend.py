"""Multi-task parallel adapters as a PEFT method: ``HF_ADAPTER_KIT_PARALLEL``.

Each adapter reads the sub-block's *input* (a forward pre-hook on the sub-block stashes it) and adds
``s * up(act(down(x)))`` to the sub-block's output projection, each example through its own task's block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...routing import routing
from ..common.peft_tuner import KitLayer, KitPeftConfig, KitTuner
from ..common.weights import scheme_for
from .config import ParallelOptions
from .layer import MultiTaskBottleneck


@dataclass
class ParallelPeftConfig(ParallelOptions, KitPeftConfig):
    """Multi-task parallel adapters for PEFT: one per task, routed per example by ``task_ids``."""

    peft_type_name = "HF_ADAPTER_KIT_PARALLEL"
    default_method = "parallel"


class ParallelLayer(KitLayer):
    adapter_layer_names = ("kit_parallel_adapter", "kit_parallel_scaling")
    reads_block_input = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kit_parallel_adapter = nn.ModuleDict()
        self.kit_parallel_scaling = nn.ParameterDict()

    def create(self, adapter_name: str, config: ParallelPeftConfig, hidden_size: int) -> None:
        self.kit_parallel_adapter[adapter_name] = MultiTaskBottleneck(
            len(config.tasks),
            hidden_size,
            config.bottleneck_size(hidden_size),
            config.non_linearity,
            scheme_for(config.init_weights),
        )
        if config.scaling == "learned":
            self.kit_parallel_scaling[adapter_name] = nn.Parameter(torch.ones(len(config.tasks)))

    def compute_dtype(self, adapter_name: str) -> torch.dtype:
        return self.kit_parallel_adapter[adapter_name].down_weight.dtype

    def add_delta(
        self, adapter_name: str, source: torch.Tensor, result: torch.Tensor, overwrite: bool = False
    ) -> torch.Tensor:
        config = self.kit_options[adapter_name]
        route = routing(config.tasks, source.shape[0], source.device)
        scaling = (
            self.kit_parallel_scaling[adapter_name][route.ids]
            if adapter_name in self.kit_parallel_scaling
            else config.scaling
        )
        return self.kit_parallel_adapter[adapter_name](source, route, scaling, result, overwrite)


class ParallelTuner(KitTuner):
    prefix = "kit_parallel_"
    tuner_layer_cls = ParallelLayer

    @classmethod
    def legacy_key(cls, key: str, model: nn.Module, adapter_name: str) -> str:
        # 0.1.0: `...dense.kit_adapters.down_weight` and `...dense.kit_scaling`
        return key.replace(".kit_adapters.", ".kit_parallel_adapter.").replace(".kit_scaling", ".kit_parallel_scaling")
