"""Gradient checkpointing (``gradient_checkpointing=True``) that trains adapters, on every backend.

What goes wrong without this, with transformers 4.57 and peft 0.21:

- A PEFT model: the Trainer turns checkpointing on in the base model with ``torch.utils.checkpoint``'s reentrant
  variant, whose output requires no gradient when no input does. The embeddings are frozen, so no checkpointed
  block's input does: the adapters inside get no gradient and the backward pass fails ("element 0 of tensors does
  not require grad"). PEFT works around it only for a model whose checkpointing was on before ``get_peft_model``.
- A multi-task adapter: a checkpointed block runs its forward a second time during the backward pass, after the
  call that set the batch's ``task_ids`` (:func:`~hf_adapter_kit.routing.task_context`) has returned;
  the recomputed layers would find no task ids.
- :class:`~hf_adapter_kit.multitask.MultiTaskModel` had no ``gradient_checkpointing_enable``.

What the kit does (:func:`enable`): checkpointing is turned on in the pretrained model inside (a PEFT model's base,
a multi-task model's encoder) with the non-reentrant variant, which ``adapters`` also requires, unless asked
otherwise (``gradient_checkpointing_kwargs={"use_reentrant": True}``: then the input embeddings' outputs require
gradients, PEFT's own workaround). ``adapters`` models keep their own ``gradient_checkpointing_enable``, which
restores the library's forward context when it recomputes. Every checkpointed block then recomputes in the task
context of its first run. ``KitTrainer`` calls :func:`enable` when training begins, after the Trainer's own call.
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from ..routing import keep_task_context


def pretrained_inside(model: nn.Module) -> PreTrainedModel | None:
    """The transformers model that holds the checkpointed blocks: the model itself, a PEFT model's base model, or a
    multi-task model's encoder (itself possibly a PEFT model)."""
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    if hasattr(model, "encoder") and not isinstance(model, PreTrainedModel):  # MultiTaskModel
        return pretrained_inside(model.encoder)
    return model if isinstance(model, PreTrainedModel) else None


def enable(model: nn.Module, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
    """Turn on gradient checkpointing in ``model`` so that its adapters train, whatever the backend and tasks."""
    inner = pretrained_inside(model)
    if inner is None or not inner.supports_gradient_checkpointing:
        return  # the Trainer's own call has said what it says for such a model
    kwargs = dict(gradient_checkpointing_kwargs or {})
    if hasattr(inner, "adapters_config"):  # adapters' override: non-reentrant, its forward context kept
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs or None)
    else:
        kwargs.setdefault("use_reentrant", False)
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if kwargs["use_reentrant"]:
            inner.enable_input_require_grads()
    for module in inner.modules():
        func = getattr(module, "_gradient_checkpointing_func", None)
        if func is not None and not getattr(func, "keeps_task_context", False):
            module._gradient_checkpointing_func = _keeping_task_context(func)


def _keeping_task_context(checkpoint_func):
    @functools.wraps(checkpoint_func)
    def checkpointed(function, *args, **kwargs):
        return checkpoint_func(keep_task_context(function), *args, **kwargs)

    checkpointed.keeps_task_context = True
    return checkpointed
