"""Base models and tokenizers, offline-first (``base.py``), and gradient checkpointing that trains adapters
(``checkpointing.py``)."""

from .base import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    encoder_of,
    head_prefixes,
    is_embedded,
    lm_head_only,
    load_base_model,
    load_config,
    load_tokenizer,
    looks_like_path,
    resolve_model_path,
)


__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "encoder_of",
    "head_prefixes",
    "is_embedded",
    "lm_head_only",
    "load_base_model",
    "load_config",
    "load_tokenizer",
    "looks_like_path",
    "resolve_model_path",
]
