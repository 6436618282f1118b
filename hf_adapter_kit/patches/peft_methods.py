"""Register the kit's methods with PEFT and route ``task_ids`` to them.

Written against peft 0.21.2. What it changes, and why:

1. ``peft.utils.peft_types.PeftType`` gains three members, ``HF_ADAPTER_KIT_BOTTLENECK``, ``HF_ADAPTER_KIT_PARALLEL``
   and ``HF_ADAPTER_KIT_HYPERFORMER``. PEFT's ``register_peft_method`` refuses any name that is not already in that
   enum, and Python enums cannot be extended through their API, so the members are added to the enum's own tables.
   Then ``register_peft_method`` (PEFT's public API) maps each type to its config and tuner classes, which makes
   ``get_peft_model``, ``save_pretrained``, ``PeftConfig.from_pretrained`` and ``PeftModel.from_pretrained`` work.
2. The ``forward`` of ``PeftModel`` and of its task classes take ``task_ids=``; PEFT hands them to the base model only
   for its POLY method and drops them otherwise. For an active kit adapter the wrapper below sets them as the
   forward pass's task context (:func:`hf_adapter_kit.custom.routing.task_context`) instead; for every other
   adapter the call is passed on unchanged.

``tests/test_patches_methods.py`` fails when the installed PEFT is not 0.21.x or these entry points change shape.
"""

from __future__ import annotations

import functools

import peft
from peft import peft_model
from peft.utils import register_peft_method
from peft.utils.peft_types import PeftType

from ..custom.peft_tuner import CONFIGS, PEFT_TYPES, TUNERS
from ..custom.routing import task_context


WRITTEN_AGAINST = "0.21"
FORWARD_CLASSES = (
    "PeftModel",
    "PeftModelForSequenceClassification",
    "PeftModelForTokenClassification",
    "PeftModelForCausalLM",
    "PeftModelForFeatureExtraction",
    "PeftModelForQuestionAnswering",
)
KIT_TYPES = frozenset(PEFT_TYPES.values())


def _add_enum_member(enum_cls, name: str) -> None:
    if name in enum_cls.__members__:
        return
    member = str.__new__(enum_cls, name)
    member._name_, member._value_ = name, name
    member.__objclass__ = enum_cls
    enum_cls._member_map_[name] = member
    enum_cls._value2member_map_[name] = member
    enum_cls._member_names_.append(name)
    type.__setattr__(enum_cls, name, member)


def _route_task_ids(forward):
    @functools.wraps(forward)
    def patched(self, *args, task_ids=None, **kwargs):
        if getattr(self.active_peft_config, "peft_type", None) in KIT_TYPES:
            with task_context(task_ids):
                return forward(self, *args, **kwargs)
        if task_ids is not None:
            kwargs["task_ids"] = task_ids
        return forward(self, *args, **kwargs)

    patched.__kit_patched__ = True
    return patched


def apply() -> None:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    for kind, type_name in PEFT_TYPES.items():
        _add_enum_member(PeftType, type_name)
        if getattr(PeftType, type_name) not in PEFT_TYPE_TO_CONFIG_MAPPING:
            register_peft_method(
                name=type_name.lower(), config_cls=CONFIGS[kind], model_cls=TUNERS[kind], prefix=TUNERS[kind].prefix
            )
    for name in FORWARD_CLASSES:
        cls = getattr(peft_model, name)
        if not getattr(cls.__dict__.get("forward"), "__kit_patched__", False):
            cls.forward = _route_task_ids(cls.__dict__["forward"])


__all__ = ["WRITTEN_AGAINST", "apply", "peft"]
