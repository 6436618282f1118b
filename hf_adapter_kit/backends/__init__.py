"""One backend per library: how a method's config is attached to a model, saved, loaded and removed."""

from __future__ import annotations

from .adapters_backend import AdaptersBackend
from .base import Backend
from .peft_backend import PeftBackend
from .transformers_backend import TransformersBackend


_BACKENDS: dict[str, Backend] = {b.name: b for b in (AdaptersBackend(), PeftBackend(), TransformersBackend())}


def get_backend(name: str) -> Backend:
    from ..errors import choices

    if name not in _BACKENDS:
        raise choices("backend", name, _BACKENDS)
    return _BACKENDS[name]


__all__ = ["Backend", "get_backend"]
