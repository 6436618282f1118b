"""Accuracy as an ``evaluate`` module that loads offline from this file: ``evaluate.load(<path to this file>)``.

Result key ``accuracy``: the fraction of predictions equal to their reference (0.0 for no examples).
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    """Fraction of predicted class ids equal to the reference class ids."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Fraction of predictions equal to the references.",
            citation="",
            inputs_description="predictions, references: lists of integer class ids of equal length.",
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions: Any, references: Any) -> dict[str, float]:
        predicted, actual = np.asarray(predictions), np.asarray(references)
        return {"accuracy": float(np.mean(predicted == actual)) if actual.size else 0.0}
