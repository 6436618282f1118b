"""One classification task: one label per text (``sequence``) or per word (``token``), a head of the task's kind
(``kinds.py``), metrics of that kind on the validation and test splits."""

from __future__ import annotations

from typing import Any

from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

from ...backends import get_backend
from ...data import load_task
from ...kinds import get_kind
from ...metrics import argmax_logits, compute_classification_metrics, token_metrics
from ...modeling import families, head_prefixes, load_base_model, load_tokenizer
from .. import probe
from ..best_metric import pick_best_metric
from ..preprocess import tokenize_task
from ..trainer import KitTrainer
from .base import Strategy


class Classification(Strategy):
    task_type = None
    several_tasks = False

    @property
    def task(self):
        return self.tasks[0]

    def load_data(self) -> None:
        data_args = self.args.data
        self.tasks = [load_task(data_args.task, **data_args.load_kwargs())]
        pick_best_metric(self.args.training, self.task.kind)  # the file or dataset tells the kind

    def encode(self):
        self.tokenizer = load_tokenizer(self.args.model.model_name_or_path, words=self.task.kind == "token")
        self.encoded = [tokenize_task(self.task, self.tokenizer, self.args.model.max_length)]
        return self.tokenizer

    def load_model(self):
        model_args = self.args.model
        return load_base_model(
            model_args.model_name_or_path,
            self.task.label_names,
            kind=self.task.kind,
            dtype=model_args.dtype,
            trust_remote_code=model_args.trust_remote_code,
        )

    def meta_fields(self) -> dict[str, Any]:
        task = self.task
        return dict(data=task, task=task.name, name=task.name, label_names=task.label_names, kind=task.kind)

    def attach(self, base, config, backend: str, adapter_name: str):
        self.backend = backend
        return get_backend(backend).attach(base, config, adapter_name, kind=self.task.kind)

    def collator(self):
        token = self.task.kind == "token"
        return (DataCollatorForTokenClassification if token else DataCollatorWithPadding)(self.tokenizer)

    def start_head(self, model) -> dict[str, Any]:
        if self.args.training.head_init != "probe":
            return {"head_init": self.args.training.head_init}
        base = get_backend(self.backend).base_model(model)
        head = probe.last_linear(model, head_prefixes(base), len(self.task.label_names))
        decoder = families.is_decoder(base.config) and self.task.kind == "sequence"
        batches = probe.batches(self.encoded[0]["train"], self.collator())
        return {"head_init": "probe", "probe_train_accuracy": round(probe.probe(model, head, batches, decoder), 4)}

    def trainer(self, **common: Any) -> KitTrainer:
        token = self.task.kind == "token"
        splits = self.encoded[0]
        return KitTrainer(
            **common,
            train_dataset=splits["train"],
            eval_dataset=splits["validation"],
            data_collator=self.collator(),
            compute_metrics=token_metrics(self.task.label_names) if token else compute_classification_metrics,
            preprocess_logits_for_metrics=argmax_logits if token else None,
        )

    def evaluate(self, trainer: KitTrainer) -> tuple[dict[str, float], dict[str, Any]]:
        test = trainer.evaluate(self.encoded[0]["test"], metric_key_prefix="test")
        metrics = {key: float(test[f"test_{key}"]) for key in get_kind(self.task.kind).result_keys}
        return metrics, {"task_description": self.task.description}


__all__ = ["Classification"]
