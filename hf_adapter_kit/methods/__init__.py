"""The built-in methods, one folder each; importing this package registers each of them once.

A method folder holds its options, its layers, its PEFT tuner and its ``adapters`` glue, and ends with one
``register_method(MethodSpec(...))`` (``hf_adapter_kit/registry.py``), which connects it to PEFT, to ``adapters`` and
to the kit. ``common/`` holds what they share: option checks, placement per architecture, weight initialisation,
batched matmuls and the PEFT tuner base. Every folder here is imported, in alphabetical order (the order of
``list_specs()`` and of ``compare``'s table): a new method is its folder, nothing to add here.
"""

import importlib
import pkgutil


SHARED = "common"  # what the methods share; not a method


def _import_every_method() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.ispkg and module.name != SHARED:
            importlib.import_module(f"{__name__}.{module.name}")


_import_every_method()
