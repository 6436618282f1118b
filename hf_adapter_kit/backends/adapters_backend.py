"""AdapterHub ``adapters``: the model is modified in place by ``adapters.init``.

Saved folders are exactly what ``adapters`` itself writes with ``save_adapter(..., use_safetensors=True)``
(``adapter_config.json``, ``adapter.safetensors``, and for the static transformers head ``head_config.json`` +
``model_head.safetensors``), so plain ``adapters`` loads them with ``model.load_adapter(folder)``.

A causal LM's one head is its language-modelling head (``modeling.lm_head_only``): it stays frozen and is not saved
(``adapters`` would otherwise write it as the static head: the whole output embedding, 28M weights for SmolLM2-135M).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import adapters
from transformers import PreTrainedModel

from ..logs import quiet_adapter_activation
from ..modeling import head_prefixes, lm_head_only
from .base import Backend, check_fits, load_into, set_trainable, weight_file


WEIGHTS = "adapter.safetensors"
HEAD_WEIGHTS = "model_head.safetensors"


class AdaptersBackend(Backend):
    name = "adapters"

    def attach(self, model: PreTrainedModel, config: Any, adapter_name: str) -> PreTrainedModel:
        check_fits(config, model)
        adapters.init(model)
        with quiet_adapter_activation():
            model.add_adapter(adapter_name, config=config)
            model.train_adapter(adapter_name)  # freezes everything but the adapter and activates it
        set_trainable(model, _trained_heads(model))
        return model

    def save(self, model: PreTrainedModel, directory: Path, adapter_name: str) -> None:
        model.save_adapter(str(directory), adapter_name, with_head=bool(_trained_heads(model)), use_safetensors=True)

    def load(
        self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool = False
    ) -> PreTrainedModel:
        weights = weight_file(directory, WEIGHTS, allow_pickle)
        if _trained_heads(model):
            weight_file(directory, HEAD_WEIGHTS, allow_pickle)
        adapters.init(model)
        # With safetensors present adapters reads only them; otherwise it uses torch.load(weights_only=True).
        safe = weights.suffix == ".safetensors"
        with quiet_adapter_activation():
            model.load_adapter(str(directory), load_as=adapter_name, set_active=True, use_safetensors=safe)
        return model.eval()

    def load_weights(self, model: PreTrainedModel, directory: Path, adapter_name: str) -> None:
        heads = [weight_file(directory, HEAD_WEIGHTS)] if _trained_heads(model) else []
        load_into(model, weight_file(directory, WEIGHTS), *heads)

    def remove(self, model: PreTrainedModel, adapter_name: str) -> PreTrainedModel:
        model.set_active_adapters(None)
        model.delete_adapter(adapter_name)
        return model


def _trained_heads(model: PreTrainedModel) -> list[str]:
    """The head modules an adapter trains and saves: the task head, none for a causal LM."""
    return [] if lm_head_only(model) else head_prefixes(model)
