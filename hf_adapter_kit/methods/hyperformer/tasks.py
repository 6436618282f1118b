"""Add a task to a trained Hyperformer++ adapter and learn only its embedding (both backends)."""

from __future__ import annotations

import peft
from torch import nn

from ...errors import invalid
from ..common import checks
from .adapters_backend import HyperformerConfig


def add_task(model: nn.Module, task: str, adapter_name: str = "default", freeze_others: bool = True) -> nn.Parameter:
    """Append ``task`` to the adapter's tasks; returns its new embedding. The new task is served at once.

    With ``freeze_others`` every other parameter (the rest of the hypernetwork, the base model, the heads) stops
    requiring gradients, so training touches nothing the existing tasks depend on.
    """
    if isinstance(model, peft.PeftModel):
        if getattr(model.peft_config.get(adapter_name), "peft_type", None) != "HF_ADAPTER_KIT_HYPERFORMER":
            raise invalid("adapter_name", adapter_name, "the name of a Hyperformer adapter on this model.")
        embedding = model.base_model.add_task(task, adapter_name)
    elif hasattr(model, "adapters_config"):
        embedding = _add_adapters_task(model, adapter_name, task)
    else:
        raise invalid("model", type(model).__name__, "a PeftModel or an adapters model with a Hyperformer adapter.")
    if freeze_others:
        for param in model.parameters():
            param.requires_grad_(param is embedding)
    return embedding


def _add_adapters_task(model, adapter_name: str, task: str) -> nn.Parameter:
    # adapters' configs are frozen, so the adapter's entry in `model.adapters_config` is pointed at a copy with the
    # longer task list (the store maps adapter name -> config key -> config); `save_adapter` then writes it.
    config = model.adapters_config.match(adapter_name, HyperformerConfig)
    if config is None:
        raise invalid("adapter_name", adapter_name, "the name of a Hyperformer adapter on this model.")
    tasks = checks.tasks([*config.tasks, task], argument="task")
    key = f"{adapter_name}-tasks-{len(tasks)}"
    model.adapters_config.config_map[key] = config.replace(tasks=list(tasks))
    model.adapters_config.adapters[adapter_name] = key
    return model.base_model.shared_parameters[adapter_name].add_task(task)
