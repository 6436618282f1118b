"""Metrics through ``evaluate``, offline: the modules ship with the package and load by path.

``evaluate.load("accuracy")`` fetches its script from the Hub; ``evaluate.load(<path to accuracy.py>)`` does not
(``evaluate`` copies the script into its modules cache, ``~/.cache/huggingface/modules``, and makes no request).
The modules are loaded with ``keep_in_memory=True``, so that computing writes no Arrow files or locks.

Text classification reports ``accuracy`` and ``f1_macro`` (modules of the same names); token classification the
``entity_f1`` module's ``entity_precision``, ``entity_recall``, ``entity_f1`` (seqeval's default semantics) and
``token_accuracy``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

from ..errors import choices


METRICS = ("accuracy", "f1_macro")  # the text-classification modules; each returns the key of its name
TOKEN_METRIC = "entity_f1"
MODULES = (*METRICS, TOKEN_METRIC)
# What a token-classification run reports (the entity_f1 module's keys); kinds.py maps each task kind to its keys.
TOKEN_RESULTS = ("entity_precision", "entity_recall", "entity_f1", "token_accuracy")
IGNORED = -100  # label id of positions that carry no label (special tokens, padding, a word's later sub-words)


def load_metric(name: str) -> evaluate.EvaluationModule:
    """The shipped ``evaluate`` module ``name`` (``accuracy``, ``f1_macro`` or ``entity_f1``), loaded once per process."""
    if not isinstance(name, str) or name not in MODULES:
        raise choices("metric", name, MODULES)
    return _load(name)


@functools.cache
def _load(name: str) -> evaluate.EvaluationModule:
    return evaluate.load(str(Path(__file__).parent / name / f"{name}.py"), keep_in_memory=True)


def _predictions(predictions: Any) -> np.ndarray:
    """The predictions as an array: logits or ids as they are, or the first element of a tuple of outputs."""
    return np.asarray(predictions[0] if isinstance(predictions, tuple | list) else predictions)


def compute_classification_metrics(eval_pred: Any) -> dict[str, float]:
    """``compute_metrics`` for ``transformers.Trainer``: accuracy and macro F1 as Python floats.

    ``eval_pred`` is an ``EvalPrediction``: ``predictions`` are logits of shape (n, classes), or a tuple whose first
    element is; class ids of shape (n,) are taken as they are. ``label_ids`` are the reference class ids.
    """
    logits = _predictions(eval_pred.predictions)
    predicted = logits.argmax(axis=-1) if logits.ndim > 1 else logits
    references = np.asarray(eval_pred.label_ids)
    results: dict[str, float] = {}
    for name in METRICS:
        results.update(load_metric(name).compute(predictions=predicted, references=references))
    return {key: float(value) for key, value in results.items()}


def tag_sequences(
    predicted: np.ndarray, references: np.ndarray, label_names: Sequence[str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Predicted and reference tag names of each example, at the positions whose reference is not -100."""
    guesses, golds = [], []
    for guess, gold in zip(predicted, references, strict=True):
        kept = gold != IGNORED
        guesses.append([label_names[i] for i in guess[kept]])
        golds.append([label_names[i] for i in gold[kept]])
    return guesses, golds


def token_metrics(label_names: Sequence[str]) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` for token classification with the tags ``label_names`` (index = label id).

    ``predictions`` are logits of shape (n, length, classes) or ids of shape (n, length) (see
    :func:`argmax_logits`); ``label_ids`` hold the reference ids with -100 where no word starts. Only positions with
    a reference count, so each word is scored once, by its first sub-word.
    """
    names = list(label_names)

    def compute(eval_pred: Any) -> dict[str, float]:
        predicted = _predictions(eval_pred.predictions)
        if predicted.ndim == 3:
            predicted = predicted.argmax(axis=-1)
        guesses, golds = tag_sequences(predicted, np.asarray(eval_pred.label_ids), names)
        results = load_metric(TOKEN_METRIC).compute(predictions=guesses, references=golds)
        return {key: float(value) for key, value in results.items()}

    return compute


def argmax_logits(logits: Any, labels: Any) -> Any:
    """``preprocess_logits_for_metrics``: keep the predicted ids of each batch, not its logits (classes times less
    memory while evaluating)."""
    if isinstance(logits, tuple | list):
        logits = logits[0]
    return logits.argmax(dim=-1)
