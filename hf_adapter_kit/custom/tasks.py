"""Add a task to a trained Hyperformer++ adapter and learn only its embedding (both backends)."""

from __future__ import annotations

import peft
from torch import nn

from ..errors import invalid


def add_task(model: nn.Module, task: str, adapter_name: str = "default", freeze_others: bool = True) -> nn.Parameter:
    """Append ``task`` to the adapter's tasks; returns its new embedding.

    With ``freeze_others`` every other parameter (the rest of the hypernetwork, the base model, the heads) stops
    requiring gradients, so training touches nothing the existing tasks depend on.
    """
    if isinstance(model, peft.PeftModel):
        embedding = model.base_model.add_task(task, adapter_name)
    elif hasattr(model, "adapters_config"):
        from .adapters_glue import add_task as add_adapters_task

        embedding = add_adapters_task(model, adapter_name, task)
    else:
        raise invalid("model", type(model).__name__, "a PeftModel or an adapters model with a Hyperformer adapter.")
    if freeze_others:
        for param in model.parameters():
            param.requires_grad_(param is embedding)
    return embedding
