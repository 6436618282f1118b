"""Multi-task training (Hyperformer++, multi-task parallel): several tasks, one adapter, one head per task.

Batches are drawn one task at a time; the task of each batch is sampled with ``p_i ~ n_i ** (1 / T)`` (``n_i`` the
task's training examples, ``T`` = ``temperature``, 10 by default as in the Hyperformer reference), so small tasks are
seen more often than their share. An epoch has as many batches as the tasks have together. Evaluation reports each
task's accuracy and macro F1 (``eval_<task>_accuracy``) and their means (``eval_accuracy``, used to pick the best
checkpoint). Reached through the same command as single-task runs: ``--tasks a b c`` (or ``tasks:`` in a recipe).
"""

from __future__ import annotations

import math
import re

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import AutoModel, DataCollatorWithPadding, EvalPrediction, set_seed

from ..data import load_task
from ..errors import invalid
from ..methods.common.routing import check_tasks
from ..metrics import compute_classification_metrics
from ..modeling import load_tokenizer, resolve_model_path
from ..multitask import MultiTaskModel, TaskHead, attach_encoder, load_weights
from ..registry import multi_task_methods, resolve_backend
from ..saving import AdapterMeta, attach_meta, check_output_dir
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


class MultiTaskTrainer(KitTrainer):
    def __init__(self, *args, task_sizes: list[int], temperature: float, **kwargs):
        self.task_sizes, self.temperature = task_sizes, temperature
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        return TemperatureBatchSampler(
            self.task_sizes, self.args.train_batch_size, self.temperature, self.args.data_seed or self.args.seed
        )

    def _load_checkpoint_weights(self, model, checkpoint) -> None:
        load_weights(model, checkpoint, self.kit_meta.backend, self.kit_meta.adapter_name)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        datasets_by_task = eval_dataset if eval_dataset is not None else self.eval_dataset
        metrics: dict[str, float] = {}
        for task, dataset in datasets_by_task.items():
            for key, value in self._task_metrics(task, dataset).items():
                metrics[f"{metric_key_prefix}_{task}_{key}"] = value
        for key in ("accuracy", "f1_macro"):
            values = [metrics[f"{metric_key_prefix}_{t}_{key}"] for t in datasets_by_task]
            metrics[f"{metric_key_prefix}_{key}"] = float(np.mean(values))
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
        predictions, references = [], []
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(batch["input_ids"], batch["attention_mask"], task_ids=task)
            predictions.append(out.logits[task].argmax(-1).cpu())
            references.append(batch["labels"].cpu())
        model.train()
        prediction = EvalPrediction(
            predictions=torch.cat(predictions).numpy(), label_ids=torch.cat(references).numpy()
        )
        return compute_classification_metrics(prediction)


def run_multitask_training(model_args, data_args, method_args, training_args):
    """``hf_adapter_kit.train(..., tasks=[...])``: checks, data, model, training, per-task test metrics, saving."""
    from .run import _training_record, finish_run, resolve_checkpoint

    check_arguments(model_args, data_args, method_args, training_args)  # bad values refused before anything runs
    spec, backend = resolve_backend(method_args.method, method_args.backend)
    if not spec.multi_task:
        raise invalid("method", method_args.method, f"a multi-task method for `tasks`: one of {multi_task_methods()}.")
    names = list(check_tasks(data_args.tasks))
    if any(getattr(data_args, f) for f in ("train_file", "validation_file", "test_file")):
        raise invalid("tasks", names, "embedded or Hub task names; local files name a single `task`.")
    if data_args.temperature <= 0:
        raise invalid("temperature", data_args.temperature, "a number > 0 (1: by task size; 10: nearly uniform).")
    options = method_args.options()
    if "tasks" in options and list(options["tasks"]) != names:
        raise invalid(
            "method_options.tasks", options["tasks"], f"leave it out or give the same tasks as `tasks` {names}."
        )
    config = spec.configs[backend](**(options | {"tasks": names}))
    output_dir = check_output_dir(training_args.output_dir)
    resolve_model_path(model_args.model_name_or_path)
    resume = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    load_kwargs = {k: v for k, v in data_args.load_kwargs().items() if k not in {"tasks", "temperature"}}
    tasks = [load_task(name, **load_kwargs) for name in names]
    if training_args.learning_rate is None:
        training_args.learning_rate = spec.learning_rate
    training_args.metric_for_best_model = "accuracy"

    tokenizer = load_tokenizer(model_args.model_name_or_path)
    encoded = [tokenize_task(task, tokenizer, model_args.max_length) for task in tasks]
    for index, splits in enumerate(encoded):
        for split in splits:
            splits[split] = splits[split].add_column("task_ids", [index] * splits[split].num_rows)
    set_seed(training_args.seed)
    path = resolve_model_path(model_args.model_name_or_path)
    encoder = AutoModel.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    base_parameters = sum(p.numel() for p in encoder.parameters())
    adapter_name = method_args.adapter_name or re.sub(r"[^A-Za-z0-9_]", "_", "_".join(names))
    heads = [{"name": t.name, "kind": "sequence", "label_names": list(t.label_names)} for t in tasks]
    meta = AdapterMeta.for_model(
        encoder,
        method=spec.name,
        backend=backend,
        adapter_name=adapter_name,
        base_model=model_args.model_name_or_path,
        label_names=[],
        task=", ".join(names),
        heads=heads,
        training=_training_record(model_args, data_args, method_args, training_args, tasks[0]),
    )
    encoder = attach_encoder(encoder, config, backend, adapter_name)
    model = MultiTaskModel(encoder, {head["name"]: TaskHead("sequence", len(head["label_names"])) for head in heads})
    attach_meta(model, meta)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    trainer = MultiTaskTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets.concatenate_datasets([splits["train"] for splits in encoded]),
        eval_dataset={name: splits["validation"] for name, splits in zip(names, encoded, strict=True)},
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        kit_meta=meta,
        task_sizes=[splits["train"].num_rows for splits in encoded],
        temperature=data_args.temperature,
    )
    train_output = trainer.train(resume_from_checkpoint=resume)
    test = trainer.evaluate(
        {name: splits["test"] for name, splits in zip(names, encoded, strict=True)}, metric_key_prefix="test"
    )
    meta.metrics = {key: float(test[f"test_{key}"]) for key in ("accuracy", "f1_macro")}
    return finish_run(
        trainer,
        train_output,
        meta,
        tasks[0],
        tokenizer,
        output_dir,
        trainable,
        base_parameters,
        task_metrics={n: {k: float(test[f"test_{n}_{k}"]) for k in ("accuracy", "f1_macro")} for n in names},
        train_examples={n: s["train"].num_rows for n, s in zip(names, encoded, strict=True)},
        temperature=data_args.temperature,
    )


__all__ = ["MultiTaskTrainer", "TemperatureBatchSampler", "run_multitask_training", "task_probabilities"]
