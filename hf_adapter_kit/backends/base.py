"""The backend interface: how one library puts an adapter on a model, saves it, loads it and takes it off again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from ..errors import AdapterKitError, invalid
from ..methods.common import checks, placement
from ..registry import method_of_config


class Backend:
    """How one library attaches, saves, loads and removes an adapter.

    ``attach`` and ``load`` return the model to use from then on (PEFT wraps it; ``adapters`` modifies it in place).
    Every method leaves only the adapter and the task head trainable (full fine-tuning: everything). ``kind`` is the
    model's task kind (``kinds.py``), which PEFT's configs record as their ``task_type``.

    The ``*_encoder`` variants put a multi-task adapter on a bare encoder (``AutoModel``) whose task heads are the
    kit's own (``multitask/``): the library sees no head at all.
    """

    name: str = ""

    def attach(
        self, model: PreTrainedModel, config: Any, adapter_name: str, kind: str = "sequence"
    ) -> torch.nn.Module:
        raise NotImplementedError

    def save(self, model: torch.nn.Module, directory: Path, adapter_name: str) -> None:
        """Write the adapter, its config and the head as safetensors into an existing, empty ``directory``."""
        raise NotImplementedError

    def load(
        self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool = False
    ) -> torch.nn.Module:
        """Attach a saved adapter (and head) to a freshly loaded base model, active and in eval mode."""
        raise NotImplementedError

    def load_weights(self, model: torch.nn.Module, directory: Path, adapter_name: str) -> None:
        """Load a checkpoint written by ``save`` into a model that already has the adapter attached."""
        raise NotImplementedError

    def check_config(self, config: Any, model_config: Any) -> None:
        """Refuse, before the model loads, a config this library cannot put on a model of ``model_config``'s family
        (the library would say so only once the model is loaded, measured and touched)."""

    def attach_encoder(self, encoder: PreTrainedModel, config: Any, adapter_name: str) -> torch.nn.Module:
        raise invalid("backend", self.name, "'adapters' or 'peft' for a multi-task adapter.")

    def load_encoder(self, encoder: PreTrainedModel, directory: Path, adapter_name: str) -> torch.nn.Module:
        raise invalid("backend", self.name, "'adapters' or 'peft' for a multi-task adapter.")

    def remove(self, model: torch.nn.Module, adapter_name: str) -> PreTrainedModel:
        """Deactivate and delete the adapter; return the plain transformers model."""
        raise NotImplementedError

    def library_adapter_name(self, adapter_name: str) -> str:
        """The name the library itself knows the adapter by (the kit's name, or PEFT's ``default``)."""
        return adapter_name

    def base_model(self, model: torch.nn.Module) -> PreTrainedModel:
        """The transformers model underneath any wrapper."""
        return model

    def merge(self, model: torch.nn.Module, adapter_name: str) -> PreTrainedModel:
        """The adapter folded into the base model's weights (a mergeable method; ``folders`` checks first)."""
        raise invalid("merge", True, f"False: the {self.name} backend has no adapter weights to merge.")


def check_fits(config: Any, model: PreTrainedModel) -> None:
    """A rank or bottleneck must fit in the model's width, and a kit method on PEFT must find where it goes in the
    model (``methods/common/placement.py``: the family's row, the model's module tree, or the places the config
    names); checked before the model is touched. On ``adapters`` the library places the layers: the adapters backend
    checks that it supports the family."""
    spec = method_of_config(config)
    if spec is not None and spec.peft is not None and isinstance(config, spec.peft.config_cls):
        placement.resolve(model, config, spec.peft.tuner_cls.tuner_layer_cls.reads_block_input)
    hidden = getattr(model.config, "hidden_size", None)
    if not hidden:
        return
    rank = getattr(config, "r", None)
    if isinstance(rank, int) and rank > hidden:
        raise AdapterKitError(f"`r`={rank} is larger than the model's hidden size {hidden}: use r <= {hidden}.")
    factor = getattr(config, "reduction_factor", None)
    if factor is not None:
        checks.bottleneck_size(factor, hidden)


def set_trainable(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Make the parameters under the given top-level module names trainable (the task head)."""
    for name, param in model.named_parameters():
        if name.split(".", 1)[0] in prefixes:
            param.requires_grad_(True)
