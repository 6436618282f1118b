"""The interface of a training strategy: what one task shape does at the steps of the pipeline (``run.py``) where
task shapes differ. The pipeline owns the order of the steps and everything shared; a strategy never calls another
strategy or the pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from ...registry import MethodSpec
from ..args import DataArguments, KitTrainingArguments, MethodArguments, ModelArguments
from ..trainer import KitTrainer


class RunArguments(NamedTuple):
    """The four argument dataclasses of a run, in the order ``run_training`` takes them."""

    model: ModelArguments
    data: DataArguments
    method: MethodArguments
    training: KitTrainingArguments


class Strategy(ABC):
    """One run of one task shape. An instance lives for one run and keeps what it loads and builds between the
    steps: the task names (``names``, with ``tasks``), each task's data (``tasks``), their encoded splits
    (``encoded``) and the tokenizer.

    Chosen by ``strategies.choose_strategy`` from :attr:`task_type` and :attr:`several_tasks`.
    """

    task_type: ClassVar[str | None] = None  # the ModelArguments.task_type it trains; None: classification
    several_tasks: ClassVar[bool | None] = None  # True: only with `tasks`; False: only without; None: either

    def __init__(self, args: RunArguments):
        self.args = args
        self.names: list[str] | None = None
        self.tasks: list[Any] = []  # TaskData or InstructionData, in the order of `names`
        self.encoded: list[datasets.DatasetDict] = []
        self.tokenizer: PreTrainedTokenizerBase | None = None

    @classmethod
    def serves(cls, task_type: str | None, several: bool) -> bool:
        """Whether this strategy trains ``task_type``, with several tasks (``tasks`` given) or one."""
        return cls.task_type == task_type and cls.several_tasks in (None, several)

    def check(self, spec: MethodSpec) -> None:
        """Refuse what this shape cannot train (the method, the data arguments); runs before anything is loaded or
        written. Sets :attr:`names` for a run over several tasks."""
        return None  # one-task classification: the pipeline's own checks are all it needs

    def config_options(self) -> dict[str, Any]:
        """What the method's config gets beside ``method_options``: a multi-task adapter its tasks."""
        return {"tasks": self.names} if self.names else {}

    @abstractmethod
    def load_data(self) -> None:
        """Fill :attr:`tasks`, and fix ``metric_for_best_model`` (``best_metric.py``) where the kind decides it: once
        the data tell the kind, or before loading them where the strategy fixes the kind itself."""

    @abstractmethod
    def encode(self) -> PreTrainedTokenizerBase:
        """Load the tokenizer (kept in :attr:`tokenizer`) and fill :attr:`encoded`, one DatasetDict per task."""

    @abstractmethod
    def load_model(self) -> torch.nn.Module:
        """The base model, before any adapter (seeded by the pipeline just before)."""

    @abstractmethod
    def meta_fields(self) -> dict[str, Any]:
        """``new_meta``'s ``data`` (the first task: its training record), ``task``, ``name`` and the metadata fields
        of this shape (``label_names``, ``kind``, ``heads``, ``tasks``)."""

    @abstractmethod
    def attach(self, base: torch.nn.Module, config: Any, backend: str, adapter_name: str) -> torch.nn.Module:
        """The model that trains: ``base`` with the adapter ``adapter_name`` of ``config`` on ``backend``."""

    def start_head(self, model: torch.nn.Module) -> dict[str, Any]:
        """Start a classification head as ``head_init`` says (``probe.py``); returns what the training record keeps.
        A shape without a classification head has nothing to start."""
        return {}

    @abstractmethod
    def trainer(self, **common: Any) -> KitTrainer:
        """The Trainer, built with ``common`` (model, args, processing_class, kit_meta) and this shape's datasets,
        collator, metrics and Trainer class."""

    @abstractmethod
    def evaluate(self, trainer: KitTrainer) -> tuple[dict[str, float], dict[str, Any]]:
        """After training: the test metrics (the adapter's ``meta.metrics``) and what the training record adds."""


__all__ = ["RunArguments", "Strategy"]
