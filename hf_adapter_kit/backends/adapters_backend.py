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
import torch
from transformers import PreTrainedModel

from ..logs import quiet_adapter_activation
from ..modeling import head_prefixes, lm_head_only
from ..registry import method_of_config
from .base import Backend, check_fits, set_trainable
from .files import ADAPTERS_HEAD_WEIGHTS, ADAPTERS_WEIGHTS, load_into, weight_file


class AdaptersBackend(Backend):
    name = "adapters"

    def attach(
        self, model: PreTrainedModel, config: Any, adapter_name: str, kind: str = "sequence"
    ) -> PreTrainedModel:
        self.attach_encoder(model, config, adapter_name)  # the adapter as on a bare encoder, then the head trains
        set_trainable(model, _trained_heads(model))
        return _in_base_dtype(model, adapter_name)

    def attach_encoder(self, encoder: PreTrainedModel, config: Any, adapter_name: str) -> PreTrainedModel:
        check_fits(config, encoder)
        adapters.init(encoder)
        with quiet_adapter_activation():
            encoder.add_adapter(adapter_name, config=config)
            encoder.train_adapter(adapter_name)  # freezes everything but the adapter and activates it
        return encoder

    def save(self, model: PreTrainedModel, directory: Path, adapter_name: str) -> None:
        model.save_adapter(str(directory), adapter_name, with_head=bool(_trained_heads(model)), use_safetensors=True)

    def load(
        self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool = False
    ) -> PreTrainedModel:
        if _trained_heads(model):
            weight_file(directory, ADAPTERS_HEAD_WEIGHTS, allow_pickle)
        return _in_base_dtype(self._load(model, directory, adapter_name, allow_pickle), adapter_name).eval()

    def load_encoder(self, encoder: PreTrainedModel, directory: Path, adapter_name: str) -> PreTrainedModel:
        return self._load(encoder, directory, adapter_name, allow_pickle=False)

    def _load(self, model: PreTrainedModel, directory: Path, adapter_name: str, allow_pickle: bool):
        weights = weight_file(directory, ADAPTERS_WEIGHTS, allow_pickle)
        adapters.init(model)
        # With safetensors present adapters reads only them; otherwise it uses torch.load(weights_only=True).
        safe = weights.suffix == ".safetensors"
        with quiet_adapter_activation():
            model.load_adapter(str(directory), load_as=adapter_name, set_active=True, use_safetensors=safe)
        return model

    def load_weights(self, model: PreTrainedModel, directory: Path, adapter_name: str) -> None:
        heads = [weight_file(directory, ADAPTERS_HEAD_WEIGHTS)] if _trained_heads(model) else []
        load_into(model, weight_file(directory, ADAPTERS_WEIGHTS), *heads)

    def merge(self, model: PreTrainedModel, adapter_name: str) -> PreTrainedModel:
        """``adapters``' ``merge_adapter``: the LoRA update added to the base weights; the merged LoRA modules stay
        registered but compute nothing (``adapters`` 1.3.0 cannot delete a merged LoRA adapter: ``KeyError``)."""
        model.merge_adapter(adapter_name)
        return model

    def remove(self, model: PreTrainedModel, adapter_name: str) -> PreTrainedModel:
        model.set_active_adapters(None)
        model.delete_adapter(adapter_name)
        return model


def _in_base_dtype(model: PreTrainedModel, adapter_name: str) -> PreTrainedModel:
    """On a half-precision base (``torch_dtype``), ``adapters``' own modules (bottleneck, LoRA, ...) compute in their
    weights' dtype, which ``add_adapter`` makes float32: they would fail on half-precision hidden states. They are
    cast to the base's dtype with the library's ``adapter_to``, as its own half-precision examples do. A method whose
    spec ``keeps_float32`` (the kit's own modules) keeps float32 weights and casts its outputs instead
    (``methods/common/weights.py``)."""
    if model.dtype not in (torch.float16, torch.bfloat16):
        return model
    spec = method_of_config(model.adapters_config.match(adapter_name, config_type=object) or {})
    if spec is None or not spec.keeps_float32:
        model.adapter_to(adapter_name, dtype=model.dtype)
    return model


def _trained_heads(model: PreTrainedModel) -> list[str]:
    """The head modules an adapter trains and saves: the task head, none for a causal LM."""
    return [] if lm_head_only(model) else head_prefixes(model)
