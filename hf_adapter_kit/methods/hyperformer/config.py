"""The options of Hyperformer++, shared by its PEFT and ``adapters`` configs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..common import checks


# The conditional layer norm's epsilon (F.layer_norm's default): the paper's adapter (hypernet.py) and the serving
# engine's folded form of it (packed.py) must use the same one.
LN_EPS = 1e-5


@dataclass(eq=False)
class HyperformerOptions:
    tasks: list[str] = field(
        default_factory=lambda: ["default"],
        metadata={"help": "The tasks this adapter serves; each has a learned embedding. Forward takes `task_ids`."},
    )
    task_embedding_dim: int = field(
        default=64, metadata={"help": "Size of each task (and layer, position) embedding."}
    )
    projector_hidden_dim: int = field(default=128, metadata={"help": "Hidden size of the embeddings' projector."})
    # 8, not the reference's 64: on MiniLM one task did not learn with 64 (lr 3e-5 to 1e-3) and learned with 8
    # (bench/results/single-task-sweep-validation.md); the generators cost (p + 1) adapters
    projected_dim: int = field(
        default=8, metadata={"help": "Size of the projected embedding the weight generators read."}
    )
    conditional_layer_norm: bool = field(
        default=True, metadata={"help": "Generate a layer norm (gamma, beta) per task before each adapter."}
    )

    def check_options(self) -> None:
        """Checks only: on ``adapters`` the config is frozen once built."""
        checks.tasks(self.tasks)
        for name in ("task_embedding_dim", "projector_hidden_dim", "projected_dim"):
            checks.positive_int(name, getattr(self, name))
        if not isinstance(self.conditional_layer_norm, bool):
            raise checks.invalid("conditional_layer_norm", self.conditional_layer_norm, "True or False.")

    def hypernetwork_kwargs(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "task_embedding_dim": self.task_embedding_dim,
            "projector_hidden_dim": self.projector_hidden_dim,
            "projected_dim": self.projected_dim,
            "conditional_layer_norm": self.conditional_layer_norm,
        }
