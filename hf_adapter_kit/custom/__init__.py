"""The kit's own adapter methods: computations (``layers``), task routing (``routing``), where they go in each
architecture (``placement``) and the glue that makes each library build them (``peft_tuner``, ``adapters_glue``).
The registration itself lives in ``hf_adapter_kit/patches/``; the registry entries in ``hf_adapter_kit/methods/``.
"""
