"""Full fine-tuning, the baseline every adapter is compared with: every weight trains; the artifact is the model."""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import MethodSpec, register_method
from ..common import checks


@dataclass(frozen=True)
class FullFineTuningConfig:
    """Every parameter of the model is trained; the saved artifact is the whole model."""

    method: str = "full"


register_method(
    MethodSpec(
        name="full",
        summary="Full fine-tuning: every weight of the pretrained model and the new head is trained.",
        configs={"transformers": checks.factory(FullFineTuningConfig, "full")},
        default_backend="transformers",
        learning_rate=5e-5,
        recipe="full",
        whole_model=True,
    )
)
