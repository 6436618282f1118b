"""The backend interface and the weight-file helpers the backends share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from ..errors import AdapterKitError


class Backend:
    """How one library attaches, saves, loads and removes an adapter on a sequence-classification model.

    ``attach`` and ``load`` return the model to use from then on (PEFT wraps it; ``adapters`` modifies it in place).
    Every method leaves only the adapter and the task head trainable (full fine-tuning: everything).
    """

    name: str = ""

    def attach(self, model: PreTrainedModel, config: Any, adapter_name: str) -> torch.nn.Module:
        raise NotImplementedError

    def save(self, model: torch.nn.Module, directory: Path, adapter_name: str) -> None:
        """Write the adapter, its config and the head as safetensors into an existing, empty ``directory``."""
        raise NotImplementedError

    def load(self, model: PreTrainedModel, directory: Path, adapter_name: str) -> torch.nn.Module:
        """Attach a saved adapter (and head) to a freshly loaded base model, active and in eval mode."""
        raise NotImplementedError

    def load_weights(self, model: torch.nn.Module, directory: Path, adapter_name: str) -> None:
        """Load a checkpoint written by ``save`` into a model that already has the adapter attached."""
        raise NotImplementedError

    def remove(self, model: torch.nn.Module, adapter_name: str) -> PreTrainedModel:
        """Deactivate and delete the adapter; return the plain transformers model."""
        raise NotImplementedError

    def base_model(self, model: torch.nn.Module) -> PreTrainedModel:
        """The transformers model underneath any wrapper."""
        return model


def weight_file(directory: Path, name: str) -> Path:
    """``directory/name`` if it exists; a folder holding only pickled weights is refused, never unpickled."""
    path = Path(directory) / name
    if path.is_file():
        return path
    pickles = sorted(p.name for p in Path(directory).glob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"})
    hint = f" It holds pickled weights {pickles}, which the kit does not load." if pickles else ""
    raise AdapterKitError(f"`{directory}` is not a saved adapter: expected the safetensors file {name!r}.{hint}")


def load_into(model: torch.nn.Module, *files: Path, rename=lambda key: key) -> None:
    """Copy tensors from safetensors files into the model's parameters/buffers of the same (renamed) names."""
    state = model.state_dict()
    for file in files:
        for key, tensor in load_file(str(file)).items():
            target = rename(key)
            if target not in state:
                raise AdapterKitError(
                    f"{file}: tensor {key!r} has no counterpart in the model (looked for {target!r})."
                )
            if state[target].shape != tensor.shape:
                raise AdapterKitError(
                    f"{file}: tensor {key!r} has shape {tuple(tensor.shape)}, the model expects "
                    f"{tuple(state[target].shape)}."
                )
            with torch.no_grad():
                state[target].copy_(tensor)


def set_trainable(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Make the parameters under the given top-level module names trainable (the task head)."""
    for name, param in model.named_parameters():
        if name.split(".", 1)[0] in prefixes:
            param.requires_grad_(True)
