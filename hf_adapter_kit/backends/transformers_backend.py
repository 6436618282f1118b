"""The baselines, on plain transformers: a ``whole_model`` method (``full``) trains and saves the whole model, the
others (``head``) only the task head."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from transformers import PreTrainedModel
from transformers.utils import CONFIG_NAME

from ..errors import AdapterKitError
from ..modeling import head_prefixes
from ..registry import get_method
from .base import Backend, set_trainable
from .files import FULL_WEIGHTS, HEAD_WEIGHTS, PICKLED_NAMES, WHOLE_MODEL_MARKER, load_into, weight_file


class TransformersBackend(Backend):
    name = "transformers"

    def attach(self, model: PreTrainedModel, config: Any, adapter_name: str, kind: str = "sequence"):
        full = get_method(config.method).whole_model  # the baselines' configs name their method
        model.requires_grad_(full)
        set_trainable(model, head_prefixes(model))
        model.hf_adapter_kit_full = full
        return model

    def save(self, model: PreTrainedModel, directory: Path, adapter_name: str) -> None:
        if getattr(model, "hf_adapter_kit_full", False):
            model.save_pretrained(str(directory), safe_serialization=True)
            config = Path(directory) / CONFIG_NAME
            config.write_text(json.dumps({**json.loads(config.read_text()), WHOLE_MODEL_MARKER: True}, indent=2))
            return
        prefixes = head_prefixes(model)
        head = {k: v.contiguous() for k, v in model.state_dict().items() if k.split(".", 1)[0] in prefixes}
        save_file(head, str(Path(directory) / HEAD_WEIGHTS), metadata={"format": "pt"})

    def load(
        self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool = False
    ) -> PreTrainedModel:
        self._load(model, directory, allow_pickle)
        return model.eval()

    def load_weights(self, model: PreTrainedModel, directory: Path, adapter_name: str) -> None:
        self._load(model, directory, allow_pickle=False)

    def _load(self, model: PreTrainedModel, directory: Path, allow_pickle: bool) -> None:
        full = any((Path(directory) / name).is_file() for name in (FULL_WEIGHTS, PICKLED_NAMES[FULL_WEIGHTS]))
        model.hf_adapter_kit_full = full
        load_into(model, weight_file(directory, FULL_WEIGHTS if full else HEAD_WEIGHTS, allow_pickle))

    def remove(self, model: PreTrainedModel, adapter_name: str) -> PreTrainedModel:
        if getattr(model, "hf_adapter_kit_full", False):
            raise AdapterKitError("A fully fine-tuned model has no adapter to remove: reload the base model instead.")
        return model
