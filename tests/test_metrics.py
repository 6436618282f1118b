"""Accuracy, macro F1 and entity F1 through `evaluate`, loaded offline from the modules the package ships."""

from __future__ import annotations

import socket
import time

import evaluate
import numpy as np
import pytest
from transformers import EvalPrediction

import hf_adapter_kit.metrics as metrics
from hf_adapter_kit.errors import AdapterKitError
from hf_adapter_kit.metrics import IGNORED, compute_classification_metrics, load_metric, token_metrics


def _no_network(*args, **kwargs):
    raise AssertionError("the metrics must not touch the network")


@pytest.mark.parametrize("name", ["accuracy", "f1_macro", "entity_f1"])
def test_modules_load_by_path_quickly_without_network(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    metrics._load.cache_clear()
    start = time.perf_counter()
    module = load_metric(name)
    assert isinstance(module, evaluate.EvaluationModule) and time.perf_counter() - start < 5
    assert load_metric(name) is module  # loaded once per process
    if name == "entity_f1":
        tags = [["B-x", "O"]]
        assert module.compute(predictions=tags, references=tags)[name] == 1.0
    else:
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
    with pytest.raises(AdapterKitError, match=rf"`metric`={name!r}.*'accuracy', 'entity_f1', 'f1_macro'") as info:
        load_metric(name)
    assert isinstance(info.value, ValueError)


# -- entity-level scores, seqeval's default semantics (conlleval) ----------------------------------------------------


def _entity(predictions, references):
    return load_metric("entity_f1").compute(predictions=predictions, references=references)


@pytest.mark.parametrize(
    ("predicted", "reference", "hits", "n_predicted", "n_reference"),
    [
        # the same spans and types: every entity found
        (["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"], 2, 2, 2),
        # an I- tag with no B- before it starts an entity: "I-PER I-PER" is the span 0-1, as "B-PER I-PER" is
        (["I-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"], 1, 1, 1),
        # after O, an I- starts a new entity: two entities, neither is the reference's 0-2 span
        (["B-PER", "O", "I-PER"], ["B-PER", "I-PER", "I-PER"], 0, 2, 1),
        # a type change ends an entity: B-PER I-LOC is PER 0-0 and LOC 1-1
        (["B-PER", "I-LOC"], ["B-PER", "O"], 1, 2, 1),
        # B- after B- of the same type: two single-token entities, not one span
        (["B-ORG", "B-ORG"], ["B-ORG", "I-ORG"], 0, 2, 1),
        # the right span with the wrong type counts as nothing
        (["B-LOC", "I-LOC"], ["B-ORG", "I-ORG"], 0, 1, 1),
        # a span cut short: no credit for the overlap
        (["B-geo-loc", "O", "O"], ["B-geo-loc", "I-geo-loc", "O"], 0, 1, 1),
        # IOBES: E- ends, S- is one token; the types hold hyphens
        (["B-geo-loc", "E-geo-loc", "S-geo-loc"], ["B-geo-loc", "I-geo-loc", "S-geo-loc"], 2, 2, 2),
        # an entity that runs to the end of the sentence
        (["O", "B-x", "I-x"], ["O", "B-x", "I-x"], 1, 1, 1),
        # nothing predicted, nothing to find
        (["O", "O"], ["O", "O"], 0, 0, 0),
    ],
)
def test_entity_scores_by_hand(predicted, reference, hits, n_predicted, n_reference):
    result = _entity([predicted], [reference])
    precision = hits / n_predicted if n_predicted else 0.0
    recall = hits / n_reference if n_reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    assert result["entity_precision"] == pytest.approx(precision)
    assert result["entity_recall"] == pytest.approx(recall)
    assert result["entity_f1"] == pytest.approx(f1)
    assert result["token_accuracy"] == pytest.approx(
        np.mean([p == r for p, r in zip(predicted, reference, strict=True)])
    )


def test_entities_are_counted_per_sentence():
    # The entity at the end of sentence 0 and the I- at the start of sentence 1 are two entities, as seqeval's
    # separating "O" between sentences makes them.
    predictions = [["O", "B-PER"], ["I-PER", "O"], ["B-LOC"]]
    references = [["O", "B-PER"], ["B-PER", "O"], ["O"]]
    result = _entity(predictions, references)
    assert result["entity_precision"] == pytest.approx(2 / 3) and result["entity_recall"] == 1.0
    assert result["entity_f1"] == pytest.approx(0.8)
    assert result["token_accuracy"] == pytest.approx(3 / 5)  # I-PER vs B-PER and B-LOC vs O differ


def test_tags_without_a_prefix_are_inside_tags():
    # IO tags (no B-): a run of the same tag is one entity, a new type starts another
    result = _entity([["PER", "PER", "LOC", "O"]], [["B-PER", "I-PER", "B-LOC", "O"]])
    assert result["entity_f1"] == 1.0


def test_token_metrics_score_first_sub_words_only():
    names = ["B-PER", "I-PER", "O"]
    # two sentences, padded; -100 marks special tokens, later sub-words and padding: never scored
    labels = np.array([[IGNORED, 0, IGNORED, 1, 2, IGNORED], [IGNORED, 2, 0, IGNORED, IGNORED, IGNORED]])
    # predictions as ids where -100 falls: what they say there must not matter
    ids = np.array([[1, 0, 2, 1, 2, 0], [0, 2, 2, 0, 0, 0]])
    logits = np.eye(3)[ids]  # the same predictions as logits of shape (2, 6, 3)
    # sentence 0: PER 0-1 found; sentence 1: PER at 1 missed. 1 hit of 1 predicted and 2 reference entities.
    expected = {"entity_precision": 1.0, "entity_recall": 0.5, "entity_f1": pytest.approx(2 / 3)}
    for predictions in (ids, logits, (logits, np.zeros(2))):
        result = token_metrics(names)(EvalPrediction(predictions=predictions, label_ids=labels))
        assert result == {**expected, "token_accuracy": pytest.approx(4 / 5)}
        assert all(type(v) is float for v in result.values())
