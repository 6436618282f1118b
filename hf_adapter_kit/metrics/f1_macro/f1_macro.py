"""Macro F1 as an ``evaluate`` module that loads offline from this file, with numpy only (no scikit-learn).

Result key ``f1_macro``: the unweighted mean of per-class F1 over every class that occurs in the references or the
predictions. Per class, F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + actual), which is 0 when TP is 0
(precision + recall = 0). 0.0 for no examples.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np


class F1Macro(evaluate.Metric):
    """Unweighted mean of per-class F1 scores over the classes seen in references or predictions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Unweighted mean of per-class F1 scores.",
            citation="",
            inputs_description="predictions, references: lists of integer class ids of equal length.",
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions: Any, references: Any) -> dict[str, float]:
        predicted, actual = np.asarray(predictions), np.asarray(references)
        scores = []
        for label in np.union1d(predicted, actual):
            true_positives = np.sum((predicted == label) & (actual == label))
            total = np.sum(predicted == label) + np.sum(actual == label)  # 2 TP + FP + FN
            scores.append(2.0 * true_positives / total)  # total > 0: the label occurs somewhere
        return {"f1_macro": float(np.mean(scores)) if scores else 0.0}
