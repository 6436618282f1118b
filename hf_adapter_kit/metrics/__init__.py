"""Metrics through ``evaluate``, offline: the modules ship with the package and load by path.

``evaluate.load("accuracy")`` fetches its script from the Hub; ``evaluate.load(<path to accuracy.py>)`` does not.
"""

from __future__ import annotations

import functools
from pathlib import Path

import evaluate
import numpy as np

from ..errors import choices


METRICS = ("accuracy", "f1_macro")


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    if name not in METRICS:
        raise choices("metric", name, METRICS)
    return evaluate.load(str(Path(__file__).parent / name / f"{name}.py"))


def compute_classification_metrics(eval_pred) -> dict[str, float]:
    """``compute_metrics`` for the Trainer: accuracy and macro F1 from logits."""
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    predictions = np.argmax(logits, axis=-1)
    results: dict[str, float] = {}
    for name in METRICS:
        results.update(load_metric(name).compute(predictions=predictions, references=eval_pred.label_ids))
    return {key: float(value) for key, value in results.items()}
