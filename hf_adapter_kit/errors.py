"""The kit's one error class.

Every check on user input raises :class:`AdapterKitError`, which subclasses ``ValueError`` so that code written
against plain transformers/PEFT (``except ValueError``) keeps working. Messages name the argument, the bad value
and what is allowed, and are raised before anything is modified or written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class AdapterKitError(ValueError):
    """Bad input to hf_adapter_kit: the message says which argument, which value and what is allowed."""


def invalid(argument: str, value: Any, allowed: str) -> AdapterKitError:
    """Build the standard message: ``argument=value is not allowed; allowed: ...``."""
    return AdapterKitError(f"`{argument}`={value!r} is not valid: {allowed}")


def choices(argument: str, value: Any, allowed: Iterable[Any]) -> AdapterKitError:
    """Error for a value outside a fixed set of choices; lists them sorted."""
    options = ", ".join(repr(a) for a in sorted(allowed, key=str))
    return invalid(argument, value, f"expected one of {options}.")
