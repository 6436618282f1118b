"""Houlsby and Pfeiffer bottleneck adapters as a PEFT method (PEFT has none): ``HF_ADAPTER_KIT_BOTTLENECK``.

Each adapter wraps a sub-block's output projection, before the model's residual and layer norm (Houlsby et al.'s
placement): ``positions=["attention", "ffn"]`` is ``adapters``' ``double_seq_bn``, ``["ffn"]`` its ``seq_bn`` with
``original_ln_before=False``. ``tests/test_custom_methods.py`` checks both weight for weight (on BERT; on a
pre-norm model such as Llama, ``adapters``' default ``original_ln_before=True`` feeds its adapter the sub-block's
output plus the residual, where this one reads the sub-block's output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ..common.peft_tuner import KitLayer, KitPeftConfig, KitTuner
from ..common.weights import scheme_for
from .layer import Bottleneck


@dataclass
class BottleneckPeftConfig(KitPeftConfig):
    """Houlsby (``positions=["attention", "ffn"]``, swish) or Pfeiffer (``["ffn"]``, relu) adapters for PEFT."""

    peft_type_name = "HF_ADAPTER_KIT_BOTTLENECK"
    default_method = "bottleneck"


class BottleneckLayer(KitLayer):
    adapter_layer_names = ("kit_bottleneck_adapter",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kit_bottleneck_adapter = nn.ModuleDict()

    def create(self, adapter_name: str, config: BottleneckPeftConfig, hidden_size: int) -> None:
        size = config.bottleneck_size(hidden_size)
        self.kit_bottleneck_adapter[adapter_name] = Bottleneck(
            hidden_size, size, config.non_linearity, scheme_for(config.init_weights)
        )

    def compute_dtype(self, adapter_name: str) -> torch.dtype:
        return self.kit_bottleneck_adapter[adapter_name].down.weight.dtype

    def delta(self, adapter_name: str, source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return self.kit_bottleneck_adapter[adapter_name](source)


class BottleneckTuner(KitTuner):
    prefix = "kit_bottleneck_"
    tuner_layer_cls = BottleneckLayer

    @classmethod
    def legacy_key(cls, key: str, model: nn.Module, adapter_name: str) -> str:
        # 0.1.0 kept the adapter name: `...dense.kit_adapters.<name>.down.weight`
        return re.sub(r"\.kit_adapters\.[^.]+\.(down|up)\.(weight|bias)$", r".kit_bottleneck_adapter.\1.\2", key)
