"""Hugging Face PEFT: the model is wrapped in a ``PeftModel``.

Saved folders are what PEFT writes with ``save_pretrained`` (``adapter_config.json``, ``adapter_model.safetensors``
with the classification head as a ``modules_to_save`` entry), so plain ``PeftModel.from_pretrained`` loads them.
PEFT writes a non-default adapter into a sub-folder named after it; the kit keeps PEFT's ``default`` name so the
folder is flat, and records the task name in its own metadata instead.

A config's ``task_type`` follows the model's task kind (``kinds.py``): the methods' configs default to ``SEQ_CLS``,
which becomes ``TOKEN_CLS`` or ``CAUSAL_LM`` on those kinds (PEFT's wrapper class of that type is what
``generate`` goes through and what ``PeftModel.from_pretrained`` rebuilds), and a classification head the model has
is trained and saved (``modules_to_save``; PEFT's own default knows only ``classifier`` and ``score``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import peft
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA_TARGETS
from safetensors.torch import load_file
from transformers import PreTrainedModel

from ..errors import AdapterKitError, invalid
from ..kinds import CLASSIFICATION, ENCODER_TASK_TYPE, get_kind
from ..modeling import head_prefixes
from .base import Backend, check_fits
from .files import PEFT_WEIGHTS, weight_file


PEFT_ADAPTER_NAME = "default"
DEFAULT_TASK_TYPE = "SEQ_CLS"  # what the methods' PEFT configs carry until a run names the kind


class PeftBackend(Backend):
    name = "peft"

    def attach(self, model: PreTrainedModel, config: Any, adapter_name: str, kind: str = "sequence") -> peft.PeftModel:
        check_fits(config, model)
        for_kind(config, kind, model)
        return _dedupe_modules_to_save(peft.get_peft_model(model, config, adapter_name=PEFT_ADAPTER_NAME))

    def check_config(self, config: Any, model_config: Any) -> None:
        """LoRA without ``target_modules`` takes PEFT's targets for the model's family, which PEFT lacks for some
        (Phi-3): refused here, naming the option, instead of by PEFT once the model is loaded."""
        model_type = getattr(model_config, "model_type", None)
        if isinstance(config, peft.LoraConfig) and config.target_modules is None and model_type not in LORA_TARGETS:
            raise invalid(
                "target_modules",
                None,
                f"a list of the modules LoRA adapts: PEFT has no default LoRA targets for model_type {model_type!r}; "
                "give them (method_options, or --target_modules), e.g. 'all-linear', or the projections' names.",
            )

    def attach_encoder(self, encoder: PreTrainedModel, config: Any, adapter_name: str) -> peft.PeftModel:
        check_fits(config, encoder)
        config.task_type = ENCODER_TASK_TYPE
        config.modules_to_save = None  # the heads are the multi-task model's own
        return peft.get_peft_model(encoder, config, adapter_name=PEFT_ADAPTER_NAME)

    def save(self, model: peft.PeftModel, directory: Path, adapter_name: str) -> None:
        # The kit never resizes a vocabulary, so PEFT's "auto" check whether it did is skipped: for a base model named
        # by Hub id (the embedded ones) it asks the Hub for its config.json, retrying for long when offline (PEFT 0.21).
        model.save_pretrained(str(directory), safe_serialization=True, save_embedding_layers=False)

    def load(
        self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool = False
    ) -> peft.PeftModel:
        # PEFT reads adapter_model.safetensors when present, else the pickle with torch.load(weights_only=True).
        weight_file(directory, PEFT_WEIGHTS, allow_pickle)
        loaded = peft.PeftModel.from_pretrained(model, str(directory), adapter_name=PEFT_ADAPTER_NAME)
        return _dedupe_modules_to_save(loaded).eval()

    def load_encoder(self, encoder: PreTrainedModel, directory: Path, adapter_name: str) -> peft.PeftModel:
        weight_file(directory, PEFT_WEIGHTS)
        return peft.PeftModel.from_pretrained(encoder, str(directory), adapter_name=PEFT_ADAPTER_NAME)

    def load_weights(self, model: peft.PeftModel, directory: Path, adapter_name: str) -> None:
        state = load_file(str(weight_file(directory, PEFT_WEIGHTS)))
        result = peft.set_peft_model_state_dict(model, state, adapter_name=PEFT_ADAPTER_NAME)
        missing = [k for k in result.missing_keys if PEFT_ADAPTER_NAME in k]
        if missing:
            raise AdapterKitError(f"{directory}: the checkpoint lacks adapter tensors {missing[:5]}.")

    def remove(self, model: peft.PeftModel, adapter_name: str) -> PreTrainedModel:
        return model.unload()

    def library_adapter_name(self, adapter_name: str) -> str:
        return PEFT_ADAPTER_NAME  # the folder stays flat (see the module's docstring)

    def base_model(self, model: peft.PeftModel) -> PreTrainedModel:
        return model.get_base_model()

    def merge(self, model: peft.PeftModel, adapter_name: str) -> PreTrainedModel:
        """PEFT's ``merge_and_unload``: the base model, its weights updated, the LoRA layers gone."""
        return model.merge_and_unload()


def for_kind(config: Any, kind: str, model: PreTrainedModel) -> Any:
    """``config``'s ``task_type`` for the model's task kind (unless the user set another than the default), and the
    model's classification head trained and saved with the adapter."""
    if str(getattr(config, "task_type", None)) in {DEFAULT_TASK_TYPE, f"TaskType.{DEFAULT_TASK_TYPE}"}:
        config.task_type = get_kind(kind).peft_task_type
    if kind in CLASSIFICATION and getattr(config, "task_type", None) in {"SEQ_CLS", "TOKEN_CLS"}:
        if not config.modules_to_save:
            config.modules_to_save = head_prefixes(model)
    return config


def _dedupe_modules_to_save(model: peft.PeftModel) -> peft.PeftModel:
    """PEFT 0.21 appends its default head names to ``modules_to_save`` on every attach and every load, so the list
    grows with each save/load round trip; keep each name once (order kept) so saved configs stay stable."""
    for config in model.peft_config.values():
        if config.modules_to_save:
            config.modules_to_save = list(dict.fromkeys(config.modules_to_save))
    return model
