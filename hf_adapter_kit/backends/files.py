"""Every file an adapter folder holds, by name, and the checks that read its weights (safetensors only, unless asked).

A folder is what the backend's library writes, plus the kit's own files:

| file | written by |
|---|---|
| ``adapter_config.json`` | PEFT and ``adapters``: the adapter's config |
| ``adapter_model.safetensors`` | PEFT: the adapter's weights (and a head it trains, as ``modules_to_save``) |
| ``adapter.safetensors`` | ``adapters``: the adapter's weights |
| ``head_config.json``, ``model_head.safetensors`` | ``adapters``: the model's own (static) head |
| ``model.safetensors``, ``config.json`` | transformers, full fine-tuning: the whole model |
| ``head.safetensors`` | the kit, head-only baseline: the classification head |
| ``heads.safetensors`` | the kit, multi-task model: one head per task |
| ``hf_adapter_kit.json`` | the kit: method, backend, base model, labels, metrics (``folders/meta.py``) |
| ``README.md`` | the kit: the model card (``folders/cards.py``) |
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..errors import AdapterKitError


ADAPTER_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
ADAPTERS_WEIGHTS = "adapter.safetensors"
ADAPTERS_HEAD_WEIGHTS = "model_head.safetensors"
FULL_WEIGHTS = "model.safetensors"
HEAD_WEIGHTS = "head.safetensors"
TASK_HEADS_WEIGHTS = "heads.safetensors"
KIT_FILE = "hf_adapter_kit.json"
CARD_FILE = "README.md"
# A whole model the kit saved (full fine-tuning) says so in its config.json, which every loader reads anyway: no
# request or file more is needed to tell it from any other model (serving/transformers_pipeline.py).
WHOLE_MODEL_MARKER = "hf_adapter_kit_whole_model"


# The pickled file each library writes when safetensors is off, by the safetensors name the kit expects.
PICKLED_NAMES = {
    ADAPTERS_WEIGHTS: "pytorch_adapter.bin",
    ADAPTERS_HEAD_WEIGHTS: "pytorch_model_head.bin",
    PEFT_WEIGHTS: "adapter_model.bin",
    FULL_WEIGHTS: "pytorch_model.bin",
    HEAD_WEIGHTS: "head.bin",
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
