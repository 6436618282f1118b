"""The kit's methods as PEFT methods: configs, the tuner layer and the tuner model.

Three PEFT types, registered by :mod:`hf_adapter_kit.patches.peft_methods` on ``import hf_adapter_kit``:

- ``HF_ADAPTER_KIT_BOTTLENECK``: Houlsby (``positions=["attention", "ffn"]``) and Pfeiffer (``["ffn"]``) adapters,
  ``h + up(act(down(h)))`` on the sub-block's output, before the model's residual and layer norm.
- ``HF_ADAPTER_KIT_PARALLEL``: one bottleneck per task reading the sub-block's *input*; ``s * up(act(down(x)))`` is
  added to the sub-block's output, each example routed to its task's block.
- ``HF_ADAPTER_KIT_HYPERFORMER``: Hyperformer++; the weights of every (task, layer, position) adapter come from one
  hypernetwork kept on the tuner model (saved once, not once per layer).

The type names start with ``HF_ADAPTER_KIT_`` so that PEFT without the kit fails with a ``KeyError`` that names it.
Usage is plain PEFT: ``get_peft_model(model, config)``, ``save_pretrained``, ``PeftModel.from_pretrained``,
``disable_adapter()``, ``unload()``; multi-task adapters take ``task_ids=`` in the forward call.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from torch import nn

from ..errors import AdapterKitError, invalid
from . import placement
from .layers import POSITIONS, Bottleneck, HyperNetwork, MultiTaskBottleneck
from .routing import check_tasks, current_task_ids


PEFT_TYPES = {
    "bottleneck": "HF_ADAPTER_KIT_BOTTLENECK",
    "parallel": "HF_ADAPTER_KIT_PARALLEL",
    "hyperformer": "HF_ADAPTER_KIT_HYPERFORMER",
}


def check_common(method: str, reduction_factor: Any, positions: Any, non_linearity: Any) -> None:
    """Checks shared by both backends' configs of the kit's methods."""
    if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, (int, float)) or reduction_factor <= 0:
        raise invalid("reduction_factor", reduction_factor, f"a number > 0 for method {method!r}.")
    if (
        isinstance(positions, str)
        or not positions
        or any(p not in POSITIONS for p in positions)
        or len(set(positions)) != len(positions)
    ):
        raise invalid("positions", positions, f"a non-empty list of distinct positions from {list(POSITIONS)}.")
    from transformers.activations import ACT2FN

    if not isinstance(non_linearity, str) or non_linearity.lower() not in ACT2FN:
        raise invalid("non_linearity", non_linearity, f"one of {', '.join(sorted(ACT2FN))}.")


def check_scaling(scaling: Any) -> None:
    if scaling != "learned" and (isinstance(scaling, bool) or not isinstance(scaling, (int, float))):
        raise invalid("scaling", scaling, "a number, or 'learned' for a learned scale per task.")


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise invalid(name, value, "an integer > 0.")


@dataclass
class KitPeftConfig(PeftConfig):
    """Fields shared by the kit's PEFT methods (``target_modules`` is filled per architecture)."""

    method: str = field(default="", metadata={"help": "The hf_adapter_kit method name."})
    reduction_factor: float = field(default=16, metadata={"help": "bottleneck = hidden_size // reduction_factor"})
    non_linearity: str = field(default="relu", metadata={"help": "transformers activation name"})
    positions: list[str] = field(default_factory=lambda: ["ffn"], metadata={"help": "'attention' and/or 'ffn'"})
    target_modules: list[str] | str | None = field(default=None, metadata={"help": "filled by the kit"})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "modules trained and saved in full"})

    kind = "bottleneck"

    def __post_init__(self):
        super().__post_init__()
        from peft.utils.peft_types import PeftType

        self.peft_type = getattr(PeftType, PEFT_TYPES[self.kind])
        self.method = self.method or self.kind
        self.positions = list(self.positions)
        check_common(self.method, self.reduction_factor, self.positions, self.non_linearity)

    def bottleneck_size(self, hidden_size: int) -> int:
        size = int(hidden_size // self.reduction_factor)
        if size < 1:
            raise invalid("reduction_factor", self.reduction_factor, f"at most the hidden size {hidden_size}.")
        return size


@dataclass
class BottleneckPeftConfig(KitPeftConfig):
    """Houlsby / Pfeiffer bottleneck adapters for PEFT."""

    kind = "bottleneck"


@dataclass
class ParallelPeftConfig(KitPeftConfig):
    """Multi-task parallel adapters: one per task, routed per example by ``task_ids``."""

    tasks: list[str] = field(default_factory=lambda: ["default"])
    scaling: float | str = 1.0  # chosen on validation, as for adapters (see MultiTaskParallelConfig)

    kind = "parallel"

    def __post_init__(self):
        super().__post_init__()
        self.tasks = list(check_tasks(self.tasks))
        check_scaling(self.scaling)


@dataclass
class HyperformerPeftConfig(KitPeftConfig):
    """Hyperformer++: adapters generated by a shared hypernetwork from task, layer and position embeddings."""

    reduction_factor: float = 32
    positions: list[str] = field(default_factory=lambda: list(POSITIONS))
    tasks: list[str] = field(default_factory=lambda: ["default"])
    task_embedding_dim: int = 64
    projector_hidden_dim: int = 128
    projected_dim: int = 8  # as HyperformerConfig (adapters), chosen on validation
    conditional_layer_norm: bool = True

    kind = "hyperformer"

    def __post_init__(self):
        super().__post_init__()
        self.tasks = list(check_tasks(self.tasks))
        for name in ("task_embedding_dim", "projector_hidden_dim", "projected_dim"):
            check_positive_int(name, getattr(self, name))


class KitAdapterLayer(nn.Module, BaseTunerLayer):
    """Wraps a sub-block's output projection and adds the active adapters' outputs to it."""

    adapter_layer_names = ("kit_adapters", "kit_scaling")

    def __init__(self, base_layer: nn.Module, block_input: nn.Module, layer_index: int, position: str):
        super().__init__()
        self.base_layer = base_layer
        self.kit_adapters = nn.ModuleDict()
        self.kit_configs: dict[str, KitPeftConfig] = {}
        self.kit_hypernets: dict[str, HyperNetwork] = {}  # references; the tuner model owns them
        self.kit_scaling = nn.ParameterDict()
        self.layer_index, self.position = layer_index, position
        self.merged_adapters = []
        self._block_input: torch.Tensor | None = None
        ref = weakref.ref(self)
        self._hook = block_input.register_forward_pre_hook(
            lambda module, args, kwargs: _stash(ref, args, kwargs), with_kwargs=True
        )

    def update_layer(self, adapter_name: str, config: KitPeftConfig, hidden_size: int, hypernet=None) -> None:
        size = config.bottleneck_size(hidden_size)
        if config.kind == "bottleneck":
            self.kit_adapters[adapter_name] = Bottleneck(hidden_size, size, config.non_linearity)
        elif config.kind == "parallel":
            self.kit_adapters[adapter_name] = MultiTaskBottleneck(
                len(config.tasks), hidden_size, size, config.non_linearity
            )
            if config.scaling == "learned":
                self.kit_scaling[adapter_name] = nn.Parameter(torch.ones(len(config.tasks)))
        else:
            self.kit_adapters[adapter_name] = nn.Identity()  # a slot: the weights live in the hypernetwork
            self.kit_hypernets[adapter_name] = hypernet
        self.kit_configs[adapter_name] = config
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        block_input, self._block_input = self._block_input, None
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name in self.kit_adapters:
                result = result + self._delta(name, x if block_input is None else block_input, result)
        return result

    def _delta(self, name: str, block_input: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        config = self.kit_configs[name]
        if config.kind == "bottleneck":
            return self.kit_adapters[name](output)
        routing = current_task_ids(config.tasks, output.shape[0], output.device)
        if config.kind == "parallel":
            delta = self.kit_adapters[name](block_input, routing)
            scale = self.kit_scaling[name][routing.ids].view(-1, 1, 1) if name in self.kit_scaling else config.scaling
            return delta * scale
        return self.kit_hypernets[name].adapter(output, self.layer_index, self.position, routing)

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        raise AdapterKitError(
            "`merge`: the kit's bottleneck, parallel and Hyperformer adapters have a non-linearity and cannot be "
            "merged into the base weights; use `unload()` to remove them."
        )

    def remove_hook(self) -> None:
        self._hook.remove()


def _stash(ref, args, kwargs) -> None:
    layer = ref()
    if layer is not None:
        layer._block_input = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


class KitTuner(BaseTuner):
    """The tuner model shared by the kit's PEFT methods (one subclass per PEFT type, as PEFT wants unique prefixes)."""

    prefix = "kit_"
    tuner_layer_cls = KitAdapterLayer
    target_module_mapping: dict = {}

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # The hypernetwork's keys hold the adapter name in the middle (kit_hypernets.<name>.<path>); PEFT's rule only
        # strips it from the end, and would strip a task embedding named like the adapter instead.
        marker = f".kit_hypernets.{adapter_name}."
        if marker in key:
            return key.replace(marker, ".kit_hypernets.", 1)
        return super()._remove_adapter_name_from_key(key, adapter_name)

    def _prepare_adapter_config(self, peft_config: KitPeftConfig, model_config: dict) -> KitPeftConfig:
        model_type = model_config.get("model_type")
        placement.check_model_type(model_type, peft_config.method)
        peft_config.target_modules = placement.target_pattern(model_type, peft_config.positions)
        return peft_config

    def _prepare_model(self, peft_config: KitPeftConfig, model: nn.Module) -> None:
        config = (
            model.config
        )  # an attribute object: GPT-2's n_embd / n_layer answer to hidden_size / num_hidden_layers
        self._kit_model_type = config.model_type
        self._kit_hidden_size = config.hidden_size
        peft_config.bottleneck_size(self._kit_hidden_size)  # refuse a reduction factor that leaves nothing
        if peft_config.kind == "hyperformer":
            if "kit_hypernets" not in self._modules:
                self.kit_hypernets = nn.ModuleDict()
            self.kit_hypernets[self._adapter_being_added(peft_config)] = HyperNetwork(
                hidden_size=self._kit_hidden_size,
                bottleneck_size=peft_config.bottleneck_size(self._kit_hidden_size),
                num_layers=config.num_hidden_layers,
                tasks=peft_config.tasks,
                positions=peft_config.positions,
                task_embedding_dim=peft_config.task_embedding_dim,
                projector_hidden_dim=peft_config.projector_hidden_dim,
                projected_dim=peft_config.projected_dim,
                conditional_layer_norm=peft_config.conditional_layer_norm,
                non_linearity=peft_config.non_linearity,
            ).to(next(model.parameters()).device)

    def _adapter_being_added(self, peft_config: KitPeftConfig) -> str:
        return next(name for name, config in self.peft_config.items() if config is peft_config)

    @staticmethod
    def _check_target_module_exists(peft_config: KitPeftConfig, key: str):
        import re

        return re.fullmatch(peft_config.target_modules, key) is not None

    def _create_and_replace(
        self, peft_config, adapter_name, target, target_name, parent, current_key, parameter_name=None
    ) -> None:
        layer_index, position, block_input_name = placement.locate(self._kit_model_type, current_key)
        hypernet = self.kit_hypernets[adapter_name] if peft_config.kind == "hyperformer" else None
        if not isinstance(target, KitAdapterLayer):
            block_input = self.model.get_submodule(block_input_name)
            new = KitAdapterLayer(target, block_input, layer_index, position)
            self._replace_module(parent, target_name, new, target)
            target = new
        target.update_layer(adapter_name, peft_config, self._kit_hidden_size, hypernet)

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        # PEFT's default copies `weight` onto a module without `base_layer`, which fails for a classifier head made of
        # several layers (RoBERTa's) when unloading; the kit's layers place their own weights (update_layer).
        setattr(parent, child_name, new_module)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        if "kit_hypernets" in self._modules and adapter_name in self.kit_hypernets:
            del self.kit_hypernets[adapter_name]
        for module in self.model.modules():
            if isinstance(module, KitAdapterLayer):
                module.kit_hypernets.pop(adapter_name, None)
                module.kit_configs.pop(adapter_name, None)

    def _unload_and_optionally_merge(self, merge=True, progressbar=False, safe_merge=False, adapter_names=None):
        if merge:
            KitAdapterLayer.merge(None)
        layers = [m for m in self.model.modules() if isinstance(m, KitAdapterLayer)]
        model = super()._unload_and_optionally_merge(False, progressbar, safe_merge, adapter_names)
        for layer in layers:
            layer.remove_hook()
        return model

    def add_task(self, name: str, adapter_name: str = "default") -> nn.Parameter:
        """Hyperformer++: add a task to a trained model; returns its embedding, the one parameter it needs to learn."""
        config = self.peft_config[adapter_name]
        if config.kind != "hyperformer":
            raise invalid(
                "adapter_name", adapter_name, "a Hyperformer adapter (only those learn tasks as embeddings)."
            )
        check_tasks([*config.tasks, name], argument="name")
        config.tasks.append(name)
        return self.kit_hypernets[adapter_name].add_task(name)


class BottleneckTuner(KitTuner):
    prefix = "kit_bottleneck_"


class ParallelTuner(KitTuner):
    prefix = "kit_parallel_"


class HyperformerTuner(KitTuner):
    prefix = "kit_hyperformer_"


CONFIGS = {"bottleneck": BottleneckPeftConfig, "parallel": ParallelPeftConfig, "hyperformer": HyperformerPeftConfig}
TUNERS = {"bottleneck": BottleneckTuner, "parallel": ParallelTuner, "hyperformer": HyperformerTuner}
