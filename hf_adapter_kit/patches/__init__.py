"""Patches to other libraries: one module per library, each naming the version it was written against and why.

Each is covered by ``tests/test_patches.py`` (transformers) or ``tests/test_patches_methods.py`` (PEFT, adapters, the
Trainer), which fail loudly when the library changes under the patch.
"""
