"""Entity-level precision, recall and F1 for tagged sequences, as an ``evaluate`` module that loads offline from this
file (``evaluate.load(<path to this file>)``), with the semantics of seqeval's default mode (conlleval's).

Inputs are lists of tag sequences (``["B-person", "I-person", "O"]``), predictions and references of the same
shapes. A tag is ``O`` or ``<prefix>-<type>`` with the prefix ``B`` (begins an entity), ``I`` (inside), ``E`` (ends)
or ``S`` (a single-token entity). An entity ends before a tag when the previous tag was ``E`` or ``S``, when the tag is
``B``, ``S`` or ``O``, or when the type changes; a non-``O`` tag starts an entity when it is ``B`` or ``S`` or when no
entity is open after that. So, as in seqeval's default mode (not its ``strict`` mode): an ``I-`` tag with no entity
of its type before it starts one (``O I-person`` holds the entity ``person``), and ``B-person I-place`` holds two.
A tag without such a prefix (the IO scheme's ``person``) counts as ``I-person``; seqeval would read it as prefix
``p``, type ``erson``.

Result keys (0.0 where a denominator is 0):

- ``entity_precision``: predicted entities (type, first and last position) that are reference entities / predicted.
- ``entity_recall``: the same count / reference entities.
- ``entity_f1``: 2 P R / (P + R).
- ``token_accuracy``: tags equal to their reference / all tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate


PREFIXES = ("B", "I", "E", "S")


def split_tag(tag: str) -> tuple[str, str]:
    """``(prefix, type)``: ``"B-geo-loc"`` -> ``("B", "geo-loc")``, ``"O"`` -> ``("O", "")``, ``"person"`` ->
    ``("I", "person")``."""
    if tag == "O":
        return "O", ""
    head, dash, rest = tag.partition("-")
    if dash and head in PREFIXES:
        return head, rest
    return "I", tag


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one tag sequence as ``(type, first position, last position)``, in order."""
    found = []
    start, kind, previous = None, "", "O"
    for position, tag in enumerate([*tags, "O"]):  # the "O" at the end closes an entity that runs to the end
        prefix, type_ = split_tag(tag)
        if start is not None and (previous in ("E", "S") or prefix in ("B", "S", "O") or type_ != kind):
            found.append((kind, start, position - 1))
            start = None
        if prefix != "O" and (start is None or prefix in ("B", "S")):
            start, kind = position, type_
        previous = prefix
    return found


def scores(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """The result keys above for lists of tag sequences."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predicted sequences for {len(references)} references")
    predicted, actual = set(), set()
    equal = total = 0
    for index, (guess, gold) in enumerate(zip(predictions, references, strict=True)):
        if len(guess) != len(gold):
            raise ValueError(f"sequence {index}: {len(guess)} predicted tags for {len(gold)} reference tags")
        predicted.update((index, *entity) for entity in entities(guess))
        actual.update((index, *entity) for entity in entities(gold))
        equal += sum(p == g for p, g in zip(guess, gold, strict=True))
        total += len(gold)
    hits = len(predicted & actual)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(actual) if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "entity_precision": precision,
        "entity_recall": recall,
        "entity_f1": f1,
        "token_accuracy": equal / total if total else 0.0,
    }


class EntityF1(evaluate.Metric):
    """Entity-level precision, recall and F1 (seqeval's default semantics), and tag accuracy."""

    def _info(self) -> evaluate.MetricInfo:
        tags = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description="Entity-level precision, recall and F1 of tagged sequences (conlleval / seqeval default).",
            citation="",
            inputs_description="predictions, references: lists of tag sequences (lists of strings) of equal shapes.",
            features=datasets.Features({"predictions": tags, "references": tags}),
        )

    def _compute(self, predictions: Any, references: Any) -> dict[str, float]:
        return scores(predictions, references)
