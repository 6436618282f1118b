"""The options of the multi-task parallel adapter, shared by its PEFT and ``adapters`` configs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common import checks


@dataclass(eq=False)
class ParallelOptions:
    tasks: list[str] = field(
        default_factory=lambda: ["default"],
        metadata={"help": "The tasks this adapter serves; forward calls pick one per example with `task_ids`."},
    )
    # 1.0, not the 4.0 of He et al. and ParBnConfig: docs/benchmarks.md, "Where the defaults come from"
    scaling: float | str = field(
        default=1.0, metadata={"help": "Scale of the adapter's output, or 'learned' for a learned scale per task."}
    )

    def check_options(self) -> None:
        """Checks only: on ``adapters`` the config is frozen once built."""
        checks.tasks(self.tasks)
        checks.scaling(self.scaling)
