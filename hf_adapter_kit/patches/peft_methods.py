"""Connect the kit's methods to PEFT and route ``task_ids`` to them.

Written against peft 0.21.2. What it changes, and why:

1. ``peft.utils.peft_types.PeftType`` gains one member per kit method that PEFT lacks (``HF_ADAPTER_KIT_BOTTLENECK``,
   ``HF_ADAPTER_KIT_PARALLEL``, ``HF_ADAPTER_KIT_HYPERFORMER``; the registry's ``PeftMethod`` rows). PEFT's
   ``register_peft_method`` refuses any name not already in that enum, and Python enums cannot be extended through
   their API, so the member is added to the enum's own tables. Then ``register_peft_method`` (PEFT's public API) maps
   the type to its config and tuner classes, which makes ``get_peft_model``, ``inject_adapter_in_model``,
   ``save_pretrained``, ``PeftConfig.from_pretrained`` and ``PeftModel.from_pretrained`` work.
2. ``forward`` and ``generate`` of ``PeftModel`` and its task classes take ``task_ids=``; PEFT hands them to the base
   model only for its POLY method and drops them otherwise. Wrapped (``WRAPPED``): ``PeftModel.forward``,
   ``PeftModelForSequenceClassification.forward``, ``PeftModelForTokenClassification.forward``,
   ``PeftModelForCausalLM.forward``, ``PeftModelForFeatureExtraction.forward``,
   ``PeftModelForQuestionAnswering.forward``, ``PeftModelForSeq2SeqLM.forward``, ``PeftModelForCausalLM.generate``
   and ``PeftModelForSeq2SeqLM.generate``. For an active kit adapter the wrapper below sets them
   as the call's task context (:func:`hf_adapter_kit.routing.task_context`; in ``generate`` ids per
   prompt also cover its beams) instead; a call without them keeps the context it runs in; for every other adapter
   the call is passed on unchanged.

Those nine are what the import replaces in PEFT (``CHANGES``, which ``tests/test_import_side_effects.py`` compares
with what an import really changes); patch 1 adds to PEFT's tables and replaces nothing.

``tests/test_patches_methods.py`` fails when the installed PEFT is not 0.21.x or these entry points change shape.
"""

from __future__ import annotations

import functools

import peft
from peft import peft_model
from peft.utils import register_peft_method
from peft.utils.peft_types import PeftType

from ..routing import task_context


WRITTEN_AGAINST = "0.21"
WRAPPED = {
    "forward": (
        "PeftModel",
        "PeftModelForSequenceClassification",
        "PeftModelForTokenClassification",
        "PeftModelForCausalLM",
        "PeftModelForFeatureExtraction",
        "PeftModelForQuestionAnswering",
        "PeftModelForSeq2SeqLM",
    ),
    "generate": ("PeftModelForCausalLM", "PeftModelForSeq2SeqLM"),
}
CHANGES = tuple(f"peft.peft_model.{name}.{attribute}" for attribute, names in WRAPPED.items() for name in names)
KIT_TYPES: set[str] = set()


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


def _route_task_ids(method, expand: bool):
    @functools.wraps(method)
    def patched(self, *args, task_ids=None, **kwargs):
        # a call without task_ids keeps the task context around it (hf_adapter_kit.task_context)
        if task_ids is not None and getattr(self.active_peft_config, "peft_type", None) in KIT_TYPES:
            with task_context(task_ids, expand=expand):
                return method(self, *args, **kwargs)
        if task_ids is not None:
            kwargs["task_ids"] = task_ids
        return method(self, *args, **kwargs)

    patched.__kit_patched__ = True
    return patched


def apply() -> None:
    """Wrap ``forward`` / ``generate`` once (idempotent)."""
    for attribute, classes in WRAPPED.items():
        for name in classes:
            cls = getattr(peft_model, name)
            method = cls.__dict__.get(attribute)
            if method is not None and not getattr(method, "__kit_patched__", False):
                setattr(cls, attribute, _route_task_ids(method, expand=attribute == "generate"))


def register(method) -> None:
    """Make a registry ``PeftMethod`` a PEFT type (idempotent)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    apply()
    _add_enum_member(PeftType, method.peft_type)
    KIT_TYPES.add(method.peft_type)
    if getattr(PeftType, method.peft_type) not in PEFT_TYPE_TO_CONFIG_MAPPING:
        register_peft_method(
            name=method.peft_type.lower(),
            config_cls=method.config_cls,
            model_cls=method.tuner_cls,
            prefix=method.tuner_cls.prefix,
        )


__all__ = ["CHANGES", "KIT_TYPES", "WRITTEN_AGAINST", "apply", "peft", "register"]
