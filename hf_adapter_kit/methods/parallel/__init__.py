"""Parallel adapters (He et al. 2021), multi-task: one adapter per task beside the FFN, routed by ``task_ids``.

Each adapter reads the sub-block's input and adds ``s * up(act(down(x)))`` to the sub-block's output; ``s`` is fixed
(``scaling=1.0``, chosen on validation; He et al. used 4.0) or learned per task (``scaling="learned"``).
``positions=["attention", "ffn"]`` (PEFT) or ``mh_adapter=True`` (adapters) puts one beside attention too.
"""

from __future__ import annotations

from ...registry import AdaptersMethod, MethodSpec, PeftMethod, register_method
from ..common import checks
from .adapters_backend import ARCHITECTURE, MultiTaskParallelConfig, build_layer
from .peft_backend import ParallelPeftConfig, ParallelTuner


register_method(
    MethodSpec(
        name="parallel",
        summary=(
            "Parallel adapters: a bottleneck beside the feed-forward block reads its input and adds a scaled output; "
            "one adapter per task, each example routed to its task's adapter by task_ids."
        ),
        configs={
            "adapters": checks.factory(MultiTaskParallelConfig, "parallel"),
            "peft": checks.factory(ParallelPeftConfig, "parallel", method="parallel", task_type="SEQ_CLS"),
        },
        default_backend="adapters",
        learning_rate=1e-3,
        reference="He et al. 2021, Towards a Unified View of Parameter-Efficient Transfer Learning",
        aliases=("multitask_parallel",),
        multi_task=True,
        peft=PeftMethod("HF_ADAPTER_KIT_PARALLEL", ParallelPeftConfig, ParallelTuner),
        adapters=AdaptersMethod("multitask_parallel", MultiTaskParallelConfig, ARCHITECTURE, build_layer),
        recipe="parallel",
        keeps_float32=True,
        markers={"adapters": "adapters.{adapter_name}"},
    )
)
