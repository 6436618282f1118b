"""Two changes to ``adapters``' own code, which no kit method needs: applied to the whole process on request only.

Written against adapters 1.3.0 and transformers 4.57. ``import hf_adapter_kit`` applies neither to the library.
``hf_adapter_kit.speed_up_adapters()`` (or ``HF_ADAPTER_KIT_SPEED_UP_ADAPTERS=1`` in the environment before the
import) applies both, for every ``adapters`` model of the process, the user's own included. Each leaves every output
that ``adapters`` computes correctly as it was:

9. The attention and decoder-layer classes of ``adapters`` for Llama and Mistral (``CACHE_KEYWORD``:
   ``LlamaAttentionWithAdapters.forward``, ``LlamaDecoderLayerWithAdapters.forward``,
   ``MistralAttentionWithAdapters.forward``, ``MistralDecoderLayerWithAdapters.forward``) take the KV cache as
   ``past_key_value``, which transformers 4.56 renamed ``past_key_values`` in the keyword calls it makes (adapters
   issue #824). The cache arrives in ``**kwargs`` and is ignored: it is never filled, and every decoding step of
   ``generate`` attends to its own token only, so generation with the cache on (transformers' default) writes
   garbage after the first token, with or without an adapter, while training and the first token look right. The
   wrapper hands ``past_key_values`` on as ``past_key_value``. What it gains: cached generation gives the tokens
   of uncached generation (``use_cache=False``, the only correct way without it, recomputes the whole sequence at
   every step).
   Because the kit's own generation is wrong without it, the kit applies it, whatever the switch, to each model it
   sets up with ``adapters`` (``backends/adapters_backend.py``) and to a model a kit method is added to through
   ``adapters``' own API (patch 4 in ``adapters_methods.py``): :func:`pass_cache_on` sets the wrapper on that
   model's layers (an instance attribute), so another model of the same classes stays as ``adapters`` made it.
10. ``composition.match_attn_matrices_for_parallel``, which the attention of every ``adapters`` model calls on every
   forward pass, copies the query, key and value with ``repeat`` even when their batch sizes already agree, which is
   every call outside a ``Parallel`` composition: three copies of the attention's inputs per layer, with or without
   an adapter (what that costs: docs/benchmarks.md). The wrapper hands them back as they are when the batch sizes
   agree (the copies held the same values: outputs are bit for bit the same), and calls the original otherwise. The
   modeling modules import the function by name, so the wrapper is bound into every ``adapters`` module that holds
   it (``adapters.composition.match_attn_matrices_for_parallel`` and
   ``adapters.models.<arch>.modeling_<arch>.match_attn_matrices_for_parallel``) when the switch is called, and into
   a modeling module imported later by ``ModelAdaptersMixin.init_adapters`` (wrapped: ``adapters`` imports a model's
   modeling module when it sets up a model of that architecture).

``tests/test_patches_methods.py`` fails when adapters no longer needs them (the cache keyword renamed, the copies
skipped) or these entry points change shape; ``tests/test_import_side_effects.py`` checks that the import applies
neither and that the switch applies both.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import torch
from adapters import composition
from adapters.model_mixin import ModelAdaptersMixin

from ..errors import choices


WRITTEN_AGAINST = "1.3"
SWITCH = "HF_ADAPTER_KIT_SPEED_UP_ADAPTERS"  # "1": speed_up_adapters() runs when hf_adapter_kit is imported
CACHE_KEYWORD = {  # module -> classes whose forward takes past_key_value where transformers passes past_key_values
    "adapters.models.llama.modeling_llama": ("LlamaAttentionWithAdapters", "LlamaDecoderLayerWithAdapters"),
    "adapters.models.mistral.modeling_mistral": ("MistralAttentionWithAdapters", "MistralDecoderLayerWithAdapters"),
}
# What speed_up_adapters() replaces (fnmatch patterns over "module.Class.member" / "module.function").
CHANGES = (
    *(f"{module}.{name}.forward" for module, names in CACHE_KEYWORD.items() for name in names),
    "adapters.composition.match_attn_matrices_for_parallel",
    "adapters.models.*.match_attn_matrices_for_parallel",
    "adapters.model_mixin.ModelAdaptersMixin.init_adapters",
)
_original = {
    "match_attn": composition.match_attn_matrices_for_parallel,
    "init_adapters": ModelAdaptersMixin.init_adapters,
}


def _forward_passing_cache(forward, self, *args, past_key_values=None, **kwargs):
    if past_key_values is not None and kwargs.get("past_key_value") is None:
        kwargs["past_key_value"] = past_key_values
    return forward(self, *args, **kwargs)


def _pass_cache_on_class(forward):
    @functools.wraps(forward)
    def patched(self, *args, **kwargs):
        return _forward_passing_cache(forward, self, *args, **kwargs)

    patched.__kit_patched__ = True
    return patched


def _layer_forward(layer, *args, **kwargs):
    """A layer's own ``forward`` behind patch 9 (set on one layer by :func:`pass_cache_on`)."""
    return _forward_passing_cache(type(layer).forward, layer, *args, **kwargs)


def cache_keyword_classes(import_modules: bool = True) -> list[type]:
    """The classes of ``CACHE_KEYWORD``; with ``import_modules=False`` only those of modules already imported."""
    modules = [importlib.import_module(name) if import_modules else sys.modules.get(name) for name in CACHE_KEYWORD]
    return [
        getattr(module, name)
        for module, names in zip(modules, CACHE_KEYWORD.values(), strict=True)
        if module is not None
        for name in names
    ]


def pass_cache_on(model: torch.nn.Module) -> torch.nn.Module:
    """Patch 9 on one model: its Llama / Mistral layers of ``adapters`` take the KV cache transformers passes.

    Set on the layers themselves (``layer.forward``), so that other models of the process keep ``adapters``' code
    unless :func:`speed_up_adapters` was called. Idempotent; a model without such layers is left as it is.
    """
    classes = tuple(cache_keyword_classes(import_modules=False))  # no such layer exists before its module is imported
    if not classes:
        return model
    for layer in model.modules():
        current = vars(layer).get("forward")
        if isinstance(layer, classes) and getattr(current, "func", None) is not _layer_forward:
            layer.forward = functools.partial(_layer_forward, layer)
    return model


def _match_without_copies(query, key, value):
    if query.shape[0] == key.shape[0] == value.shape[0]:
        return query, key, value
    return _original["match_attn"](query, key, value)


def bind_match_without_copies() -> list[str]:
    """Bind patch 10's wrapper into every imported ``adapters`` module holding the original; their names."""
    original, bound = _original["match_attn"], []
    for name, module in list(sys.modules.items()):
        if (name == "adapters" or name.startswith("adapters.")) and vars(module).get(
            "match_attn_matrices_for_parallel"
        ) is original:
            module.match_attn_matrices_for_parallel = _match_without_copies
            bound.append(name)
    return bound


def _init_adapters(self, *args, **kwargs):
    result = _original["init_adapters"](self, *args, **kwargs)
    bind_match_without_copies()  # the model's modeling module is imported by now
    return result


def applied() -> bool:
    """Whether :func:`speed_up_adapters` has run in this process."""
    return getattr(ModelAdaptersMixin.init_adapters, "__kit_patched__", False)


def speed_up_adapters() -> None:
    """Apply patches 9 and 10 to ``adapters`` for every model of the process (idempotent; see the module docstring).

    Patch 9 makes generation with the KV cache on ``adapters``' Llama and Mistral models give the tokens that
    generation without the cache gives (without it, only ``use_cache=False`` is correct, and slower); patch 10 skips
    three copies of the attention's inputs per layer and forward pass. Outputs that ``adapters`` computes correctly
    stay bit for bit the same. The kit's own models get patch 9 without this call.
    """
    if applied():
        return
    for cls in cache_keyword_classes():
        cls.forward = _pass_cache_on_class(cls.forward)
    patched = functools.wraps(_original["init_adapters"])(_init_adapters)
    patched.__kit_patched__ = True
    ModelAdaptersMixin.init_adapters = patched
    bind_match_without_copies()


def _switched_on() -> bool:
    value = os.environ.get(SWITCH, "").strip()
    if value not in ("", "0", "1"):
        raise choices(SWITCH, value, ["1", "0", ""])
    return value == "1"


if _switched_on():
    speed_up_adapters()


__all__ = ["CACHE_KEYWORD", "CHANGES", "SWITCH", "WRITTEN_AGAINST", "applied", "pass_cache_on", "speed_up_adapters"]
