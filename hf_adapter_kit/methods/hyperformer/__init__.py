"""Hyperformer++ (Karimi Mahabadi et al. 2021): one shared hypernetwork generates every layer's adapters.

A learned embedding per task, a layer-id embedding and a position embedding (attention or FFN) are concatenated,
projected and layer-normed; shared generators turn the result into each adapter's weights (``hypernet.py``).
Trainable: the task embeddings, the projector and the generators; a new task costs ``task_embedding_dim`` floats
(``tasks.add_task``). Multi-task: ``tasks=["a", "b"]`` in the config, ``task_ids=`` in forward and ``generate``.
Parameter count: :func:`hypernet.hypernetwork_parameter_count`.
"""

from __future__ import annotations

from ...registry import AdaptersMethod, MethodSpec, PeftMethod, register_method
from ..common import checks
from .adapters_backend import ARCHITECTURE, HyperformerConfig, build_layer, build_shared
from .peft_backend import HyperformerPeftConfig, HyperformerTuner
from .tasks import add_task


register_method(
    MethodSpec(
        name="hyperformer",
        summary=(
            "Hyperformer++: a shared hypernetwork generates the adapters of every layer and position from learned "
            "task, layer and position embeddings; one small model serves several tasks, routed by task_ids."
        ),
        configs={
            "adapters": checks.factory(HyperformerConfig, "hyperformer"),
            "peft": checks.factory(HyperformerPeftConfig, "hyperformer", method="hyperformer", task_type="SEQ_CLS"),
        },
        default_backend="adapters",
        learning_rate=1e-3,  # one task; recipes/hyperformer sets 3e-4 for three tasks (docs/benchmarks.md)
        reference="Karimi Mahabadi et al. 2021, Parameter-efficient Multi-task Fine-tuning for Transformers via "
        "Shared Hypernetworks",
        aliases=("hyperformer++",),
        multi_task=True,
        peft=PeftMethod("HF_ADAPTER_KIT_HYPERFORMER", HyperformerPeftConfig, HyperformerTuner),
        adapters=AdaptersMethod("hyperformer", HyperformerConfig, ARCHITECTURE, build_layer, build_shared),
        recipe="hyperformer",
        keeps_float32=True,
        add_task=add_task,
        markers={"adapters": "shared_parameters.{adapter_name}"},  # every weight is the shared hypernetwork's
    )
)
