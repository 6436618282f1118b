"""Hugging Face PEFT: the model is wrapped in a ``PeftModel``.

Saved folders are what PEFT writes with ``save_pretrained`` (``adapter_config.json``, ``adapter_model.safetensors``
with the classification head as a ``modules_to_save`` entry), so plain ``PeftModel.from_pretrained`` loads them.
PEFT writes a non-default adapter into a sub-folder named after it; the kit keeps PEFT's ``default`` name so the
folder is flat, and records the task name in its own metadata instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import peft
from safetensors.torch import load_file
from transformers import PreTrainedModel

from ..modeling import head_prefixes
from .base import Backend, check_fits, weight_file


WEIGHTS = "adapter_model.safetensors"
PEFT_ADAPTER_NAME = "default"


class PeftBackend(Backend):
    name = "peft"

    def attach(self, model: PreTrainedModel, config: Any, adapter_name: str) -> peft.PeftModel:
        check_fits(config, model)
        if getattr(config, "task_type", None) == peft.TaskType.SEQ_CLS and not config.modules_to_save:
            # PEFT's SEQ_CLS default only knows "classifier" and "score"; name the model's actual head.
            config.modules_to_save = head_prefixes(model)
        return _dedupe_modules_to_save(peft.get_peft_model(model, config, adapter_name=PEFT_ADAPTER_NAME))

    def save(self, model: peft.PeftModel, directory: Path, adapter_name: str) -> None:
        # The kit never resizes a vocabulary, so PEFT's "auto" check whether it did is skipped: for a base model named by
        # Hub id (the embedded ones) it asks the Hub for its config.json, retrying for ~40 s when offline (PEFT 0.21).
        model.save_pretrained(str(directory), safe_serialization=True, save_embedding_layers=False)

    def load(
        self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool = False
    ) -> peft.PeftModel:
        # PEFT reads adapter_model.safetensors when present, else the pickle with torch.load(weights_only=True).
        weight_file(directory, WEIGHTS, allow_pickle)
        loaded = peft.PeftModel.from_pretrained(model, str(directory), adapter_name=PEFT_ADAPTER_NAME)
        return _dedupe_modules_to_save(loaded).eval()

    def load_weights(self, model: peft.PeftModel, directory: Path, adapter_name: str) -> None:
        state = load_file(str(weight_file(directory, WEIGHTS)))
        result = peft.set_peft_model_state_dict(model, state, adapter_name=PEFT_ADAPTER_NAME)
        missing = [k for k in result.missing_keys if PEFT_ADAPTER_NAME in k]
        if missing:
            from ..errors import AdapterKitError

            raise AdapterKitError(f"{directory}: the checkpoint lacks adapter tensors {missing[:5]}.")

    def remove(self, model: peft.PeftModel, adapter_name: str) -> PreTrainedModel:
        return model.unload()

    def base_model(self, model: peft.PeftModel) -> PreTrainedModel:
        return model.get_base_model()

    def merge(self, model: peft.PeftModel, adapter_name: str) -> PreTrainedModel:
        """PEFT's ``merge_and_unload``: the base model, its weights updated, the LoRA layers gone."""
        return model.merge_and_unload()


def _dedupe_modules_to_save(model: peft.PeftModel) -> peft.PeftModel:
    """PEFT 0.21 appends its default head names to ``modules_to_save`` on every attach and every load, so the list
    grows with each save/load round trip; keep each name once (order kept) so saved configs stay stable."""
    for config in model.peft_config.values():
        if config.modules_to_save:
            config.modules_to_save = list(dict.fromkeys(config.modules_to_save))
    return model
