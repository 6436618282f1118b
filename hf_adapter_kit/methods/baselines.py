"""The baselines every adapter is compared with: full fine-tuning, and training the classification head alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..registry import MethodSpec, build_dataclass, register_method


@dataclass(frozen=True)
class FullFineTuningConfig:
    """Every parameter of the model is trained; the saved artifact is the whole model."""

    method: str = "full"


@dataclass(frozen=True)
class HeadOnlyConfig:
    """Only the classification head is trained on top of the frozen pretrained model."""

    method: str = "head"


def _factory(cls: type, method: str):
    def factory(**overrides: Any):
        return build_dataclass(cls, method, {}, overrides)

    return factory


register_method(
    MethodSpec(
        name="full",
        summary="Full fine-tuning: every weight of the pretrained model and the new head is trained.",
        configs={"transformers": _factory(FullFineTuningConfig, "full")},
        default_backend="transformers",
        learning_rate=5e-5,
    )
)

register_method(
    MethodSpec(
        name="head",
        summary="Classifier head only: the pretrained model is frozen and only the new classification head is trained.",
        configs={"transformers": _factory(HeadOnlyConfig, "head")},
        default_backend="transformers",
        learning_rate=1e-3,
    )
)
