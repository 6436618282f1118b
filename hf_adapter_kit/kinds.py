"""The kinds of task the kit trains and serves, one row each: the one place that maps a kind to its model class, its
pipelines, PEFT's ``task_type``, what a run reports and the metric that picks the best checkpoint.

- ``sequence``: one label per input (text classification), ``AutoModelForSequenceClassification``;
- ``token``: one label per word (token classification, NER), ``AutoModelForTokenClassification``;
- ``causal-lm``: instruction tuning of a decoder LLM, ``AutoModelForCausalLM``, evaluated by generation;
- ``seq2seq-lm``: text-to-text with an encoder-decoder (T5, BART), ``AutoModelForSeq2SeqLM``, evaluated by generation.

A multi-task classification model (``multitask/``) wraps a bare encoder whose heads are the kit's own: its PEFT config
gets :data:`ENCODER_TASK_TYPE`.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .errors import choices
from .metrics import METRICS, TOKEN_RESULTS


@dataclass(frozen=True)
class Kind:
    name: str
    auto_class: type  # the transformers auto class whose model carries this kind's head
    pipelines: tuple[str, ...]  # the transformers pipelines that serve it; the first is the Hub's pipeline tag
    peft_task_type: str  # PEFT's TaskType for a config on this kind (its PeftModel class, rebuilt on load)
    result_keys: tuple[str, ...]  # what a run reports on the test split (TrainResult.test_metrics)
    best_metric: str  # the default metric_for_best_model
    greater_is_better: bool
    description: str  # for messages: "text classification", ...

    @property
    def pipeline_tag(self) -> str:
        return self.pipelines[0]

    def best_metrics(self) -> list[str]:
        """What ``metric_for_best_model`` may name for this kind (the validation split reports these)."""
        return [self.best_metric] if self.best_metric == "loss" else [*self.result_keys, "loss"]


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "sequence",
            AutoModelForSequenceClassification,
            ("text-classification", "sentiment-analysis"),
            "SEQ_CLS",
            METRICS,
            "accuracy",
            True,
            "text classification",
        ),
        Kind(
            "token",
            AutoModelForTokenClassification,
            ("token-classification", "ner"),
            "TOKEN_CLS",
            TOKEN_RESULTS,
            "entity_f1",
            True,
            "token classification",
        ),
        Kind(
            "causal-lm",
            AutoModelForCausalLM,
            ("text-generation",),
            "CAUSAL_LM",
            ("accuracy", "perplexity", "zero_shot_accuracy", "zero_shot_perplexity"),
            "loss",  # validation loss on the completions: generation is measured once, on the test split
            False,
            "instruction tuning (causal-lm)",
        ),
        Kind(
            "seq2seq-lm",
            AutoModelForSeq2SeqLM,
            ("text2text-generation",),
            "SEQ_2_SEQ_LM",
            ("accuracy", "perplexity", "zero_shot_accuracy", "zero_shot_perplexity"),
            "loss",  # validation loss on the targets, as causal-lm: generation is measured once, on the test split
            False,
            "text-to-text (seq2seq-lm)",
        ),
    )
}
GENERATIVE = ("causal-lm", "seq2seq-lm")  # the kinds that write their answers (no classification head)
CLASSIFICATION = ("sequence", "token")  # the kinds with a classification head (a multi-task model's TaskHead kinds)
ENCODER_TASK_TYPE = "FEATURE_EXTRACTION"  # PEFT's task type of a multi-task model's bare encoder
SERVED_PIPELINES = tuple(task for kind in KINDS.values() for task in kind.pipelines)


def get_kind(name: str, argument: str = "kind") -> Kind:
    if name not in KINDS:
        raise choices(argument, name, KINDS)
    return KINDS[name]


def kind_of_pipeline(task: str) -> Kind:
    """The kind whose pipelines include ``task`` (a transformers pipeline name)."""
    return next(kind for kind in KINDS.values() if task in kind.pipelines)


__all__ = [
    "CLASSIFICATION",
    "ENCODER_TASK_TYPE",
    "GENERATIVE",
    "KINDS",
    "SERVED_PIPELINES",
    "Kind",
    "get_kind",
    "kind_of_pipeline",
]
