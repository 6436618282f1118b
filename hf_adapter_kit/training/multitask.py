"""Multi-task training (Hyperformer++, multi-task parallel): several tasks, one adapter, one head per task.

Batches are drawn one task at a time; the task of each batch is sampled with ``p_i ~ n_i ** (1 / T)`` (``n_i`` the
task's training examples, ``T`` = ``temperature``, 10 by default as in the Hyperformer reference), so small tasks are
seen more often than their share. An epoch has as many batches as the tasks have together. Evaluation reports each
task's metrics (``eval_<task>_accuracy``; a token-classification task such as ``tweets-ner`` reports
``eval_<task>_entity_f1`` and the other entity scores instead), each metric's mean over the tasks that report it
(``eval_accuracy``), and ``eval_score``, the mean of each task's main metric (accuracy, or entity F1 for token tasks),
which picks the best checkpoint; with text-classification tasks only it equals the mean accuracy. Reached through the
same command as single-task runs: ``--tasks a b c`` (or ``tasks:`` in a recipe).

Text- and token-classification tasks mix: each gets its kind of head (``MultiTaskModel``'s ``TaskHead``). Batches then
carry label lists: a text's label becomes a one-item list, which the collator pads with -100 like a sentence's tags,
and the sequence head reads its first position.
"""

from __future__ import annotations

import math

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import (
    AutoModel,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    set_seed,
)

from ..data import load_task
from ..errors import invalid
from ..folders import attach_meta, check_output_dir
from ..kinds import get_kind
from ..metrics import TOKEN_METRIC, compute_classification_metrics, load_metric, tag_sequences
from ..modeling import load_tokenizer, resolve_model_path
from ..multitask import MultiTaskModel, TaskHead, attach_encoder
from ..registry import multi_task_methods, resolve_backend
from ..routing import check_tasks
from .preprocess import tokenize_task
from .trainer import KitTrainer
from .validate import check_arguments


def task_probabilities(sizes: list[int], temperature: float) -> np.ndarray:
    """``p_i ~ n_i ** (1 / T)``: T = 1 samples tasks by size, a large T samples them uniformly."""
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return weights / weights.sum()


class TemperatureBatchSampler(Sampler):
    """Indices into the concatenated tasks, ``batch_size`` at a time from one task; the order depends on (seed, epoch).

    Each task's examples are shuffled and consumed in turn (reshuffled when used up), so every batch is full.
    """

    def __init__(self, sizes: list[int], batch_size: int, temperature: float, seed: int):
        self.sizes, self.batch_size, self.seed, self.epoch = list(sizes), batch_size, seed, 0
        self.probabilities = task_probabilities(self.sizes, temperature)
        self.offsets = np.cumsum([0, *self.sizes[:-1]])
        self.num_batches = sum(math.ceil(n / batch_size) for n in self.sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def batch_tasks(self) -> np.ndarray:
        """The task of each batch of the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.choice(len(self.sizes), size=self.num_batches, p=self.probabilities)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        pools = [rng.permutation(n) for n in self.sizes]
        cursor = [0] * len(self.sizes)
        for task in self.batch_tasks():
            for _ in range(self.batch_size):
                if cursor[task] == self.sizes[task]:
                    pools[task], cursor[task] = rng.permutation(self.sizes[task]), 0
                yield int(self.offsets[task] + pools[task][cursor[task]])
                cursor[task] += 1


def summary_keys(kinds: list[str]) -> list[str]:
    """The keys a multi-task evaluation reports beside each task's: the means of the tasks' metrics, and ``score``."""
    return [key for kind in dict.fromkeys(kinds) for key in get_kind(kind).result_keys] + ["score"]


class MultiTaskTrainer(KitTrainer):
    def __init__(self, *args, task_sizes: list[int], temperature: float, **kwargs):
        self.task_sizes, self.temperature = task_sizes, temperature
        super().__init__(*args, **kwargs)
        self.task_heads = {head["name"]: head for head in self.kit_meta.heads}  # kind and label names of each task

    def _get_train_sampler(self, train_dataset=None):
        return TemperatureBatchSampler(
            self.task_sizes, self.args.train_batch_size, self.temperature, self.args.data_seed or self.args.seed
        )

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
        metrics[f"{prefix}_score"] = float(np.mean(main))
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


def check_multitask_arguments(spec, data_args, method_args) -> list[str]:
    """The task names of a multi-task run (``tasks``, classification or instruction tuning), once a multi-task method,
    embedded or Hub tasks, a temperature > 0 and the same tasks in ``method_options`` (if any) are checked."""
    if not spec.multi_task:
        raise invalid("method", method_args.method, f"a multi-task method for `tasks`: one of {multi_task_methods()}.")
    names = list(check_tasks(data_args.tasks))
    if any(getattr(data_args, f) for f in ("train_file", "validation_file", "test_file")):
        raise invalid("tasks", names, "embedded or Hub task names; local files name a single `task`.")
    if data_args.temperature <= 0:
        raise invalid("temperature", data_args.temperature, "a number > 0 (1: by task size; 10: nearly uniform).")
    given = method_args.options().get("tasks")
    if given is not None and list(given) != names:
        raise invalid("method_options.tasks", given, f"leave it out or give the same tasks as `tasks` {names}.")
    return names


def run_multitask_training(model_args, data_args, method_args, training_args):
    """``hf_adapter_kit.train(..., tasks=[...])``: checks, data, model, training, per-task test metrics, saving."""
    from .run import finish_run, new_meta, resolve_checkpoint

    check_arguments(model_args, data_args, method_args, training_args)  # bad values refused before anything runs
    spec, backend = resolve_backend(method_args.method, method_args.backend)
    names = check_multitask_arguments(spec, data_args, method_args)
    if data_args.label_names is not None:
        raise invalid("label_names", data_args.label_names, "unset with `tasks`: each embedded task has its classes.")
    config = spec.configs[backend](**(method_args.options() | {"tasks": names}))
    output_dir = check_output_dir(training_args.output_dir)
    resolve_model_path(model_args.model_name_or_path)
    resume = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    load_kwargs = {k: v for k, v in data_args.load_kwargs().items() if k not in {"tasks", "temperature"}}
    tasks = [load_task(name, **load_kwargs) for name in names]
    if training_args.learning_rate is None:
        training_args.learning_rate = spec.learning_rate
    training_args.metric_for_best_model = "score"

    token = any(task.kind == "token" for task in tasks)
    tokenizer = load_tokenizer(model_args.model_name_or_path, words=token)
    encoded = [tokenize_task(task, tokenizer, model_args.max_length) for task in tasks]
    for index, (task, splits) in enumerate(zip(tasks, encoded, strict=True)):
        for split in splits:
            data = splits[split]
            if token and task.kind == "sequence":  # label lists in every batch (see the module docstring)
                data = data.map(lambda batch: {"labels": [[label] for label in batch["labels"]]}, batched=True)
            splits[split] = data.add_column("task_ids", [index] * data.num_rows)
    set_seed(training_args.seed)
    path = resolve_model_path(model_args.model_name_or_path)
    encoder = AutoModel.from_pretrained(path, dtype=model_args.dtype, trust_remote_code=model_args.trust_remote_code)
    base_parameters = sum(p.numel() for p in encoder.parameters())
    heads = [{"name": t.name, "kind": t.kind, "label_names": list(t.label_names)} for t in tasks]
    args = (model_args, data_args, method_args, training_args)
    meta = new_meta(encoder, spec.name, backend, args, tasks[0], ", ".join(names), "_".join(names), label_names=[],
                    heads=heads)  # fmt: skip
    adapter_name = meta.adapter_name
    encoder = attach_encoder(encoder, config, backend, adapter_name)
    model = MultiTaskModel(
        encoder, {h["name"]: TaskHead(h["kind"], len(h["label_names"]), tuple(h["label_names"])) for h in heads}
    )
    attach_meta(model, meta)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    trainer = MultiTaskTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets.concatenate_datasets([splits["train"] for splits in encoded]),
        eval_dataset={name: splits["validation"] for name, splits in zip(names, encoded, strict=True)},
        data_collator=DataCollatorForTokenClassification(tokenizer) if token else DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        kit_meta=meta,
        task_sizes=[splits["train"].num_rows for splits in encoded],
        temperature=data_args.temperature,
    )
    train_output = trainer.train(resume_from_checkpoint=resume)
    test = trainer.evaluate(
        {name: splits["test"] for name, splits in zip(names, encoded, strict=True)}, metric_key_prefix="test"
    )
    kinds = {task.name: task.kind for task in tasks}
    meta.metrics = {key: float(test[f"test_{key}"]) for key in summary_keys(list(kinds.values()))}
    return finish_run(
        trainer,
        train_output,
        meta,
        tasks[0],
        tokenizer,
        output_dir,
        trainable,
        base_parameters,
        task_metrics={n: {k: float(test[f"test_{n}_{k}"]) for k in get_kind(kinds[n]).result_keys} for n in names},
        train_examples={n: s["train"].num_rows for n, s in zip(names, encoded, strict=True)},
        temperature=data_args.temperature,
    )


__all__ = [
    "MultiTaskTrainer",
    "TemperatureBatchSampler",
    "check_multitask_arguments",
    "run_multitask_training",
    "task_probabilities",
]
