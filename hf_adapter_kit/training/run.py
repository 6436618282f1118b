"""``hf_adapter_kit.train``: the whole run, from a method and a task name to a saved, evaluated adapter."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME

from ..backends import get_backend
from ..data import TaskData, load_task
from ..errors import AdapterKitError, invalid
from ..folders import AdapterMeta, attach_meta, check_output_dir, folder_size, save_adapter
from ..kinds import get_kind
from ..metrics import argmax_logits, compute_classification_metrics, token_metrics
from ..modeling import load_base_model, load_tokenizer, resolve_model_path
from ..registry import resolve_backend
from .args import ARGUMENT_CLASSES, DataArguments, KitTrainingArguments, MethodArguments, ModelArguments, split_kwargs
from .preprocess import tokenize_task
from .trainer import KitTrainer
from .validate import check_arguments, check_values


@dataclass
class TrainResult:
    """What a run produced: the trained model (adapter active), where the adapter went, and what it measured."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    task: TaskData
    meta: AdapterMeta
    adapter_dir: Path
    adapter_size_bytes: int
    test_metrics: dict[str, float]
    train_metrics: dict[str, float] = field(default_factory=dict)
    trainable_parameters: int = 0
    base_parameters: int = 0
    step_times: list[float] = field(default_factory=list)  # seconds of each optimizer step alone

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_parameters / self.base_parameters


def train(
    method: str = "pfeiffer", task: str = "tweets-polarity", output_dir: str = "outputs/run", **kwargs: Any
) -> TrainResult:
    """Train ``method`` on ``task`` and save the adapter to ``output_dir/adapter``.

    Keyword arguments are those of the CLI: model/data/method options and any ``transformers.TrainingArguments``
    field, e.g. ``train("lora", "tweets-polarity", "out", max_train_samples=2000, num_train_epochs=1)``.
    """
    given = {"method": method, "task": task, "output_dir": output_dir, **kwargs}
    routed = split_kwargs(given)
    check_values(given)  # before the dataclasses, whose own checks (transformers') raise plain ValueErrors
    return run_training(*(cls(**values) for cls, values in zip(ARGUMENT_CLASSES, routed, strict=True)))


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    method_args: MethodArguments,
    training_args: KitTrainingArguments,
) -> TrainResult:
    check_arguments(model_args, data_args, method_args, training_args)  # bad values refused before anything runs
    if model_args.task_type == "causal-lm":  # instruction tuning of a decoder LLM
        from .sft import run_sft_training

        return run_sft_training(model_args, data_args, method_args, training_args)
    if data_args.tasks is not None:  # several tasks, one multi-task adapter
        from .multitask import run_multitask_training

        return run_multitask_training(model_args, data_args, method_args, training_args)
    # Every check on the arguments runs before anything is loaded, trained or written.
    spec, backend_name = resolve_backend(method_args.method, method_args.backend)
    config = spec.configs[backend_name](**method_args.options())
    output_dir = check_output_dir(training_args.output_dir)
    resolve_model_path(model_args.model_name_or_path)
    resume = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    task = load_task(data_args.task, **data_args.load_kwargs())
    pick_best_metric(training_args, task.kind)  # before anything is trained or written
    if training_args.learning_rate is None:
        training_args.learning_rate = spec.learning_rate

    token = task.kind == "token"
    tokenizer = load_tokenizer(model_args.model_name_or_path, words=token)
    encoded = tokenize_task(task, tokenizer, model_args.max_length)
    set_seed(training_args.seed)
    base = load_base_model(
        model_args.model_name_or_path,
        task.label_names,
        kind=task.kind,
        dtype=model_args.dtype,
        trust_remote_code=model_args.trust_remote_code,
    )
    base_parameters = sum(p.numel() for p in base.parameters())
    args = (model_args, data_args, method_args, training_args)
    meta = new_meta(
        base, spec.name, backend_name, args, task, task.name, task.name, label_names=task.label_names, kind=task.kind
    )
    adapter_name = meta.adapter_name
    model = get_backend(backend_name).attach(base, config, adapter_name, kind=task.kind)
    attach_meta(model, meta)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    trainer = KitTrainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=DataCollatorForTokenClassification(tokenizer) if token else DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=token_metrics(task.label_names) if token else compute_classification_metrics,
        preprocess_logits_for_metrics=argmax_logits if token else None,
        kit_meta=meta,
    )
    train_output = trainer.train(resume_from_checkpoint=resume)
    test = trainer.evaluate(encoded["test"], metric_key_prefix="test")
    meta.metrics = {key: float(test[f"test_{key}"]) for key in get_kind(task.kind).result_keys}
    return finish_run(
        trainer,
        train_output,
        meta,
        task,
        tokenizer,
        output_dir,
        trainable,
        base_parameters,
        task_description=task.description,
    )


def new_meta(
    model: PreTrainedModel, method: str, backend: str, args: tuple, data: Any, task: str, name: str, **fields: Any
) -> AdapterMeta:
    """The metadata of a run's adapter for ``task``: named ``--adapter_name`` or after ``name``, with the training
    record of ``args`` (model, data, method and training arguments) and ``fields`` (labels, kind, heads)."""
    model_args, data_args, method_args, training_args = args
    return AdapterMeta.for_model(
        model,
        method=method,
        backend=backend,
        adapter_name=method_args.adapter_name or re.sub(r"[^A-Za-z0-9_]", "_", name),
        base_model=model_args.model_name_or_path,
        task=task,
        training=_training_record(model_args, data_args, method_args, training_args, data),
        **fields,
    )


def pick_best_metric(training_args: KitTrainingArguments, kind: str) -> None:
    """``metric_for_best_model``: the task kind's own when the user gave none, else one the task reports."""
    task_kind = get_kind(kind)
    if getattr(training_args, "kit_default_metric", False):
        training_args.metric_for_best_model = task_kind.best_metric
        training_args.greater_is_better = task_kind.greater_is_better
        return
    metric = training_args.metric_for_best_model
    allowed = task_kind.best_metrics()
    if metric is not None and metric.removeprefix("eval_") not in allowed:
        raise invalid(
            "metric_for_best_model",
            metric,
            f"this task is {task_kind.description}, which reports {allowed} (or unset).",
        )


def finish_run(
    trainer: KitTrainer,
    train_output,
    meta: AdapterMeta,
    task: TaskData,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
    trainable: int,
    base_parameters: int,
    **record: Any,
) -> TrainResult:
    """Record what the run measured, save the adapter (rank 0 only) and describe the result."""
    meta.training.update(**record, **run_record(trainer, train_output, trainable, base_parameters))
    model = trainer.trained_model()
    adapter_dir = output_dir / "adapter"
    if trainer.is_world_process_zero():
        save_adapter(model, adapter_dir, meta)
    return TrainResult(
        model=model.eval(),
        tokenizer=tokenizer,
        task=task,
        meta=meta,
        adapter_dir=adapter_dir,
        adapter_size_bytes=folder_size(adapter_dir) if adapter_dir.exists() else 0,
        test_metrics=meta.metrics,
        train_metrics=dict(train_output.metrics),
        trainable_parameters=trainable,
        base_parameters=base_parameters,
        step_times=list(trainer.step_timer.times),
    )


def run_record(trainer: KitTrainer, train_output, trainable: int, base_parameters: int) -> dict[str, Any]:
    """What a finished run measured, for its metadata and card."""
    return {
        "train_runtime_s": round(train_output.metrics.get("train_runtime", 0.0), 1),
        "step_time_s": round(trainer.step_timer.seconds_per_step, 4),  # optimizer steps alone
        "global_steps": train_output.global_step,
        "trainable_parameters": trainable,
        "base_parameters": base_parameters,
        "hardware": hardware(),
    }


def hardware() -> str:
    """A short description of the device the run trained on, for model cards."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def resolve_checkpoint(resume: str | None, output_dir: Path) -> str | None:
    """A complete checkpoint folder to resume from; ``"last"`` picks the newest complete one in ``output_dir``.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint without it was cut off while saving.
    """
    if resume is None:
        return None
    if resume == "last":
        complete = [p for p in output_dir.glob("checkpoint-*") if (p / TRAINER_STATE_NAME).is_file()]
        if not complete:
            raise AdapterKitError(
                f"`resume_from_checkpoint`='last' found no complete checkpoint in `output_dir`={str(output_dir)!r}."
            )
        return str(max(complete, key=lambda p: int(p.name.rsplit("-", 1)[-1])))
    if not Path(resume).is_dir():
        raise AdapterKitError(
            f"`resume_from_checkpoint`={resume!r} is not a folder: give a checkpoint-N folder or 'last'."
        )
    if not (Path(resume) / TRAINER_STATE_NAME).is_file():
        raise AdapterKitError(
            f"`resume_from_checkpoint`={resume!r} is incomplete (no trainer_state.json: the run stopped while "
            "saving it); give an earlier checkpoint or 'last'."
        )
    return resume


def _training_record(model_args, data_args, method_args, training_args, task: TaskData) -> dict[str, Any]:
    """The hyperparameters worth writing down (model cards and reproducibility)."""
    return {
        "learning_rate": training_args.learning_rate,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "warmup_ratio": training_args.warmup_ratio,
        "seed": training_args.seed,
        "max_length": model_args.max_length,
        "train_examples": task.splits["train"].num_rows,
        "method_options": method_args.options(),
        "data": {k: v for k, v in asdict(data_args).items() if v is not None},
    }
