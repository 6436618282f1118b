"""Classifier head only, the floor every adapter must beat: the pretrained model stays frozen."""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import MethodSpec, register_method
from ..common import checks


@dataclass(frozen=True)
class HeadOnlyConfig:
    """Only the classification head is trained on top of the frozen pretrained model."""

    method: str = "head"


register_method(
    MethodSpec(
        name="head",
        summary="Classifier head only: the pretrained model is frozen and only the new classification head is trained.",
        configs={"transformers": checks.factory(HeadOnlyConfig, "head")},
        default_backend="transformers",
        learning_rate=1e-3,
        recipe="head",
        generative=False,  # it trains a classification head, which a generative model does not have
        markers={"transformers": "no adapter"},  # nothing but the head trains
    )
)
