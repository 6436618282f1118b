"""The option checks every method's config runs in ``__post_init__``: one rule per kind of value.

Each check raises :class:`~hf_adapter_kit.errors.AdapterKitError` naming the option, the value and what is allowed,
before anything is built. ``build_config`` refuses options a config does not have, with the list of those it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import AdapterKitError, invalid  # noqa: F401  (invalid: re-exported for the configs)
from ...routing import check_tasks as tasks  # noqa: F401  (re-exported: the configs check their task lists)


POSITIONS = ("attention", "ffn")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive(name: str, value: Any) -> None:
    """A number > 0, or (``adapters``' per-layer form) a mapping whose values all are."""
    items = value.values() if isinstance(value, Mapping) else [value]
    if not items or not all(_is_number(v) and v > 0 for v in items):
        raise invalid(name, value, "a number > 0.")


def positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise invalid(name, value, "an integer > 0.")


def fraction(name: str, value: Any) -> None:
    """A dropout-like probability: 0 <= value < 1."""
    if not _is_number(value) or not 0 <= value < 1:
        raise invalid(name, value, f"a number with 0 <= {name} < 1.")


def activation(name: str, value: Any, extra: Sequence[str] = ()) -> None:
    """A transformers activation name (``ACT2FN``), matched case-insensitively as ``adapters`` does."""
    from transformers.activations import ACT2FN

    allowed = {*ACT2FN, *extra}
    if not isinstance(value, str) or value.lower() not in allowed:
        raise invalid(name, value, f"one of {', '.join(sorted(allowed))}.")


def positions(value: Any) -> list[str]:
    if isinstance(value, str) or not value or any(p not in POSITIONS for p in value) or len(set(value)) != len(value):
        raise invalid("positions", value, f"a non-empty list of distinct positions from {list(POSITIONS)}.")
    return list(value)


def scaling(value: Any) -> None:
    if value != "learned" and not _is_number(value):
        raise invalid("scaling", value, "a number, or 'learned' for a learned scale per task.")


def one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise invalid(name, value, f"one of {', '.join(repr(a) for a in allowed)}.")


def seed(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise invalid(name, value, "None or an integer seed.")


class MissingReductionFactor(AdapterKitError, KeyError):
    """``adapters`` raises ``KeyError`` for a per-layer factor mapping without the layer or a default; so does the kit,
    with its own message (the class is both)."""


def bottleneck_size(reduction_factor: Any, hidden_size: int, layer_idx: int | None = None) -> int:
    """The one rule for every bottleneck of every method and backend: ``hidden_size // reduction_factor``, refused
    when that leaves nothing. A mapping (``adapters``' per-layer form) gives the layer's own factor, or its
    ``"default"``; with ``layer_idx=None`` every factor it holds is checked."""
    if isinstance(reduction_factor, Mapping):
        if layer_idx is None:
            return min(bottleneck_size(f, hidden_size) for f in reduction_factor.values())
        key = str(layer_idx) if str(layer_idx) in reduction_factor else "default"
        if key not in reduction_factor:
            raise MissingReductionFactor(
                f"`reduction_factor`={dict(reduction_factor)!r} is not valid: it names no factor for layer {layer_idx} "
                "and no 'default'; give every layer or a 'default' key, as adapters requires."
            )
        return bottleneck_size(reduction_factor[key], hidden_size)
    size = int(hidden_size // reduction_factor)
    if size < 1:
        raise invalid(
            "reduction_factor",
            reduction_factor,
            f"at most the hidden size {hidden_size}: hidden_size // reduction_factor must leave a bottleneck of 1 or more.",
        )
    return size


def factory(cls: type, method: str, /, **defaults: Any):
    """A registry config factory: ``(**options) -> cls(**defaults, **options)``, unknown options refused."""
    return lambda **options: build_config(cls, method, defaults, options)


def build_config(cls: type, method: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> Any:
    """Instantiate a config dataclass, refusing keys it does not have with the list of allowed ones."""
    allowed = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise AdapterKitError(
            f"Unknown option(s) {unknown} for method {method!r} ({cls.__module__}.{cls.__name__}); "
            f"allowed: {', '.join(sorted(allowed))}."
        )
    return cls(**{**defaults, **overrides})
