"""Patches to other libraries: one module per library, each naming the version it was written against, what it
replaces (``CHANGES``) and why.

``adapters_methods.py`` and ``peft_methods.py`` connect the kit's methods to ``adapters`` and PEFT where they have no
extension point for them, and are applied by ``import hf_adapter_kit`` (with the ``transformers.pipeline`` wrapper,
``serving/transformers_pipeline.py``). ``adapters_speedups.py`` changes ``adapters``' own code for every model, so it
is applied only on request (``hf_adapter_kit.speed_up_adapters()``). ``tests/test_patches_methods.py`` (PEFT,
``adapters``, the Trainer) and ``tests/test_patches.py`` (transformers) fail loudly when a library changes under a
patch; ``tests/test_import_side_effects.py`` checks that the import changes exactly what ``CHANGES`` lists.
"""
