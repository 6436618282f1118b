"""LoRA: a trainable low-rank update ``B @ A`` (rank ``r``, scaled by ``alpha / r``) beside frozen weight matrices.

PEFT is the default backend (``peft.LoraConfig``; target modules follow PEFT's per-architecture defaults, query and
value for BERT/RoBERTa); ``adapters.LoRAConfig`` is the alternative.
"""

from __future__ import annotations

from typing import Any

import adapters
import peft

from ..registry import MethodSpec, build_dataclass, check_fraction, check_positive, register_method


def _peft_config(**overrides: Any) -> peft.LoraConfig:
    check_positive("lora", overrides, "r", "lora_alpha")
    check_fraction("lora", overrides, "lora_dropout")
    defaults = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "task_type": peft.TaskType.SEQ_CLS}
    return build_dataclass(peft.LoraConfig, "lora", defaults, overrides)


def _adapters_config(**overrides: Any) -> adapters.LoRAConfig:
    check_positive("lora", overrides, "r", "alpha")
    check_fraction("lora", overrides, "dropout")
    return build_dataclass(adapters.LoRAConfig, "lora", {"r": 8, "alpha": 16, "dropout": 0.1}, overrides)


register_method(
    MethodSpec(
        name="lora",
        summary=(
            "LoRA: each adapted weight matrix W gets a trainable low-rank update B A (rank r) while W stays frozen; "
            "the update can be merged into W for inference at no extra latency."
        ),
        configs={"peft": _peft_config, "adapters": _adapters_config},
        default_backend="peft",
        # Measured on the embedded default, 100 steps of batch 32: 5e-4 stayed at the majority class (acc 0.71),
        # 1e-3 reached 0.78, 2e-3 reached 0.87.
        learning_rate=2e-3,
        reference="Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models",
    )
)
