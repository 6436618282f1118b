"""The built-in methods, one folder each; importing this package registers each of them once.

A method folder holds its options, its layers, its PEFT tuner and its ``adapters`` glue, and ends with one
``register_method(MethodSpec(...))`` (``hf_adapter_kit/registry.py``), which connects it to PEFT, to ``adapters`` and
to the kit. ``common/`` holds what they share: option checks, task routing, placement per architecture, weight
initialisation and the PEFT tuner base. The order below is the order of ``compare``'s table.
"""

from . import full, head, bottleneck, parallel, lora, hyperformer  # noqa: F401, I001
