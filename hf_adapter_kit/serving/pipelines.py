"""``transformers`` pipelines over a multi-task model: one loaded model serves every task, routed by ``task_ids``.

- Text classification: :class:`MultiTaskTextClassificationPipeline` takes the task when it is built
  (``task_ids="sentiment"``), per call (``clf(texts, task_ids="sentiment")``) or per input
  (``clf(texts, task_ids=["sentiment", "topic"])``). Inputs of several tasks run in the same batch
  (``batch_size=``); each answer carries its own task's labels. Scores follow ``TextClassificationPipeline``
  (``top_k``, ``function_to_apply``), computed over the task's own labels.
- Token classification: transformers' ``TokenClassificationPipeline`` (its ``aggregation_strategy`` and all) over
  :meth:`MultiTaskModel.task_model`, one task per pipeline.
- Generation with a multi-task generative adapter (``tasks=[...]``): :class:`TaskTextGenerationPipeline`
  (``task_type="causal-lm"``) and :class:`TaskText2TextGenerationPipeline` (``task_type="seq2seq-lm"``),
  transformers' ``TextGenerationPipeline`` and ``Text2TextGenerationPipeline`` whose generation runs in the kit's task
  context; the task is picked when the pipeline is built, per call or per input.

Pipelines built on the same model share it: nothing is copied or reloaded, and a task added to a Hyperformer++
model (:meth:`MultiTaskModel.add_task`) is served by the text pipelines already built.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from transformers import (
    Text2TextGenerationPipeline,
    TextClassificationPipeline,
    TextGenerationPipeline,
    TokenClassificationPipeline,
)

from ..errors import invalid
from ..kinds import get_kind
from ..multitask import MultiTaskModel, TaskModel
from ..routing import task_context


TOKEN_PIPELINES = get_kind("token").pipelines  # transformers' task names for a token-classification pipeline


@dataclass(frozen=True)
class _Routed:
    """One input with its own task (per-input ``task_ids``)."""

    inputs: Any
    task: Any


def _one_task_of_kind(model: MultiTaskModel, kind: str) -> str | None:
    tasks = [t for t in model.tasks if model.specs[t].kind == kind]
    return tasks[0] if len(tasks) == 1 else None


class MultiTaskTextClassificationPipeline(TextClassificationPipeline):
    """Text classification over a :class:`MultiTaskModel`'s sequence tasks, routed per call or per input."""

    def __init__(self, *args, task_ids: Any = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_ids = task_ids if task_ids is not None else _one_task_of_kind(self.model, "sequence")
        if self.task_ids is not None:
            self.model.task_index(self.task_ids, "sequence")
        self._views: dict[str, TaskModel] = {}

    def check_model_type(self, supported_models) -> None:
        if not isinstance(self.model, MultiTaskModel):
            raise invalid("model", type(self.model).__name__, "a MultiTaskModel (hf_adapter_kit multi-task adapter).")

    def _sanitize_parameters(self, task_ids=None, **kwargs):
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if task_ids is not None:
            preprocess["task_ids"] = task_ids
        return preprocess, forward, postprocess

    def __call__(self, inputs, **kwargs):
        task_ids = kwargs.get("task_ids")
        if isinstance(task_ids, torch.Tensor):
            task_ids = task_ids.tolist() if task_ids.dim() == 1 else task_ids
        if isinstance(task_ids, list | tuple):  # one task per input
            kwargs.pop("task_ids")
            items = [inputs] if isinstance(inputs, str | dict) else list(inputs)
            if len(task_ids) != len(items):
                raise invalid("task_ids", task_ids, f"one task per input: there are {len(items)} inputs.")
            for task in task_ids:  # every one checked before anything runs
                self.model.task_index(task, "sequence")
            return super().__call__([_Routed(x, t) for x, t in zip(items, task_ids, strict=True)], **kwargs)
        self.model.task_index(task_ids if task_ids is not None else self.task_ids, "sequence")
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs, task_ids=None, **tokenizer_kwargs):
        if isinstance(inputs, _Routed):
            inputs, task_ids = inputs.inputs, inputs.task
        index = self.model.task_index(task_ids if task_ids is not None else self.task_ids, "sequence")
        model_inputs = super().preprocess(inputs, **tokenizer_kwargs)
        model_inputs["task_ids"] = torch.tensor([index])
        return model_inputs

    def _forward(self, model_inputs):
        task_ids = model_inputs.pop("task_ids")
        out = self.model(**model_inputs, task_ids=task_ids)
        # one row per input, as the pipeline's batching expects; tasks with fewer labels are padded
        width = max(logits.shape[-1] for logits in out.logits.values())
        padded = next(iter(out.logits.values())).new_full((task_ids.shape[0], width), float("nan"))
        for name, rows in out.rows.items():
            padded[rows, : out.logits[name].shape[-1]] = out.logits[name]
        return {"logits": padded, "task_ids": task_ids}

    def postprocess(self, model_outputs, function_to_apply=None, top_k=1, _legacy=True):
        task = self.model.tasks[int(model_outputs["task_ids"][0])]
        view = self._views.get(task) or self._views.setdefault(task, self.model.task_model(task))
        logits = model_outputs["logits"][:, : view.config.num_labels]
        # transformers' own scoring (softmax/sigmoid, top_k, legacy shape), run against the task's labels
        own = SimpleNamespace(model=view, framework=self.framework)
        return TextClassificationPipeline.postprocess(own, {"logits": logits}, function_to_apply, top_k, _legacy)


class TaskTokenClassificationPipeline(TokenClassificationPipeline):
    """transformers' token classification over one task of a multi-task model (:class:`TaskModel`)."""

    def check_model_type(self, supported_models) -> None:
        if not isinstance(self.model, TaskModel) or self.model.kind != "token":
            raise invalid("model", type(self.model).__name__, "a token task of a MultiTaskModel (task_model(name)).")


class TaskRoutedGeneration:
    """A transformers generation pipeline over a model with a multi-task adapter (a mixin before the pipeline class):
    ``task_ids`` (a task name or its index) when the pipeline is built or per call, or per input (a list as long as
    the inputs); each generation runs in :func:`task_context` for its task, which the adapter's layers read in every
    forward pass of ``generate`` (an encoder-decoder's encoder pass, every decoding step, the KV cache as usual).
    Inputs of several tasks are generated one task at a time, in batches of one task, and returned in their order."""

    def __init__(self, *args, tasks: list[str], task_ids: Any = None, **kwargs):
        self.tasks = list(tasks)
        self.task_ids = None if task_ids is None else self._task(task_ids)
        super().__init__(*args, **kwargs)

    def _task(self, task_ids: Any) -> int:
        if isinstance(task_ids, str) and task_ids in self.tasks:
            return self.tasks.index(task_ids)
        if isinstance(task_ids, int) and not isinstance(task_ids, bool) and 0 <= task_ids < len(self.tasks):
            return task_ids
        raise invalid(
            "task_ids",
            task_ids,
            f"a name or an index of {self.tasks}, for the call, or a list of them with one per input.",
        )

    def __call__(self, text_inputs, **kwargs):
        task_ids = kwargs.get("task_ids")
        if isinstance(task_ids, list | tuple):
            return self._per_task(text_inputs, task_ids, kwargs)
        if task_ids is None and self.task_ids is None and len(self.tasks) > 1:
            raise invalid("task_ids", None, f"a task for this call or for the pipeline: one of {self.tasks}.")
        return super().__call__(text_inputs, **kwargs)

    def _per_task(self, text_inputs, task_ids, kwargs) -> list:
        """Inputs with a task each: one call of the pipeline per task, the results put back in the inputs' order."""
        several = isinstance(text_inputs, list | tuple) and all(isinstance(x, str | list | tuple) for x in text_inputs)
        if not several or len(task_ids) != len(text_inputs):
            count = f"the {len(text_inputs)} inputs" if several else "a list of inputs (strings or chats)"
            raise invalid("task_ids", task_ids, f"one task per input: a list as long as {count}.")
        chosen = [self._task(task) for task in task_ids]  # every task checked before anything is generated
        results: list = [None] * len(chosen)
        for task in dict.fromkeys(chosen):
            rows = [i for i, t in enumerate(chosen) if t == task]
            outputs = super().__call__([text_inputs[i] for i in rows], **{**kwargs, "task_ids": task})
            for row, output in zip(rows, outputs, strict=True):
                results[row] = output
        return results

    def _sanitize_parameters(self, task_ids=None, **kwargs):
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if task_ids is not None:
            forward["task_ids"] = self._task(task_ids)
        return preprocess, forward, postprocess

    def _forward(self, model_inputs, task_ids=None, **generate_kwargs):
        with task_context(task_ids if task_ids is not None else self.task_ids):
            return super()._forward(model_inputs, **generate_kwargs)


class TaskTextGenerationPipeline(TaskRoutedGeneration, TextGenerationPipeline):
    """``TextGenerationPipeline`` over a causal LM with a multi-task adapter (``task_type="causal-lm"``): chat
    messages or text in, routed by ``task_ids`` (:class:`TaskRoutedGeneration`)."""


class TaskText2TextGenerationPipeline(TaskRoutedGeneration, Text2TextGenerationPipeline):
    """``Text2TextGenerationPipeline`` over an encoder-decoder with a multi-task adapter (``task_type="seq2seq-lm"``):
    the encoder's input text in (with its task prefix, as the adapter was trained), routed by ``task_ids``
    (:class:`TaskRoutedGeneration`)."""


# transformers' pipeline name -> the task-routed pipeline a multi-task generative adapter is served by
ROUTED_GENERATION = {
    "text-generation": TaskTextGenerationPipeline,
    "text2text-generation": TaskText2TextGenerationPipeline,
}


def multitask_pipeline(task: str, model: MultiTaskModel, tokenizer, task_ids: Any, make, **kwargs):
    """The pipeline for ``task`` over ``model``; ``make`` is transformers' ``pipeline`` function."""
    if task in TOKEN_PIPELINES:
        if isinstance(task_ids, list | tuple | torch.Tensor):
            raise invalid("task_ids", task_ids, "one token task for the whole pipeline (a name or an index).")
        chosen = task_ids if task_ids is not None else _one_task_of_kind(model, "token")
        view = model.task_model(model.task_index(chosen, "token"))
        return make(task, model=view, tokenizer=tokenizer, pipeline_class=TaskTokenClassificationPipeline, **kwargs)
    return make(
        task,
        model=model,
        tokenizer=tokenizer,
        pipeline_class=MultiTaskTextClassificationPipeline,
        task_ids=task_ids,
        **kwargs,
    )


__all__ = [
    "ROUTED_GENERATION",
    "MultiTaskTextClassificationPipeline",
    "TaskRoutedGeneration",
    "TaskText2TextGenerationPipeline",
    "TaskTextGenerationPipeline",
    "TaskTokenClassificationPipeline",
    "multitask_pipeline",
]
