"""Parallel adapters (He et al. 2021), multi-task: one adapter per task beside the FFN, routed by ``task_ids``.

Each adapter reads the sub-block's input and adds ``s * up(act(down(x)))`` to the sub-block's output; ``s`` is fixed
(``scaling=1.0``, chosen on validation; He et al. used 4.0) or learned per task (``scaling="learned"``).
``positions=["attention", "ffn"]`` (PEFT) or ``mh_adapter=True`` (adapters) puts one beside attention too.
Code: ``hf_adapter_kit/custom/``.
"""

from __future__ import annotations

from typing import Any

from ..custom.adapters_glue import MultiTaskParallelConfig
from ..custom.peft_tuner import ParallelPeftConfig
from ..registry import MethodSpec, build_dataclass, register_method


def _adapters_config(**overrides: Any) -> MultiTaskParallelConfig:
    return build_dataclass(MultiTaskParallelConfig, "parallel", {}, overrides)


def _peft_config(**overrides: Any) -> ParallelPeftConfig:
    defaults = {"method": "parallel", "task_type": "SEQ_CLS"}
    return build_dataclass(ParallelPeftConfig, "parallel", defaults, overrides)


register_method(
    MethodSpec(
        name="parallel",
        summary=(
            "Parallel adapters: a bottleneck beside the feed-forward block reads its input and adds a scaled output; "
            "one adapter per task, each example routed to its task's adapter by task_ids."
        ),
        configs={"adapters": _adapters_config, "peft": _peft_config},
        default_backend="adapters",
        learning_rate=1e-3,
        reference="He et al. 2021, Towards a Unified View of Parameter-Efficient Transfer Learning",
        aliases=("multitask_parallel",),
    )
)
