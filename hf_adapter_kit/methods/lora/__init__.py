"""LoRA: a trainable low-rank update ``B @ A`` (rank ``r``, scaled by ``alpha / r``) beside frozen weight matrices.

Both libraries have it: PEFT is the default backend (``peft.LoraConfig``; target modules follow PEFT's
per-architecture defaults, query and value for BERT/RoBERTa); ``adapters.LoRAConfig`` is the alternative.
"""

from __future__ import annotations

import adapters
import peft

from ...registry import MethodSpec, register_method
from ..common import checks


def _check(options: dict, rank: str, alpha: str, dropout: str) -> None:
    for name in (rank, alpha):
        if name in options:
            checks.positive(name, options[name])
    if dropout in options:
        checks.fraction(dropout, options[dropout])


def _peft_config(**options) -> peft.LoraConfig:
    _check(options, "r", "lora_alpha", "lora_dropout")
    defaults = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "task_type": peft.TaskType.SEQ_CLS}
    return checks.build_config(peft.LoraConfig, "lora", defaults, options)


def _adapters_config(**options) -> adapters.LoRAConfig:
    _check(options, "r", "alpha", "dropout")
    return checks.build_config(adapters.LoRAConfig, "lora", {"r": 8, "alpha": 16, "dropout": 0.1}, options)


register_method(
    MethodSpec(
        name="lora",
        summary=(
            "LoRA: each adapted weight matrix W gets a trainable low-rank update B A (rank r) while W stays frozen; "
            "the update can be merged into W for inference at no extra latency."
        ),
        configs={"peft": _peft_config, "adapters": _adapters_config},
        default_backend="peft",
        learning_rate=2e-3,  # chosen on the embedded default (docs/benchmarks.md, "LoRA's learning rate")
        reference="Hu et al. 2021, LoRA: Low-Rank Adaptation of Large Language Models",
        recipe="lora",
        mergeable=True,
        reads_foreign={
            "peft": lambda config: config.get("peft_type") == "LORA",
            "adapters": lambda config: config.get("architecture") == "lora",
        },
        markers={"peft": "lora_", "adapters": "loras.{adapter_name}"},
    )
)
