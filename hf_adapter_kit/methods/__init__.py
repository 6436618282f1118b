"""Built-in methods: importing this package registers each of them once (see ``hf_adapter_kit.registry``)."""

from . import baselines, bottleneck, hyperformer, lora, parallel  # noqa: F401
