"""Accuracy and macro F1 through `evaluate`, loaded offline from the modules the package ships."""

from __future__ import annotations

import socket
import time

import evaluate
import numpy as np
import pytest
from transformers import EvalPrediction

import hf_adapter_kit.metrics as metrics
from hf_adapter_kit.errors import AdapterKitError
from hf_adapter_kit.metrics import compute_classification_metrics, load_metric


def _no_network(*args, **kwargs):
    raise AssertionError("the metrics must not touch the network")


@pytest.mark.parametrize("name", ["accuracy", "f1_macro"])
def test_modules_load_by_path_quickly_without_network(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    metrics._load.cache_clear()
    start = time.perf_counter()
    module = load_metric(name)
    assert isinstance(module, evaluate.EvaluationModule) and time.perf_counter() - start < 5
    assert load_metric(name) is module  # loaded once per process
    assert module.compute(predictions=[1, 0], references=[1, 0]) == {name: 1.0}


def test_accuracy_by_hand():
    assert load_metric("accuracy").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]) == {"accuracy": 0.75}


def test_macro_f1_by_hand_with_a_class_only_predicted():
    # class 0: TP 1, FP 1, FN 0 -> 2/3; class 1: TP 1, FP 0, FN 2 -> 1/2; class 2 (never a reference): 0.
    result = load_metric("f1_macro").compute(predictions=[0, 0, 1, 2], references=[0, 1, 1, 1])
    assert result == {"f1_macro": pytest.approx((2 / 3 + 1 / 2 + 0) / 3)}


def test_macro_f1_differs_from_accuracy_when_a_class_is_never_predicted():
    # Always the majority class: accuracy 0.8; macro F1 = mean(F1 of class 0 = 16/18, F1 of class 1 = 0).
    predictions, references = [0] * 10, [0] * 8 + [1] * 2
    assert load_metric("accuracy").compute(predictions=predictions, references=references) == {"accuracy": 0.8}
    assert load_metric("f1_macro").compute(predictions=predictions, references=references) == {
        "f1_macro": pytest.approx(16 / 18 / 2)
    }


def test_macro_f1_matches_precision_and_recall_on_random_labels():
    rng = np.random.default_rng(0)
    predictions, references = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    scores = []
    for label in range(5):
        tp = np.sum((predictions == label) & (references == label))
        precision = tp / max(np.sum(predictions == label), 1)
        recall = tp / max(np.sum(references == label), 1)
        scores.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    result = load_metric("f1_macro").compute(predictions=predictions, references=references)
    assert result["f1_macro"] == pytest.approx(np.mean(scores))


def test_compute_from_logits():
    logits = np.array([[2.0, 0.1], [0.0, 1.0], [0.3, 0.2], [0.1, 0.9]])  # argmax: 0, 1, 0, 1
    references = np.array([0, 1, 1, 1])
    expected = {"accuracy": 0.75, "f1_macro": pytest.approx((2 / 3 + 0.8) / 2)}
    for predictions in (logits, (logits, np.zeros((4, 3)))):
        result = compute_classification_metrics(EvalPrediction(predictions=predictions, label_ids=references))
        assert result == expected and all(type(v) is float for v in result.values())
    ids = EvalPrediction(predictions=np.array([0, 1, 0, 1]), label_ids=references)
    assert compute_classification_metrics(ids) == expected


@pytest.mark.parametrize("name", ["bleu", "", None, "Accuracy"])
def test_unknown_metric(name):
    with pytest.raises(AdapterKitError, match=rf"`metric`={name!r}.*'accuracy', 'f1_macro'") as info:
        load_metric(name)
    assert isinstance(info.value, ValueError)
