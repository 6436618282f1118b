"""What the kit's PEFT methods share: the config base, the tuner-layer base and the tuner base.

Each method folder subclasses these three (``methods/<name>/peft_backend.py``) with its own layer computation, and
its registration connects them to PEFT (:mod:`hf_adapter_kit.patches.peft_methods`). PEFT's conventions hold:

- every adapter parameter lives in a container attribute named with the tuner's prefix (``kit_bottleneck_adapter``,
  ``kit_parallel_adapter``, ``kit_hyperformer_hypernet``) and keyed by adapter name, so ``prefix in name``, the
  structural state-dict helpers, ``_cast_adapter_dtype`` and ``low_cpu_mem_usage`` treat them like LoRA's;
- the layers expose ``in_features`` / ``out_features`` of the wrapped projection;
- ``init_weights=True`` starts every adapter as the identity, ``False`` does not;
- a half-precision base: adapter weights are fp32 with ``autocast_adapter_dtype=True`` (PEFT's default) or take the
  base's dtype with ``False``; the layer casts its input to the adapter's dtype and the result back.

Merging is refused with the kit's error (:class:`MergeRefused`): these adapters hold a non-linearity, so no weight
update equals them.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _get_in_out_features
from torch import nn

from ...errors import AdapterKitError, invalid
from ...registry import names_where
from . import checks, placement
from .weights import adapter_dtype


class MergeRefused(AdapterKitError):
    """The kit's adapters cannot be merged into the base weights."""

    def __init__(self):
        mergeable = ", ".join(names_where(lambda spec: spec.mergeable)) or "none"
        super().__init__(
            "`merge`: this adapter has a non-linearity and cannot be merged into the base weights; use `unload()` to "
            f"remove it, or a method that merges ({mergeable})."
        )


@dataclass
class KitPeftConfig(PeftConfig):
    """Fields shared by the kit's PEFT methods (``target_modules`` is filled per architecture)."""

    method: str = field(default="", metadata={"help": "The hf_adapter_kit method name (e.g. 'pfeiffer')."})
    reduction_factor: float = field(
        default=16, metadata={"help": "Bottleneck size is hidden_size // reduction_factor."}
    )
    non_linearity: str = field(default="relu", metadata={"help": "A transformers activation name (ACT2FN)."})
    positions: list[str] = field(
        default_factory=lambda: ["ffn"],
        metadata={"help": "Where adapters go in each layer: 'attention' and/or 'ffn'."},
    )
    init_weights: bool = field(
        default=True,
        metadata={"help": "True: every adapter starts as the identity. False: a random, non-identity start (tests)."},
    )
    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Filled by the kit from the architecture and `positions`."}
    )
    places: dict[str, str | list[str]] | None = field(
        default=None,
        metadata={
            "help": "Where each position's adapter goes, for a model family the kit has no placement for: position -> "
            "the module whose output the adapter changes, relative to a block (or a list of names, one per kind of "
            "block), e.g. {'attention': 'self_attn.o_proj', 'ffn': 'mlp.down_proj'}. Default: the kit's table, or "
            "what the model's module tree shows."
        },
    )
    block_inputs: dict[str, str | list[str]] | None = field(
        default=None,
        metadata={
            "help": "For parallel adapters: position -> the module whose input is the sub-block's input, relative to "
            "a block. Default: the first projection beside the place."
        },
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained and saved in full (the task head)."}
    )

    peft_type_name = ""  # set by each method, e.g. "HF_ADAPTER_KIT_BOTTLENECK"
    default_method = ""  # the kit method a config of this class is, unless `method` says otherwise

    def __post_init__(self):
        super().__post_init__()
        from peft.utils.peft_types import PeftType

        self.peft_type = getattr(PeftType, self.peft_type_name)
        self.method = self.method or self.default_method
        self.check_options()
        checks.positive("reduction_factor", self.reduction_factor)
        if not isinstance(self.reduction_factor, int | float):  # a per-layer mapping is adapters' form
            raise invalid("reduction_factor", self.reduction_factor, "a number > 0.")
        checks.activation("non_linearity", self.non_linearity)
        self.positions = checks.positions(self.positions)
        placement.check_places("places", self.places)
        placement.check_places("block_inputs", self.block_inputs)
        if not isinstance(self.init_weights, bool):
            raise invalid("init_weights", self.init_weights, "True (identity start) or False (random start).")

    def check_options(self) -> None:
        """The method's own options; a method's options class (first among the config's bases) overrides this."""

    def bottleneck_size(self, hidden_size: int) -> int:
        return checks.bottleneck_size(self.reduction_factor, hidden_size)


class KitLayer(nn.Module, BaseTunerLayer):
    """Wraps a sub-block's output projection and adds each active adapter's output to it.

    Subclasses set ``adapter_layer_names`` (containers keyed by adapter name), implement :meth:`create` (build one
    adapter's modules) and :meth:`delta` (its contribution), or instead :meth:`add_delta` (its contribution added to
    the projection's output, for a method whose last matmul adds it), and may override :meth:`compute_dtype` with a
    direct read of one weight. ``reads_block_input``: the adapter reads the sub-block's input (parallel adapters) rather
    than the projection's output.

    :meth:`forward` runs once per wrapped projection and decoding step, so it does no more than the computation asks:
    no search of the adapter's parameters for its dtype, and the stashed block input kept as a plain attribute
    (``nn.Module.__setattr__`` checks three registries on every assignment).
    ``bench/bench_llm.py`` measures what is left, per generated token.
    """

    reads_block_input = False

    def __init__(self, base_layer: nn.Module, layer_index: int, position: str, block_input: nn.Module | None = None):
        super().__init__()
        self.base_layer = base_layer
        self.layer_index, self.position = layer_index, position
        self.kit_options: dict[str, KitPeftConfig] = {}
        self.merged_adapters: list[str] = []
        with warnings.catch_warnings():  # a mixture-of-experts block, placed whole, is no layer type PEFT knows
            warnings.filterwarnings("ignore", "Unsupported layer type", UserWarning)
            self.in_features, self.out_features = _get_in_out_features(base_layer)
        self._block_input: torch.Tensor | None = None
        # A bound method (not a closure) as the hook, so that copy.deepcopy of the model points the copy's hook at
        # the copied layer; the sub-block is kept in a list so that it is not registered as a child module.
        self._hooked: list[nn.Module] = []
        if self.reads_block_input and block_input is not None:
            block_input.register_forward_pre_hook(self._stash, with_kwargs=True)
            self._hooked.append(block_input)

    def update_layer(self, adapter_name: str, config: KitPeftConfig, hidden_size: int, **shared: Any) -> None:
        self.kit_options[adapter_name] = config
        self.create(adapter_name, config, hidden_size, **shared)
        self.train(self.base_layer.training)  # the new modules take the model's mode (eval, when added to a server)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def create(self, adapter_name: str, config: KitPeftConfig, hidden_size: int, **shared: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must build its adapter modules")

    def delta(self, adapter_name: str, source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must compute its adapter's output")

    def compute_dtype(self, adapter_name: str) -> torch.dtype:
        """The dtype the adapter computes in (default: that of its entry in the first container, or of the entry's
        first floating-point parameter)."""
        entry = getattr(self, self.adapter_layer_names[0])[adapter_name]
        return entry.dtype if isinstance(entry, torch.Tensor) else adapter_dtype(entry)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        block_input = self.__dict__.get("_block_input")
        self.__dict__["_block_input"] = None
        output = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return output
        # a mixture-of-experts block (placed whole) returns (hidden states, router logits): adapt the hidden states
        result = output[0] if isinstance(output, tuple) else output
        source = result
        if self.reads_block_input:
            source = x if block_input is None else block_input
        names = [name for name in self.active_adapters if name in self.kit_options]
        # the base layer's output is this layer's own: without autograd, the last adapter may add into it in place
        # (an earlier one may not: the next adapter reads `source`, which can be that output)
        owned = not torch.is_grad_enabled()
        for i, name in enumerate(names):
            source_in_dtype = self._cast_input_dtype(source, self.compute_dtype(name))
            result = self.add_delta(name, source_in_dtype, result, overwrite=owned and i == len(names) - 1)
        return (result, *output[1:]) if isinstance(output, tuple) else result

    def add_delta(
        self, adapter_name: str, source: torch.Tensor, result: torch.Tensor, overwrite: bool = False
    ) -> torch.Tensor:
        """``result`` plus the adapter's output (:meth:`delta`), written into ``result`` itself with ``overwrite``; a
        method whose last op is a matmul overrides this to add in it, and needs no :meth:`delta`."""
        delta = self.delta(adapter_name, source, result).to(result.dtype)
        return result.add_(delta) if overwrite else result + delta

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.kit_options.pop(adapter_name, None)

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        raise MergeRefused()

    def unmerge(self) -> None:
        """Nothing is ever merged (see :meth:`merge`)."""

    def _stash(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.__dict__["_block_input"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def remove_hook(self) -> None:
        for module in self._hooked:
            hooks = module._forward_pre_hooks
            for key in [k for k, hook in hooks.items() if getattr(hook, "__self__", None) is self]:
                del hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)
        self._hooked.clear()


class KitTuner(BaseTuner):
    """The tuner shared by the kit's PEFT methods; each method sets ``prefix`` and ``tuner_layer_cls``."""

    prefix = "kit_"
    tuner_layer_cls = KitLayer
    target_module_mapping: dict = {}

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # The adapter name follows the container attribute (`<prefix>...`) and may be followed by a module path
        # (`kit_hyperformer_hypernet.<name>.projector.0.weight`); PEFT's rule looks only at the key's end.
        parts = key.split(".")
        for i in range(len(parts) - 1):
            if parts[i].startswith(cls.prefix) and parts[i + 1] == adapter_name:
                return ".".join(parts[: i + 1] + parts[i + 2 :])
        return key

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        state_dict = {cls.legacy_key(k, model, adapter_name): v for k, v in state_dict.items()}
        return super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)

    @classmethod
    def legacy_key(cls, key: str, model: nn.Module, adapter_name: str) -> str:
        """A checkpoint key written by hf_adapter_kit 0.1.0's PEFT layout, in today's form (default: unchanged)."""
        return key

    def _prepare_adapter_config(self, peft_config: KitPeftConfig, model_config: dict) -> KitPeftConfig:
        # the places are found in the model itself (PEFT has set `self.model` by now), before anything is changed
        self._placement = placement.resolve(self.model, peft_config, self.tuner_layer_cls.reads_block_input)
        peft_config.target_modules = self._placement.pattern
        return peft_config

    def _prepare_model(self, peft_config: KitPeftConfig, model: nn.Module) -> None:
        peft_config.bottleneck_size(model.config.hidden_size)  # refuse a reduction factor that leaves nothing

    @staticmethod
    def _check_target_module_exists(peft_config: KitPeftConfig, key: str):
        return re.fullmatch(peft_config.target_modules, key) is not None

    def shared_modules(self, adapter_name: str, peft_config: KitPeftConfig) -> dict[str, Any]:
        """Keyword arguments every layer of one adapter receives (Hyperformer++: its hypernetwork)."""
        return {}

    def _create_and_replace(
        self, peft_config, adapter_name, target, target_name, parent, current_key, parameter_name=None
    ) -> None:
        config = self.model.config
        found = getattr(self, "_placement", None)
        if found is None or found.pattern != peft_config.target_modules:
            found = placement.resolve(self.model, peft_config, self.tuner_layer_cls.reads_block_input)
        layer_index, position, block_input_name = found.locate(current_key)
        shared = self.shared_modules(adapter_name, peft_config)
        if not isinstance(target, self.tuner_layer_cls):
            block_input = (
                self.model.get_submodule(block_input_name)
                if self.tuner_layer_cls.reads_block_input and block_input_name is not None
                else None
            )
            new = self.tuner_layer_cls(target, layer_index, position, block_input)
            new.update_layer(adapter_name, peft_config, config.hidden_size, **shared)
            self._replace_module(parent, target_name, new, target)
        else:
            target.update_layer(adapter_name, peft_config, config.hidden_size, **shared)

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        # PEFT's default copies `weight` onto a module without `base_layer`, which fails for a classifier head made of
        # several layers (RoBERTa's) when unloading; the kit's layers place their own weights (update_layer).
        setattr(parent, child_name, new_module)

    def _unload_and_optionally_merge(self, merge=True, progressbar=False, safe_merge=False, adapter_names=None):
        if merge:
            raise MergeRefused()
        layers = [m for m in self.model.modules() if isinstance(m, KitLayer)]
        model = super()._unload_and_optionally_merge(False, progressbar, safe_merge, adapter_names)
        for layer in layers:
            layer.remove_hook()
        return model

    def merge_adapter(self, adapter_names=None, safe_merge: bool = False) -> None:
        raise MergeRefused()
