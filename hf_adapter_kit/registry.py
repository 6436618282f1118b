"""The one place that knows the methods.

Each method module under ``hf_adapter_kit/methods/`` ends with a single :func:`register_method` call. The registry
checks that names are unique and maps every method to the config object of each backend it runs on:
``adapters`` (AdapterHub), ``peft`` (Hugging Face PEFT) or ``transformers`` (the baselines, which add no module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import AdapterKitError, choices


BACKENDS = ("adapters", "peft", "transformers")


@dataclass(frozen=True)
class MethodSpec:
    """What the kit knows about one method.

    ``configs`` maps a backend name to a factory ``(**overrides) -> config object of that backend``.
    """

    name: str
    summary: str
    configs: Mapping[str, Callable[..., Any]]
    default_backend: str
    learning_rate: float
    reference: str = ""
    aliases: tuple[str, ...] = field(default=())

    def __post_init__(self):
        unknown = set(self.configs) - set(BACKENDS)
        if unknown:
            raise AdapterKitError(f"Method {self.name!r} names unknown backends {sorted(unknown)}; known: {BACKENDS}.")
        if self.default_backend not in self.configs:
            raise AdapterKitError(
                f"Method {self.name!r}: default_backend={self.default_backend!r} has no config; "
                f"it has {sorted(self.configs)}."
            )

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self.configs)


_METHODS: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry; a name or alias that is taken already is an error."""
    for name in (spec.name, *spec.aliases):
        if name in _METHODS or name in _ALIASES:
            raise AdapterKitError(f"A method named {name!r} is registered already; method names must be unique.")
    _METHODS[spec.name] = spec
    _ALIASES.update(dict.fromkeys(spec.aliases, spec.name))
    return spec


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _ensure_loaded()
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` for a method name or alias."""
    _ensure_loaded()
    key = _ALIASES.get(name, name)
    if key not in _METHODS:
        raise choices("method", name, [*_METHODS, *_ALIASES])
    return _METHODS[key]


def resolve_backend(method: str, backend: str | None) -> tuple[MethodSpec, str]:
    """Pick the backend for a method: the one asked for (checked), else the method's default."""
    spec = get_method(method)
    if backend is None:
        return spec, spec.default_backend
    if backend not in BACKENDS:
        raise choices("backend", backend, BACKENDS)
    if backend not in spec.configs:
        raise AdapterKitError(
            f"`backend`={backend!r} is not available for method {spec.name!r}; it runs on: {', '.join(spec.backends)}."
        )
    return spec, backend


def get_config(name: str, backend: str | None = None, **overrides: Any) -> Any:
    """The backend's own config object for a method, e.g. ``adapters.SeqBnConfig`` or ``peft.LoraConfig``.

    >>> get_config("pfeiffer", backend="adapters", reduction_factor=8)  # doctest: +SKIP
    """
    spec, backend = resolve_backend(name, backend)
    return spec.configs[backend](**overrides)


def build_dataclass(cls: type, method: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> Any:
    """Instantiate a (library) config dataclass, refusing keys it does not have with the list of allowed ones."""
    allowed = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise AdapterKitError(
            f"Unknown option(s) {unknown} for method {method!r} ({cls.__module__}.{cls.__name__}); "
            f"allowed: {', '.join(sorted(allowed))}."
        )
    return cls(**{**defaults, **overrides})


def check_positive(method: str, values: Mapping[str, Any], *names: str) -> None:
    """Common option checks: each named option, when present, must be a positive number (or a dict of them)."""
    for name in names:
        if name not in values:
            continue
        value = values[name]
        items = value.values() if isinstance(value, Mapping) else [value]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in items):
            raise AdapterKitError(f"`{name}`={value!r} is not valid for method {method!r}: it must be positive.")


def check_fraction(method: str, values: Mapping[str, Any], name: str) -> None:
    """A dropout-like option must be a number in [0, 1)."""
    if name in values:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise AdapterKitError(f"`{name}`={value!r} is not valid for method {method!r}: expected 0 <= {name} < 1.")


def _ensure_loaded() -> None:
    # The built-in methods register themselves on import; importing here keeps `registry` free of cycles.
    from . import methods  # noqa: F401
