"""Macro F1 as an ``evaluate`` module that loads from this file, offline, without scikit-learn.

The unweighted mean of per-class F1 over every class that occurs in the references or the predictions; a class
with no true positive scores 0.
"""

import datasets
import evaluate
import numpy as np


class F1Macro(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Unweighted mean of per-class F1 scores.",
            citation="",
            inputs_description="predictions and references: lists of class ids.",
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        scores = []
        for label in np.union1d(predictions, references):
            true_positive = np.sum((predictions == label) & (references == label))
            predicted, actual = np.sum(predictions == label), np.sum(references == label)
            denominator = predicted + actual  # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + actual)
            scores.append(2.0 * true_positive / denominator if denominator else 0.0)
        return {"f1_macro": float(np.mean(scores)) if scores else 0.0}
