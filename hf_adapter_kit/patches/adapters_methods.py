"""Connect the kit's methods to ``adapters`` (AdapterHub).

Written against adapters 1.3.0. Each registry ``AdaptersMethod`` row is connected here; what changes, and why:

1. ``ADAPTER_CONFIG_MAP`` gains the method's config string (``"hyperformer"``, ``"multitask_parallel"``), so that
   ``model.add_adapter(name, config="hyperformer")`` works like ``config="seq_bn"``.
2. ``AdapterConfig._get_config_class`` maps a config's ``architecture`` to its class with a fixed dict and raises
   ``KeyError`` for any other value, so a saved kit adapter could not even be read back. The wrapper answers for the
   kit's architectures and defers otherwise.
3. ``BottleneckLayer.add_adapter`` picks the module class with a hard-coded ``if is_parallel``. The wrapper builds the
   kit's module when the matched config is one of the kit's, with the same ``is_layer_hooked`` rule, and hands it
   the layer's ``adapters_config`` (where a module finds the active setup: Hyperformer++ adds its output into the
   residual in its last matmul unless a composition reads that output alone); otherwise the original runs.
4. ``ModelAdaptersMixin._add_adapter_weights`` creates shared weights only for Compacter and VeRA. The wrapper adds
   a kit method's shared weights (Hyperformer++'s hypernetwork) after the original has run, gives the model's
   Llama / Mistral layers patch 9 (below), and puts the kit's new modules in the model's mode (``adapters`` builds
   them in training mode, also in a model in eval mode).
5. ``AdapterLoader.filter_func`` / ``rename_func`` find shared weights by the key fragment
   ``.shared_parameters.<name>.``, with a leading dot; on a bare encoder (``AutoModel``, as the kit's multi-task
   models use) the key starts with ``shared_parameters.`` and the hypernetwork was silently left out of the saved
   file. The wrappers also accept and rename that key at the start.
6. ``ModelAdaptersMixin.average_adapter`` averages each layer's modules but no shared weights other than PHM/VeRA,
   so an average of two Hyperformer++ adapters had no hypernetwork (``KeyError`` at the first forward). The wrapper
   averages the shared weights too, for the ``"linear"`` strategy, and refuses the others with the kit's error.
7. The ``forward`` of an ``adapters`` model (``AutoAdapterModel`` or one made by ``adapters.init``) does not declare
   ``task_ids`` (``ForwardContext`` takes it from ``**kwargs``), so the Trainer's ``remove_unused_columns`` dropped
   the column and multi-task training stopped. When a kit adapter is added (``ModelAdaptersMixin`` for a bare model,
   ``ModelWithHeadsAdaptersMixin.add_adapter`` for a model with heads), ``task_ids`` is added to the model class's
   ``forward`` signature (``__signature__``, which ``inspect.signature`` and so the Trainer read).
8. ``BottleneckLayer.vslice`` hands each child of a ``BatchSplit`` its rows of the batch, but ``task_ids`` stay those
   of the whole batch. The wrapper notes the rows it hands out (start, stop, whole batch) on the ``ForwardContext``,
   where the kit's modules find which examples, and so which tasks, they are computing.

Two more changes, to ``adapters``' own code and needed by no kit method, are applied to the process only on request
(``hf_adapter_kit.speed_up_adapters()``): patches 9 (the KV cache of its Llama / Mistral layers) and 10 (no attention
copies), in ``adapters_speedups.py``. A model a kit method is added to gets patch 9 on its own layers (patch 4 calls
:func:`~hf_adapter_kit.patches.adapters_speedups.pass_cache_on`), since the method's generation is wrong without it.

What the import replaces, by qualified name (``CHANGES``, which ``tests/test_import_side_effects.py`` compares with
what an import really changes): patch 2 ``AdapterConfig._get_config_class``, 3 ``BottleneckLayer.add_adapter``, 4
``ModelAdaptersMixin._add_adapter_weights``, 5 ``AdapterLoader.filter_func`` and ``AdapterLoader.rename_func``, 6
``ModelAdaptersMixin.average_adapter``, 7 ``ModelWithHeadsAdaptersMixin.add_adapter``, 8 ``BottleneckLayer.vslice``.
Every other call goes to the original unchanged, with one exception that fixes the library's own methods too:
patch 5 also finds a bare encoder's ``shared_parameters.`` keys of ``adapters``' Compacter and VeRA adapters, which
the original leaves out of the saved file in the same way.

``tests/test_patches_methods.py`` fails when the installed adapters is not 1.3.x or these entry points change shape.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping

import adapters
import torch
from adapters.configuration import adapter_config
from adapters.context import ForwardContext
from adapters.loading import AdapterLoader
from adapters.methods.bottleneck import BottleneckLayer
from adapters.model_mixin import ModelAdaptersMixin, ModelWithHeadsAdaptersMixin

from ..errors import AdapterKitError
from .adapters_speedups import pass_cache_on


WRITTEN_AGAINST = "1.3"
_BY_ARCHITECTURE: dict = {}  # architecture -> AdaptersMethod
_original = {
    "get_config_class": adapter_config.AdapterConfig._get_config_class,
    "add_adapter": BottleneckLayer.add_adapter,
    "add_adapter_weights": ModelAdaptersMixin._add_adapter_weights,
    "filter_func": AdapterLoader.filter_func,
    "rename_func": AdapterLoader.rename_func,
    "average_adapter": ModelAdaptersMixin.average_adapter,
    "heads_add_adapter": ModelWithHeadsAdaptersMixin.add_adapter,
    "vslice": BottleneckLayer.vslice,
}
CHANGES = (  # what apply() replaces ("module.Class.member"), by patch number in the docstring
    "adapters.configuration.adapter_config.AdapterConfig._get_config_class",  # 2
    "adapters.methods.bottleneck.BottleneckLayer.add_adapter",  # 3
    "adapters.model_mixin.ModelAdaptersMixin._add_adapter_weights",  # 4
    "adapters.loading.AdapterLoader.filter_func",  # 5
    "adapters.loading.AdapterLoader.rename_func",  # 5
    "adapters.model_mixin.ModelAdaptersMixin.average_adapter",  # 6
    "adapters.model_mixin.ModelWithHeadsAdaptersMixin.add_adapter",  # 7
    "adapters.methods.bottleneck.BottleneckLayer.vslice",  # 8
)


def _method_of(config):
    # a model built from a saved config.json holds its adapters' configs as plain dicts until they are matched
    architecture = config.get("architecture") if isinstance(config, Mapping) else getattr(config, "architecture", None)
    return _BY_ARCHITECTURE.get(architecture)


def _config_of(model, adapter_name: str):
    """The adapter's config as its class (``adapters_config.get`` may hand back the saved dict)."""
    config = model.adapters_config.get(adapter_name)
    return adapter_config.AdapterConfig.load(config) if isinstance(config, Mapping) else config


def _get_config_class(config_dict):
    method = _BY_ARCHITECTURE.get(config_dict.get("architecture"))
    return method.config_cls if method is not None else _original["get_config_class"](config_dict)


def _add_adapter(self, adapter_name: str, layer_idx: int) -> bool:
    config = self.adapters_config.match(
        adapter_name, config_type=adapters.BnConfig, layer_idx=layer_idx, location_key=self.location_key
    )
    method = _method_of(config)
    if method is None:
        return _original["add_adapter"](self, adapter_name, layer_idx)
    self.layer_idx = layer_idx
    adapter = method.build_layer(adapter_name, config, layer_idx, self.location_key, self.model_config)
    if self.is_layer_hooked:  # as adapters does: the model applies residual and layer norm itself
        adapter.original_ln_after = False
    adapter.adapters_config = self.adapters_config
    adapter.train(self.training)
    self.adapters[adapter_name] = adapter
    return True


def _add_adapter_weights(self, adapter_name: str):
    _original["add_adapter_weights"](self, adapter_name)
    config = _config_of(self, adapter_name)
    method = _method_of(config)
    if method is None:
        return
    _declare_task_ids(type(self))
    pass_cache_on(self)  # patch 9 on this model's Llama / Mistral layers: the method's generation needs the cache
    if method.build_shared is not None:
        shared = method.build_shared(config, self.config)
        self.base_model.shared_parameters[adapter_name] = shared.to(self.device)
    _follow_mode(self, adapter_name)


def _heads_add_adapter(self, adapter_name: str, *args, **kwargs):
    result = _original["heads_add_adapter"](self, adapter_name, *args, **kwargs)
    if _method_of(self.adapters_config.get(adapter_name)) is not None:
        _declare_task_ids(type(self))
    return result


def _vslice(self, state, slice_obj):
    context = ForwardContext.get_context()
    if context is not None and isinstance(slice_obj, slice):
        start, stop, _ = slice_obj.indices(state.hidden_states.shape[0])
        context.kit_rows = (start, stop, state.hidden_states.shape[0])
    return _original["vslice"](self, state, slice_obj)


def _filter_func(self, adapter_name):
    inner = _original["filter_func"](self, adapter_name)
    return lambda key: inner(key) or key.startswith(f"shared_parameters.{adapter_name}.")


def _rename_func(self, old_name, new_name):
    inner = _original["rename_func"](self, old_name, new_name)
    old, new = f"shared_parameters.{old_name}.", f"shared_parameters.{new_name}."
    return lambda key: inner(new + key[len(old) :] if key.startswith(old) else key)


def _average_adapter(self, adapter_name, adapter_list, weights=None, combine_strategy="linear", *args, **kwargs):
    names = list(adapter_list)
    method = _method_of(self.adapters_config.get(names[0])) if names else None
    if method is not None and combine_strategy != "linear":
        raise AdapterKitError(
            f"`combine_strategy`={combine_strategy!r} is not valid for averaging {method.config_name!r} adapters: "
            "only 'linear' (the weighted mean of every weight, shared ones included)."
        )
    _original["average_adapter"](self, adapter_name, adapter_list, weights, combine_strategy, *args, **kwargs)
    if method is None or method.build_shared is None:
        return
    if isinstance(adapter_list, dict):
        names, weights = list(adapter_list), list(adapter_list.values())
    weights = [1.0 / len(names)] * len(names) if weights is None else list(weights)
    if kwargs.get("normalize_weights", True):
        weights = [w / sum(weights) for w in weights]
    shared = self.base_model.shared_parameters
    average = method.build_shared(_config_of(self, adapter_name), self.config)
    sources = [shared[name].state_dict() for name in names]
    with torch.no_grad():
        average.load_state_dict({k: sum(w * s[k] for w, s in zip(weights, sources, strict=True)) for k in sources[0]})
    reference = next(shared[names[0]].parameters())
    shared[adapter_name] = average.to(device=reference.device, dtype=reference.dtype)
    _follow_mode(self, adapter_name)


def _follow_mode(model, adapter_name: str) -> None:
    """The kit's modules of ``adapter_name`` take the model's mode. ``adapters`` builds its layers in training mode,
    also inside a model that was put in eval mode before (``model.eval(); adapters.init(model); add_adapter``), where
    the kit's modules would then serve on their training paths (Hyperformer++ without its bank)."""
    for module in model.modules():
        if isinstance(module, BottleneckLayer) and adapter_name in module.adapters:
            module.adapters[adapter_name].train(model.training)
    shared = model.base_model.shared_parameters
    if adapter_name in shared:
        shared[adapter_name].train(model.training)


def _declare_task_ids(model_cls) -> None:
    forward = model_cls.forward
    signature = inspect.signature(forward)
    if "task_ids" in signature.parameters:
        return
    params = list(signature.parameters.values())
    at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    params.insert(at, inspect.Parameter("task_ids", inspect.Parameter.KEYWORD_ONLY, default=None))
    forward.__signature__ = signature.replace(parameters=params)


def _wrap(owner, attribute: str, wrapper) -> None:
    patched = functools.wraps(getattr(owner, attribute))(wrapper)
    patched.__kit_patched__ = True
    setattr(owner, attribute, patched)


def apply() -> None:
    """Install the wrappers once (idempotent)."""
    if getattr(BottleneckLayer.add_adapter, "__kit_patched__", False):
        return
    adapter_config.AdapterConfig._get_config_class = staticmethod(_get_config_class)
    for owner, attribute, wrapper in (
        (BottleneckLayer, "add_adapter", _add_adapter),
        (ModelAdaptersMixin, "_add_adapter_weights", _add_adapter_weights),
        (AdapterLoader, "filter_func", _filter_func),
        (AdapterLoader, "rename_func", _rename_func),
        (ModelAdaptersMixin, "average_adapter", _average_adapter),
        (ModelWithHeadsAdaptersMixin, "add_adapter", _heads_add_adapter),
        (BottleneckLayer, "vslice", _vslice),
    ):
        _wrap(owner, attribute, wrapper)


def register(method) -> None:
    """Make a registry ``AdaptersMethod`` an ``adapters`` config string (idempotent)."""
    apply()
    adapter_config.ADAPTER_CONFIG_MAP[method.config_name] = method.config_cls()
    _BY_ARCHITECTURE[method.architecture] = method


__all__ = ["CHANGES", "WRITTEN_AGAINST", "apply", "register"]
