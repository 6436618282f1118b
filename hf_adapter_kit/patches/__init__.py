"""Patches to other libraries: one module per library, each naming the version it was written against and why.

Each is covered by ``tests/test_patches.py``, which fails loudly when the library changes under the patch.
"""
