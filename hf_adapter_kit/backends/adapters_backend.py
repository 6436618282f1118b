"""AdapterHub ``adapters``: the model is modified in place by ``adapters.init``.

Saved folders are exactly what ``adapters`` itself writes with ``save_adapter(..., use_safetensors=True)``
(``adapter_config.json``, ``adapter.safetensors``, and for the static transformers head ``head_config.json`` +
``model_head.safetensors``), so plain ``adapters`` loads them with ``model.load_adapter(folder)``.

Families that ``adapters`` has no model classes for get an ``AdapterModelInterface`` (:func:`adapters_interface`):
the kit's for the common decoders it lacks, its own (qwen2, gemma2, ...) otherwise, either one accepting the kit's
methods (bottleneck-style layers, which ``adapters`` places at the interface's hooks like its own).

A causal LM's one head is its language-modelling head (``modeling.lm_head_only``): it stays frozen and is not saved
(``adapters`` would otherwise write it as the static head: the whole output embedding, 28M weights for SmolLM2-135M).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path
from typing import Any

import adapters
import torch
from adapters import AdapterModelInterface
from adapters.wrappers.interfaces import get_adapter_interface
from adapters.wrappers.model import get_module_name
from transformers import PreTrainedModel

from ..errors import AdapterKitError, invalid
from ..logs import quiet_adapter_activation
from ..modeling import families, head_prefixes, lm_head_only
from ..patches.adapters_speedups import pass_cache_on
from ..registry import list_specs, method_of_config
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

    def check_config(self, config: Any, model_config: Any) -> None:
        """A family ``adapters`` runs through an interface (the kit's, or one it ships) takes the methods the
        interface lists: another (LoRA on Phi-3) is refused here, naming the backend that runs it."""
        methods = _interface_methods(getattr(model_config, "model_type", None))
        kit = method_of_config(config) is not None  # the kit's methods go where bottleneck adapters go
        wanted = "bottleneck" if kit else getattr(config, "architecture", None)
        if methods is not None and wanted is not None and wanted not in methods:
            spec = method_of_config(config)
            raise invalid(
                "backend",
                "adapters",
                f"'peft' for this method on model_type {model_config.model_type!r}: adapters runs "
                f"{', '.join(methods)} adapters on it (through an interface), not {spec.name if spec else wanted!r}.",
            )

    def attach_encoder(self, encoder: PreTrainedModel, config: Any, adapter_name: str) -> PreTrainedModel:
        check_fits(config, encoder)
        init(encoder)
        pass_cache_on(encoder)  # without it adapters' Llama / Mistral layers ignore the KV cache (patch 9)
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
        init(model)
        pass_cache_on(model)  # without it adapters' Llama / Mistral layers ignore the KV cache (patch 9)
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


def init(model: PreTrainedModel) -> PreTrainedModel:
    """``adapters.init(model, interface=adapters_interface(model))``, leaving the base model's outputs as they were.

    ``adapters`` 1.3.0's LoRA wraps a combined query-key-value projection in a new linear layer (``LoRAMergedLinear``)
    that keeps the projection's weight and bias, but a projection without bias (ModernBERT's ``Wqkv``) gets the
    random float32 bias the new layer drew: every output of the base model changes, and a half-precision base fails
    at its first forward pass. Such new biases are zeroed, in the base's dtype: no bias, as before.
    """
    existing = {id(p) for p in model.parameters()}
    adapters.init(model, interface=adapters_interface(model))
    dtype = next((p.dtype for p in model.parameters() if id(p) in existing and p.is_floating_point()), None)
    for name, param in model.named_parameters():
        if id(param) not in existing and name.endswith(".bias"):
            param.data = torch.zeros_like(param.data, dtype=dtype)
    return model


def adapters_interface(model: PreTrainedModel) -> AdapterModelInterface | None:
    """What ``adapters.init(model, interface=...)`` takes for the model's family: ``None`` where ``adapters`` has
    model classes for it, else an interface that also accepts the kit's methods (the kit's, from its family table,
    or the one ``adapters`` ships). Raises the kit's error, before the model is touched, for a family neither covers.
    """
    if isinstance(model, adapters.ModelAdaptersMixin):
        return getattr(model.base_model, "adapter_interface", None)  # initialised already: adapters.init keeps it
    model_type = getattr(model.config, "model_type", None)
    row = families.get_family(model_type)
    fields = families.interface_fields(row) if row is not None else None
    shipped = get_adapter_interface(model_type)
    if fields is None and shipped is not None:
        fields = asdict(shipped)
    if fields is not None:
        return AdapterModelInterface(**{**fields, "adapter_methods": AcceptsKitMethods(fields["adapter_methods"])})
    if _has_model_classes(model_type):
        return None
    raise AdapterKitError(
        f"`model_type`={model_type!r}: `adapters` 1.3.0 has no model classes and no interface for this family, and "
        f"the kit has none either (it runs on `adapters` with: {', '.join(families.FAMILIES)}, and every family "
        "adapters supports itself). Use backend='peft': it places the kit's methods in any family whose blocks it "
        "finds, or where `places=` names them."
    )


class AcceptsKitMethods(list):
    """An interface's ``adapter_methods``. ``adapters`` initialises each listed method (``init_adapters`` iterates
    the list) and accepts a config whose method is listed (``supports_adapter`` asks ``in``). The kit's methods are
    bottleneck layers, which ``adapters`` places where its ``bottleneck`` method goes: accepted wherever bottleneck
    adapters are, without being listed (listed, ``init_adapters`` would look for an initialiser of their own)."""

    def __contains__(self, method: object) -> bool:
        kit = {spec.adapters.architecture for spec in list_specs() if spec.adapters is not None}
        return super().__contains__(method) or (method in kit and super().__contains__("bottleneck"))


def _interface_methods(model_type: str | None) -> list[str] | None:
    """The adapter methods of the interface ``adapters`` runs the family through; ``None`` where it has model classes
    (every method) or knows nothing of the family (refused when the model is attached)."""
    row = families.get_family(model_type)
    fields = families.interface_fields(row) if row is not None else None
    shipped = get_adapter_interface(model_type) if model_type else None
    if fields is None and shipped is not None:
        fields = asdict(shipped)
    return list(fields["adapter_methods"]) if fields is not None else None


def _has_model_classes(model_type: str | None) -> bool:
    """``adapters`` has a modeling module for the family (what ``adapters.init`` imports without an interface)."""
    if not model_type:
        return False
    name = get_module_name(model_type)
    try:
        return importlib.util.find_spec(f"adapters.models.{name}.modeling_{name}") is not None
    except ModuleNotFoundError:
        return False


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
