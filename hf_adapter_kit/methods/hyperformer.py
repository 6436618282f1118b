"""Hyperformer++ (Karimi Mahabadi et al. 2021): one shared hypernetwork generates every layer's adapters.

A learned embedding per task, a layer-id embedding and a position embedding (attention or FFN) are concatenated,
projected (Linear, ReLU, Linear) and layer-normed; shared generators turn the result into each adapter's down/up
weights and biases and the gamma/beta of its conditional layer norm. Trainable: the task embeddings, the projector and
the generators. Multi-task: ``tasks=["a", "b"]`` here, ``task_ids=`` in forward. Parameter count:
:func:`hf_adapter_kit.custom.layers.hypernetwork_parameter_count`. Code: ``hf_adapter_kit/custom/``.
"""

from __future__ import annotations

from typing import Any

from ..custom.adapters_glue import HyperformerConfig
from ..custom.peft_tuner import HyperformerPeftConfig
from ..registry import MethodSpec, build_dataclass, register_method


def _adapters_config(**overrides: Any) -> HyperformerConfig:
    return build_dataclass(HyperformerConfig, "hyperformer", {}, overrides)


def _peft_config(**overrides: Any) -> HyperformerPeftConfig:
    defaults = {"method": "hyperformer", "task_type": "SEQ_CLS"}
    return build_dataclass(HyperformerPeftConfig, "hyperformer", defaults, overrides)


register_method(
    MethodSpec(
        name="hyperformer",
        summary=(
            "Hyperformer++: a shared hypernetwork generates the adapters of every layer and position from learned "
            "task, layer and position embeddings; one small model serves several tasks, routed by task_ids."
        ),
        configs={"adapters": _adapters_config, "peft": _peft_config},
        default_backend="adapters",
        # one task, projected_dim 8: 1e-3 beat 3e-4 on validation (bench/results/single-task-sweep-validation.md);
        # three tasks trained together prefer 3e-4 (hyperformer-sweep-validation.md), which recipes/hyperformer sets
        learning_rate=1e-3,
        reference="Karimi Mahabadi et al. 2021, Parameter-efficient Multi-task Fine-tuning for Transformers via "
        "Shared Hypernetworks",
        aliases=("hyperformer++",),
    )
)
