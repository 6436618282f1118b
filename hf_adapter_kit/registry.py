"""The one place that knows the methods: every other module reads this table.

Each method folder under ``hf_adapter_kit/methods/`` ends with one :func:`register_method` call; ``methods/``
imports every folder and the package imports ``methods``, so the table is full before anything reads it. It checks
that names are unique, maps every method to the config factory of each backend it runs on (``adapters``, ``peft``,
or ``transformers`` for the baselines, which add no module), and connects the kit's own methods to the libraries:
a :class:`PeftMethod` becomes a PEFT type (``get_peft_model``, ``PeftModel.from_pretrained``, ...) and an
:class:`AdaptersMethod` an ``adapters`` config string (``model.add_adapter(name, config="hyperformer")``), through the
one patch module per library (``hf_adapter_kit/patches/``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import AdapterKitError, choices
from .patches import adapters_methods, peft_methods


BACKENDS = ("adapters", "peft", "transformers")


@dataclass(frozen=True)
class PeftMethod:
    """A method PEFT lacks: its PEFT type name (a new ``PeftType`` member), config class and tuner class."""

    peft_type: str
    config_cls: type
    tuner_cls: type


@dataclass(frozen=True)
class AdaptersMethod:
    """A method ``adapters`` lacks, as a bottleneck-style adapter.

    ``config_name``: the string for ``add_adapter(config=...)``; ``architecture``: the config's ``architecture``
    field, which identifies saved configs; ``build_layer(adapter_name, config, layer_idx, location_key,
    model_config)``: the module for one adapter location; ``build_shared(config, model_config)``: weights shared by
    all layers (kept in ``model.base_model.shared_parameters[name]``), or ``None``.
    """

    config_name: str
    config_cls: type
    architecture: str
    build_layer: Callable[..., Any]
    build_shared: Callable[..., Any] | None = None


@dataclass(frozen=True)
class MethodSpec:
    """Everything the kit knows about one method; the rest of the kit reads these fields, never a list of names.

    ``configs`` maps a backend name to a factory ``(**overrides) -> config object of that backend``. ``multi_task``:
    one adapter serves several tasks, routed by ``task_ids``. ``recipe``: the folder under ``recipes/``.

    Capabilities (each read where it matters; ``tests/test_adding_a_method.py`` gives a toy method each one):

    - ``mergeable``: a linear update of the base weights (LoRA), so ``merge=True`` folds it into them;
    - ``whole_model``: trains and saves every weight (full fine-tuning): its card says ``finetune``, not ``adapter``;
    - ``generative``: trains a model that writes its answers (instruction tuning of a causal LM, text-to-text of an
      encoder-decoder); the head baseline trains a classification head, which such a model lacks;
    - ``keeps_float32``: on ``adapters`` with a half-precision base, its weights stay float32 and its modules cast
      their outputs (the kit's own modules); otherwise ``adapters`` casts them to the base's dtype, as its own
      modules need;
    - ``reads_foreign``: backend -> predicate over the ``adapter_config.json`` of a folder written by that library
      alone (no ``hf_adapter_kit.json``) that is this method (``folders/interop.py``);
    - ``add_task``: ``(model, task, adapter_name=...) -> the new task's parameter``, when tasks can be added to a
      trained adapter;
    - ``markers``: backend -> a fragment that every trainable adapter parameter's name holds (``{adapter_name}`` is
      filled in; unset on PEFT: ``kit_``), which the test matrix checks.
    """

    name: str
    summary: str
    configs: Mapping[str, Callable[..., Any]]
    default_backend: str
    learning_rate: float
    reference: str = ""
    aliases: tuple[str, ...] = field(default=())
    multi_task: bool = False
    peft: PeftMethod | None = None
    adapters: AdaptersMethod | None = None
    recipe: str = ""
    mergeable: bool = False
    whole_model: bool = False
    generative: bool = True
    keeps_float32: bool = False
    reads_foreign: Mapping[str, Callable[[Mapping[str, Any]], bool]] = field(default_factory=dict)
    add_task: Callable[..., Any] | None = None
    markers: Mapping[str, str] = field(default_factory=dict)

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

    def marker(self, backend: str, adapter_name: str) -> str:
        return self.markers.get(backend, "kit_").format(adapter_name=adapter_name)


_METHODS: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry and connect it to the libraries; a name or alias taken already is an error."""
    for name in (spec.name, *spec.aliases):
        if name in _METHODS or name in _ALIASES:
            raise AdapterKitError(f"A method named {name!r} is registered already; method names must be unique.")
    if spec.adapters is not None and any(
        s.adapters is not None and s.adapters.config_name == spec.adapters.config_name for s in _METHODS.values()
    ):
        raise AdapterKitError(f"The adapters config name {spec.adapters.config_name!r} is registered already.")
    if spec.peft is not None:
        peft_methods.register(spec.peft)
    if spec.adapters is not None:
        adapters_methods.register(spec.adapters)
    _METHODS[spec.name] = spec
    _ALIASES.update(dict.fromkeys(spec.aliases, spec.name))
    return spec


def unregister_method(name: str) -> None:
    """Forget a method (tests add toy methods); its library registrations stay, harmless without the kit's name."""
    spec = _METHODS.pop(name)
    for alias in spec.aliases:
        _ALIASES.pop(alias, None)


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(_METHODS)


def list_specs() -> list[MethodSpec]:
    """Every registered method, in registration order (the order of ``compare``'s table)."""
    return list(_METHODS.values())


def names_where(capability: Callable[[MethodSpec], bool]) -> list[str]:
    """The registered methods with a capability, e.g. ``names_where(lambda s: s.mergeable)``, for messages."""
    return [spec.name for spec in list_specs() if capability(spec)]


def multi_task_methods() -> tuple[str, ...]:
    return tuple(names_where(lambda spec: spec.multi_task))


def method_of_config(config: Any) -> MethodSpec | None:
    """The kit method a backend config object belongs to, when it is one of the kit's own (else ``None``)."""
    matches = [
        spec
        for spec in list_specs()
        if any(isinstance(config, m.config_cls) for m in (spec.peft, spec.adapters) if m is not None)
    ]
    named = [spec for spec in matches if spec.name == getattr(config, "method", None)]  # houlsby / pfeiffer
    return (named or matches or [None])[0]


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` for a method name or alias."""
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
