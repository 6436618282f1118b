"""What a run writes down and hands back: the adapter's metadata (:func:`new_meta`), the record of what the run
measured, the saved adapter (:func:`finish_run`) and :class:`TrainResult`."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data import TaskData
from ..folders import AdapterMeta, folder_size, save_adapter
from .trainer import KitTrainer


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


__all__ = ["TrainResult", "finish_run", "hardware", "new_meta", "run_record"]
