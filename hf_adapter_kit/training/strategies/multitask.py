"""Multi-task classification (Hyperformer++, multi-task parallel): several tasks, one adapter, one head per task.

Batches come one task at a time, the task drawn by temperature (``sampling.py``). Evaluation reports each task's
metrics (``eval_<task>_accuracy``; a token-classification task such as ``tweets-ner`` reports
``eval_<task>_entity_f1`` and the other entity scores instead), each metric's mean over the tasks that report it
(``eval_accuracy``), and ``eval_score``, the mean of each task's main metric (its kind's best metric in ``kinds.py``:
accuracy, or entity F1 for token tasks), which picks the best checkpoint; with text-classification tasks only it
equals the mean accuracy. Reached through the same command as single-task runs: ``--tasks a b c`` (or ``tasks:`` in a
recipe).

Text- and token-classification tasks mix: each gets its kind of head (``MultiTaskModel``'s ``TaskHead``). Batches then
carry label lists: a text's label becomes a one-item list, which the collator pads with -100 like a sentence's tags,
and the sequence head reads its first position.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoModel, DataCollatorForTokenClassification, DataCollatorWithPadding, EvalPrediction

from ...data import load_task
from ...errors import invalid
from ...kinds import get_kind
from ...metrics import TOKEN_METRIC, compute_classification_metrics, load_metric, tag_sequences
from ...modeling import load_tokenizer, resolve_model_path
from ...multitask import MultiTaskModel, TaskHead, attach_encoder
from .. import probe
from ..preprocess import tokenize_task
from ..sampling import TemperatureSampling
from ..trainer import KitTrainer
from .base import Strategy
from .tasks import add_task_ids, check_multitask_arguments


SCORE = "score"  # the mean of each task's main metric: what picks the best checkpoint


def summary_keys(kinds: list[str]) -> list[str]:
    """The keys a multi-task evaluation reports beside each task's: the means of the tasks' metrics, and ``score``."""
    return [key for kind in dict.fromkeys(kinds) for key in get_kind(kind).result_keys] + [SCORE]


class MultiTaskTrainer(TemperatureSampling, KitTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_heads = {head["name"]: head for head in self.kit_meta.heads}  # kind and label names of each task

    def _load_checkpoint_weights(self, model, checkpoint) -> None:
        model.load_weights(checkpoint)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        datasets_by_task = eval_dataset if eval_dataset is not None else self.eval_dataset
        metrics: dict[str, float] = {}
        for task, dataset in datasets_by_task.items():
            for key, value in self._task_metrics(task, dataset).items():
                metrics[f"{metric_key_prefix}_{task}_{key}"] = value
        prefix = metric_key_prefix
        kind_of = {task: self.task_heads[task]["kind"] for task in datasets_by_task}
        for key in summary_keys(list(kind_of.values()))[:-1]:  # each metric's mean over the tasks that report it
            values = [
                metrics[f"{prefix}_{task}_{key}"]
                for task, kind in kind_of.items()
                if key in get_kind(kind).result_keys
            ]
            metrics[f"{prefix}_{key}"] = float(np.mean(values))
        main = [metrics[f"{prefix}_{task}_{get_kind(kind).best_metric}"] for task, kind in kind_of.items()]
        metrics[f"{prefix}_{SCORE}"] = float(np.mean(main))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    @torch.no_grad()
    def _task_metrics(self, task: str, dataset: datasets.Dataset) -> dict[str, float]:
        model = self.model.eval()
        device = next(model.parameters()).device
        loader = DataLoader(
            dataset.remove_columns(
                [c for c in dataset.column_names if c not in {"input_ids", "attention_mask", "labels"}]
            ),
            batch_size=self.args.eval_batch_size,
            collate_fn=self.data_collator,
        )
        token = self.task_heads[task]["kind"] == "token"
        predictions, references, tags, gold_tags = [], [], [], []
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(batch["input_ids"], batch["attention_mask"], task_ids=task)
            predicted, labels = out.logits[task].argmax(-1).cpu(), batch["labels"].cpu()
            if token:  # batches differ in length: tag names per sentence, batch by batch
                guesses, golds = tag_sequences(predicted.numpy(), labels.numpy(), self.task_heads[task]["label_names"])
                tags += guesses
                gold_tags += golds
            else:
                predictions.append(predicted)
                references.append(labels[:, 0] if labels.dim() > 1 else labels)  # a text's label list: its first item
        model.train()
        if token:
            results = load_metric(TOKEN_METRIC).compute(predictions=tags, references=gold_tags)
            return {key: float(value) for key, value in results.items()}
        prediction = EvalPrediction(
            predictions=torch.cat(predictions).numpy(), label_ids=torch.cat(references).numpy()
        )
        return compute_classification_metrics(prediction)


class MultiTaskClassification(Strategy):
    task_type = None
    several_tasks = True

    def check(self, spec) -> None:
        data_args = self.args.data
        self.names = check_multitask_arguments(spec, data_args, self.args.method)
        if data_args.label_names is not None:
            raise invalid(
                "label_names", data_args.label_names, "unset with `tasks`: each embedded task has its classes."
            )

    def load_data(self) -> None:
        self.tasks = [load_task(name, **self.args.data.load_kwargs()) for name in self.names]
        self.args.training.metric_for_best_model = SCORE

    @property
    def token(self) -> bool:
        """Whether any task is token classification: then every batch carries label lists."""
        return any(task.kind == "token" for task in self.tasks)

    def encode(self):
        self.tokenizer = load_tokenizer(self.args.model.model_name_or_path, words=self.token)
        self.encoded = [tokenize_task(task, self.tokenizer, self.args.model.max_length) for task in self.tasks]
        for task, splits in zip(self.tasks, self.encoded, strict=True):
            if self.token and task.kind == "sequence":  # label lists in every batch (see the module docstring)
                for split in splits:
                    splits[split] = splits[split].map(
                        lambda batch: {"labels": [[label] for label in batch["labels"]]}, batched=True
                    )
        add_task_ids(self.encoded)
        return self.tokenizer

    def load_model(self):
        model_args = self.args.model
        path = resolve_model_path(model_args.model_name_or_path)
        return AutoModel.from_pretrained(path, dtype=model_args.dtype, trust_remote_code=model_args.trust_remote_code)

    def heads(self) -> list[dict[str, Any]]:
        return [{"name": t.name, "kind": t.kind, "label_names": list(t.label_names)} for t in self.tasks]

    def meta_fields(self) -> dict[str, Any]:
        task, name = ", ".join(self.names), "_".join(self.names)
        return dict(data=self.tasks[0], task=task, name=name, label_names=[], heads=self.heads())

    def attach(self, base, config, backend: str, adapter_name: str):
        encoder = attach_encoder(base, config, backend, adapter_name)
        heads = {h["name"]: TaskHead(h["kind"], len(h["label_names"]), tuple(h["label_names"])) for h in self.heads()}
        return MultiTaskModel(encoder, heads)

    def collator(self):
        return (DataCollatorForTokenClassification if self.token else DataCollatorWithPadding)(self.tokenizer)

    def start_head(self, model: MultiTaskModel) -> dict[str, Any]:
        """Each task's head a probe of its task's features (``probe.py``), as a one-task run's."""
        if self.args.training.head_init != "probe":
            return {"head_init": self.args.training.head_init}
        accuracy = {
            name: round(
                probe.probe(model, model.heads[name], probe.batches(splits["train"], self.collator(), task_ids=name)),
                4,
            )
            for name, splits in zip(self.names, self.encoded, strict=True)
        }
        return {"head_init": "probe", "probe_train_accuracy": accuracy}

    def trainer(self, **common: Any) -> KitTrainer:
        return MultiTaskTrainer(
            **common,
            train_dataset=datasets.concatenate_datasets([splits["train"] for splits in self.encoded]),
            eval_dataset={name: splits["validation"] for name, splits in zip(self.names, self.encoded, strict=True)},
            data_collator=self.collator(),
            task_sizes=[splits["train"].num_rows for splits in self.encoded],
            temperature=self.args.data.temperature,
        )

    def evaluate(self, trainer: KitTrainer) -> tuple[dict[str, float], dict[str, Any]]:
        names, encoded = self.names, self.encoded
        test = trainer.evaluate(
            {name: splits["test"] for name, splits in zip(names, encoded, strict=True)}, metric_key_prefix="test"
        )
        kinds = {task.name: task.kind for task in self.tasks}
        metrics = {key: float(test[f"test_{key}"]) for key in summary_keys(list(kinds.values()))}
        record = dict(
            task_metrics={n: {k: float(test[f"test_{n}_{k}"]) for k in get_kind(kinds[n]).result_keys} for n in names},
            train_examples={n: s["train"].num_rows for n, s in zip(names, encoded, strict=True)},
            temperature=self.args.data.temperature,
        )
        return metrics, record


__all__ = ["MultiTaskClassification", "MultiTaskTrainer", "summary_keys"]
