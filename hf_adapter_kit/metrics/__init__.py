"""Metrics through ``evaluate``, offline: the modules ship with the package and load by path.

``evaluate.load("accuracy")`` fetches its script from the Hub; ``evaluate.load(<path to accuracy.py>)`` does not
(``evaluate`` copies the script into its modules cache, ``~/.cache/huggingface/modules``, and makes no request).
The modules are loaded with ``keep_in_memory=True``, so that computing writes no Arrow files or locks.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

from ..errors import choices


METRICS = ("accuracy", "f1_macro")


def load_metric(name: str) -> evaluate.EvaluationModule:
    """The shipped ``evaluate`` module ``name`` (``accuracy`` or ``f1_macro``), loaded once per process."""
    if not isinstance(name, str) or name not in METRICS:
        raise choices("metric", name, METRICS)
    return _load(name)


@functools.cache
def _load(name: str) -> evaluate.EvaluationModule:
    return evaluate.load(str(Path(__file__).parent / name / f"{name}.py"), keep_in_memory=True)


def compute_classification_metrics(eval_pred: Any) -> dict[str, float]:
    """``compute_metrics`` for ``transformers.Trainer``: accuracy and macro F1 as Python floats.

    ``eval_pred`` is an ``EvalPrediction``: ``predictions`` are logits of shape (n, classes), or a tuple whose first
    element is; class ids of shape (n,) are taken as they are. ``label_ids`` are the reference class ids.
    """
    predictions = eval_pred.predictions
    logits = np.asarray(predictions[0] if isinstance(predictions, tuple | list) else predictions)
    predicted = logits.argmax(axis=-1) if logits.ndim > 1 else logits
    references = np.asarray(eval_pred.label_ids)
    results: dict[str, float] = {}
    for name in METRICS:
        results.update(load_metric(name).compute(predictions=predicted, references=references))
    return {key: float(value) for key, value in results.items()}
