"""Accuracy and macro F1 through `evaluate`, loaded offline from the modules the package ships."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_adapter_kit import AdapterKitError
from hf_adapter_kit.metrics import compute_classification_metrics, load_metric


def test_accuracy_by_hand():
    assert load_metric("accuracy").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]) == {"accuracy": 0.75}


def test_macro_f1_by_hand():
    # class 0: TP 1, predicted 2, actual 1 -> 2/3; class 1: TP 1, predicted 1, actual 3 -> 1/2; class 2: never right.
    result = load_metric("f1_macro").compute(predictions=[0, 0, 1, 2], references=[0, 1, 1, 1])
    assert result["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_macro_f1_differs_from_accuracy_on_imbalance():
    # Always predicting the majority class: accuracy 0.8, macro F1 = mean(2*8/18, 0) = 0.444...
    predictions, references = [0] * 10, [0] * 8 + [1] * 2
    assert load_metric("accuracy").compute(predictions=predictions, references=references)["accuracy"] == 0.8
    assert load_metric("f1_macro").compute(predictions=predictions, references=references)["f1_macro"] == (
        pytest.approx(16 / 18 / 2)
    )


def test_compute_from_logits():
    logits = np.array([[2.0, 0.1], [0.0, 1.0], [0.3, 0.2], [0.1, 0.9]])
    metrics = compute_classification_metrics(EvalPrediction(predictions=(logits,), label_ids=np.array([0, 1, 1, 1])))
    assert metrics == {"accuracy": 0.75, "f1_macro": pytest.approx((2 / 3 + 0.8) / 2)}
    assert all(isinstance(v, float) for v in metrics.values())


def test_unknown_metric():
    with pytest.raises(AdapterKitError, match="`metric`='bleu'"):
        load_metric("bleu")
