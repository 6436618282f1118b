"""The backend interface and the weight-file helpers the backends share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import PreTrainedModel

from ..errors import AdapterKitError, invalid


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

    def load(
        self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool = False
    ) -> torch.nn.Module:
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

    def merge(self, model: torch.nn.Module, adapter_name: str) -> PreTrainedModel:
        """The adapter folded into the base model's weights (LoRA only; ``saving.merge_adapter`` checks first)."""
        raise invalid("merge", True, f"False: the {self.name} backend has no adapter weights to merge.")


# The pickled file each library writes when safetensors is off, by the safetensors name the kit expects.
PICKLED_NAMES = {
    "adapter.safetensors": "pytorch_adapter.bin",
    "model_head.safetensors": "pytorch_model_head.bin",
    "adapter_model.safetensors": "adapter_model.bin",
    "model.safetensors": "pytorch_model.bin",
    "head.safetensors": "head.bin",
}


def weight_file(directory: Path, name: str, allow_pickle: bool = False) -> Path:
    """``directory/name`` (checked to be a whole safetensors file), or with ``allow_pickle`` its pickled twin.

    Pickles can run code when loaded; they are only read on request, and then with ``torch.load(weights_only=True)``.
    """
    path = Path(directory) / name
    if path.is_file():
        check_safetensors(path)
        return path
    pickled = Path(directory) / PICKLED_NAMES[name]
    if allow_pickle and pickled.is_file():
        return pickled
    pickles = sorted(p.name for p in Path(directory).glob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"})
    hint = (
        f" It holds pickled weights {pickles}, which can execute code when loaded; pass allow_pickle=True to load "
        "them anyway (with torch.load(weights_only=True))."
        if pickles
        else ""
    )
    raise AdapterKitError(f"`{directory}` is not a saved adapter: expected the safetensors file {name!r}.{hint}")


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header parses and whose data is all there (a truncated copy is refused)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                handle.get_slice(key).get_shape()
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterKitError(f"{path} is not a valid safetensors file (truncated or corrupt?): {err}.") from err


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def check_fits(config: Any, model: PreTrainedModel) -> None:
    """A rank or bottleneck must fit in the model's width; checked before the model is touched.

    The kit's own methods attach to the architectures they are placed on (``methods/common/placement.py``), on both
    backends.
    """
    from ..methods.common import placement
    from ..registry import method_of_config

    spec = method_of_config(config)
    if spec is not None:
        placement.check_model_type(getattr(model.config, "model_type", None), spec.name)
    hidden = getattr(model.config, "hidden_size", None)
    if not hidden:
        return
    rank = getattr(config, "r", None)
    if isinstance(rank, int) and rank > hidden:
        raise AdapterKitError(f"`r`={rank} is larger than the model's hidden size {hidden}: use r <= {hidden}.")
    factor = getattr(config, "reduction_factor", None)
    if isinstance(factor, int | float) and hidden // factor < 1:
        raise AdapterKitError(
            f"`reduction_factor`={factor} leaves no bottleneck in a model of hidden size {hidden}: use <= {hidden}."
        )


def load_into(model: torch.nn.Module, *files: Path, rename=lambda key: key) -> None:
    """Copy tensors from safetensors files into the model's parameters/buffers of the same (renamed) names."""
    state = model.state_dict()
    for file in files:
        for key, tensor in read_weights(Path(file)).items():
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
