"""Instruction tuning (SFT) of a decoder LLM with any adapter method: ``train(..., task_type="causal-lm")``.

The instruction data (``data/instructions.py``) are tokenized through the model's chat template with the loss on the
completion only (``chat.py``); the zero-shot base model is measured on the test split (the baseline) before the adapter
is attached; the adapter trains with the same ``KitTrainer`` (the best checkpoint picked by validation loss, the
``causal-lm`` kind's best metric); the trained model is measured the same way (``llm/generation.py``: accuracy of
greedy generations, perplexity of the completions); the adapter is saved with ``kind="causal-lm"``, which
``from_pretrained`` rebuilds with ``AutoModelForCausalLM``.

With ``tasks=[...]`` and a multi-task method (Hyperformer++, parallel), one adapter learns several instruction tasks:
every example carries its ``task_ids``, batches come one task at a time with temperature sampling
(:class:`MultiTaskSFTTrainer`), and each task is measured on its own test split, the adapter routed to it through
:func:`~hf_adapter_kit.routing.task_context`.

Names follow the ecosystem: ``task_type="causal-lm"`` is PEFT's ``TaskType.CAUSAL_LM`` (which the PEFT configs get
through ``kinds.py``), the data are TRL's prompt/completion and messages formats.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from ...backends import get_backend
from ...data.instructions import load_instructions
from ...errors import invalid
from ...llm.generation import evaluate_generation
from ...modeling import load_base_model
from ...registry import names_where
from ...routing import task_context
from ..best_metric import pick_best_metric
from ..chat import chat_tokenizer, completion_collator, encode_splits
from ..sampling import TemperatureSampling
from ..trainer import KitTrainer
from .base import Strategy
from .tasks import add_task_ids, check_multitask_arguments


class MultiTaskSFTTrainer(TemperatureSampling, KitTrainer):
    """Instruction tuning of a multi-task adapter: each batch from one task, drawn by temperature (as multi-task
    classification), and each example's ``task_ids`` handed to the model, whose adapter routes by them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, model_columns=("task_ids",), **kwargs)


class InstructionTuning(Strategy):
    """Instruction tuning; its hooks (:meth:`load_task`, :meth:`make_tokenizer`, :meth:`encode_task`,
    :meth:`measure_options`) are what text-to-text (``text2text.py``) changes of it."""

    task_type = "causal-lm"  # also the kind (kinds.py) of the model it trains
    several_tasks = None  # one task, or several routed by their task_ids
    loss_kwargs = True  # the model's forward takes the Trainer's loss arguments (num_items_in_batch)

    def __init__(self, args):
        super().__init__(args)
        self.measures: dict[str, dict[str, Any]] = {}  # per task: what evaluate_generation measures on its test split
        self.zero_shot: dict[str, Any] = {}  # per task: the base model's results, before the adapter

    def check(self, spec) -> None:
        if not spec.generative:
            allowed = names_where(lambda s: s.generative)
            raise invalid("method", self.args.method.method, f"with task_type={self.task_type!r} one of {allowed}.")
        if self.args.data.tasks is not None:  # several tasks: a multi-task adapter
            self.names = check_multitask_arguments(spec, self.args.data, self.args.method)

    # -- what text-to-text changes --------------------------------------------------------------------------------
    def load_task(self, name: str, **load_kwargs: Any):
        return load_instructions(name, **load_kwargs)

    def make_tokenizer(self):
        return chat_tokenizer(self.args.model.model_name_or_path)

    def encode_task(self, data) -> datasets.DatasetDict:
        return encode_splits(data, self.tokenizer, self.args.model.max_length)

    def measure_options(self) -> dict[str, Any]:
        """What :func:`evaluate_generation` takes beyond the task's test split."""
        return {}

    # -- the steps -------------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        pick_best_metric(self.args.training, self.task_type)  # the kind is this strategy's own: checked before loading
        data_args = self.args.data
        load_kwargs = data_args.load_kwargs()
        self.tasks = [self.load_task(name, **load_kwargs) for name in self.names or [data_args.task]]

    def encode(self):
        self.tokenizer = self.make_tokenizer()
        self.encoded = [self.encode_task(data) for data in self.tasks]
        if self.names:
            add_task_ids(self.encoded)
        return self.tokenizer

    def load_model(self):
        """The base model, measured zero-shot on each task's test split before any adapter (the baseline)."""
        model_args = self.args.model
        base = load_base_model(
            model_args.model_name_or_path,
            [],
            kind=self.task_type,
            dtype=model_args.dtype,
            trust_remote_code=model_args.trust_remote_code,
        )
        self.measures = {
            data.name: dict(
                tokenizer=self.tokenizer,
                prompts=list(data.splits["test"]["prompt"]),
                references=list(data.splits["test"]["completion"]),
                encoded=splits["test"],
                batch_size=self.args.training.per_device_eval_batch_size,
                max_new_tokens=model_args.max_new_tokens,
                **self.measure_options(),
            )
            for data, splits in zip(self.tasks, self.encoded, strict=True)
        }
        self.zero_shot = {name: evaluate_generation(base, **m) for name, m in self.measures.items()}
        return base

    def meta_fields(self) -> dict[str, Any]:
        first = self.tasks[0]
        if self.names:
            tasks = [{"name": d.name, "label_names": list(d.label_names)} for d in self.tasks]
            return dict(data=first, task=", ".join(self.names), name="_".join(self.names), label_names=[],
                        kind=self.task_type, tasks=tasks)  # fmt: skip
        return dict(data=first, task=first.name, name=first.name, label_names=list(first.label_names),
                    kind=self.task_type)  # fmt: skip

    def attach(self, base, config, backend: str, adapter_name: str):
        return get_backend(backend).attach(base, config, adapter_name, kind=self.task_type)

    def trainer(self, **common: Any) -> KitTrainer:
        settings = dict(
            **common,
            train_dataset=datasets.concatenate_datasets([splits["train"] for splits in self.encoded]),
            eval_dataset=datasets.concatenate_datasets([splits["validation"] for splits in self.encoded]),
            data_collator=completion_collator(self.tokenizer),
        )
        if self.names:
            sizes = [splits["train"].num_rows for splits in self.encoded]
            trainer = MultiTaskSFTTrainer(**settings, task_sizes=sizes, temperature=self.args.data.temperature)
        else:
            trainer = KitTrainer(**settings)
        if not self.loss_kwargs:  # else the Trainer hands `num_items_in_batch` to a forward that takes **kwargs
            trainer.model_accepts_loss_kwargs = False
        return trainer

    def evaluate(self, trainer: KitTrainer) -> tuple[dict[str, float], dict[str, Any]]:
        names, first, zero_shot = self.names, self.tasks[0], self.zero_shot
        trained_model = trainer.trained_model().eval()
        trained = {}
        for name, measure in self.measures.items():
            with task_context(name if names else None):  # the adapter's layers read the task of every example
                trained[name] = evaluate_generation(trained_model, **measure)
        per_task = {
            name: {
                "accuracy": trained[name].accuracy,
                "perplexity": trained[name].perplexity,
                "zero_shot_accuracy": zero_shot[name].accuracy,
                "zero_shot_perplexity": zero_shot[name].perplexity,
            }
            for name in self.measures
        }
        # several tasks: each metric's mean over the tasks; every task's own in the training record
        metrics = {key: float(np.mean([m[key] for m in per_task.values()])) for key in per_task[first.name]}
        record = dict(
            task_description="; ".join(d.description for d in self.tasks if d.description),
            test_examples=sum(len(m["prompts"]) for m in self.measures.values()),
            max_new_tokens=max(r.max_new_tokens for r in trained.values()),
            generation_samples=trained[first.name].samples(3),
            zero_shot_samples=zero_shot[first.name].samples(3),
        )
        if names:
            record["task_metrics"] = per_task
            record["temperature"] = self.args.data.temperature
            record["train_examples"] = {n: s["train"].num_rows for n, s in zip(names, self.encoded, strict=True)}
        return metrics, record


__all__ = ["InstructionTuning", "MultiTaskSFTTrainer"]
