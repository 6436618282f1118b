"""Register the kit's Hyperformer++ and multi-task parallel adapters with ``adapters`` (AdapterHub).

Written against adapters 1.3.0. What it changes, and why:

1. ``ADAPTER_CONFIG_MAP`` gains ``"hyperformer"`` and ``"multitask_parallel"``, so that
   ``model.add_adapter(name, config="hyperformer")`` works like ``config="seq_bn"``.
2. ``AdapterConfig._get_config_class`` maps a config's ``architecture`` to its class with a fixed dict and raises
   ``KeyError`` for any other value, so a saved kit adapter could not even be read back. The wrapper answers for the
   kit's two architectures (``hf_adapter_kit.hyperformer``, ``hf_adapter_kit.parallel``) and defers otherwise.
3. ``BottleneckLayer.add_adapter`` picks the module class with a hard-coded ``if is_parallel``. The wrapper builds the
   kit's module when the matched config is one of the kit's, with the same ``is_layer_hooked`` rule; otherwise the
   original runs.
4. ``ModelAdaptersMixin._add_adapter_weights`` creates shared weights only for Compacter and VeRA. The wrapper adds
   the Hyperformer hypernetwork as the adapter's shared weights after the original has run.
5. ``AdapterLoader.filter_func`` / ``rename_func`` find shared weights by the key fragment
   ``.shared_parameters.<name>.``, with a leading dot; on a bare encoder (``AutoModel``, as the kit's multi-task
   models use) the key starts with ``shared_parameters.`` and the hypernetwork was silently left out of the saved
   file. The wrappers also accept and rename that key at the start.

``tests/test_patches_methods.py`` fails when the installed adapters is not 1.3.x or these entry points change shape.
"""

from __future__ import annotations

import functools

import adapters
from adapters.configuration import adapter_config
from adapters.loading import AdapterLoader
from adapters.methods.bottleneck import BottleneckLayer
from adapters.model_mixin import ModelAdaptersMixin

from ..custom.adapters_glue import (
    ARCHITECTURES,
    HyperformerAdapter,
    HyperformerConfig,
    MultiTaskParallelAdapter,
    MultiTaskParallelConfig,
    build_hypernetwork,
)


WRITTEN_AGAINST = "1.3"
CONFIG_NAMES = {"hyperformer": HyperformerConfig, "multitask_parallel": MultiTaskParallelConfig}
CLASSES = {ARCHITECTURES["hyperformer"]: HyperformerConfig, ARCHITECTURES["parallel"]: MultiTaskParallelConfig}
_original = {
    "get_config_class": adapter_config.AdapterConfig._get_config_class,
    "add_adapter": BottleneckLayer.add_adapter,
    "add_adapter_weights": ModelAdaptersMixin._add_adapter_weights,
    "filter_func": AdapterLoader.filter_func,
    "rename_func": AdapterLoader.rename_func,
}


def _get_config_class(config_dict):
    cls = CLASSES.get(config_dict.get("architecture"))
    return cls if cls is not None else _original["get_config_class"](config_dict)


def _add_adapter(self, adapter_name: str, layer_idx: int) -> bool:
    config = self.adapters_config.match(
        adapter_name, config_type=adapters.BnConfig, layer_idx=layer_idx, location_key=self.location_key
    )
    if not isinstance(config, (HyperformerConfig, MultiTaskParallelConfig)):
        return _original["add_adapter"](self, adapter_name, layer_idx)
    self.layer_idx = layer_idx
    if isinstance(config, HyperformerConfig):
        adapter = HyperformerAdapter(adapter_name, config, layer_idx, self.location_key)
    else:
        adapter = MultiTaskParallelAdapter(adapter_name, config, self.model_config.hidden_size)
    if self.is_layer_hooked:  # as adapters does: the model applies residual and layer norm itself
        adapter.original_ln_after = False
    adapter.train(self.training)
    self.adapters[adapter_name] = adapter
    return True


def _add_adapter_weights(self, adapter_name: str):
    _original["add_adapter_weights"](self, adapter_name)
    config = self.adapters_config.match(adapter_name, HyperformerConfig)
    if config is not None:
        model_config = self.config
        hypernet = build_hypernetwork(config, model_config.hidden_size, model_config.num_hidden_layers)
        self.base_model.shared_parameters[adapter_name] = hypernet.to(self.device)


def _filter_func(self, adapter_name):
    inner = _original["filter_func"](self, adapter_name)
    return lambda key: inner(key) or key.startswith(f"shared_parameters.{adapter_name}.")


def _rename_func(self, old_name, new_name):
    inner = _original["rename_func"](self, old_name, new_name)
    old, new = f"shared_parameters.{old_name}.", f"shared_parameters.{new_name}."
    return lambda key: inner(new + key[len(old) :] if key.startswith(old) else key)


def apply() -> None:
    if getattr(BottleneckLayer.add_adapter, "__kit_patched__", False):
        return
    adapter_config.ADAPTER_CONFIG_MAP.update({name: cls() for name, cls in CONFIG_NAMES.items()})
    adapter_config.AdapterConfig._get_config_class = staticmethod(_get_config_class)
    for owner, attribute, wrapper in (
        (BottleneckLayer, "add_adapter", _add_adapter),
        (ModelAdaptersMixin, "_add_adapter_weights", _add_adapter_weights),
        (AdapterLoader, "filter_func", _filter_func),
        (AdapterLoader, "rename_func", _rename_func),
    ):
        patched = functools.wraps(getattr(owner, attribute))(wrapper)
        patched.__kit_patched__ = True
        setattr(owner, attribute, patched)
