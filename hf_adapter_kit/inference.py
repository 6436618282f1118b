"""Serving: a standard ``transformers`` pipeline with a kit adapter attached and active."""

from __future__ import annotations

import os
from typing import Any

import torch
import transformers

from .backends import get_backend
from .errors import choices, invalid
from .hub import resolve_adapter
from .modeling import load_tokenizer
from .patches.transformers_pipeline import _original
from .saving import load_folder, meta_of


SUPPORTED_PIPELINES = ("text-classification", "sentiment-analysis")
# transformers' own function, also once the kit's patch (patches/transformers_pipeline.py) has replaced it.
_transformers_pipeline = _original


def pipeline(
    task: str = "text-classification",
    model: str | os.PathLike | torch.nn.Module | None = None,
    tokenizer: Any = None,
    *,
    revision: str | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> transformers.Pipeline:
    """``transformers.pipeline`` over an adapter folder (or a model the kit loaded or trained).

    ``adapters`` has no pipeline support of its own and transformers warns on a ``PeftModel``; the pipeline gets
    the transformers model underneath, in which the adapter layers are attached and active.
    """
    if task not in SUPPORTED_PIPELINES:
        raise choices("task", task, SUPPORTED_PIPELINES)
    if model is None:
        raise invalid(
            "model",
            None,
            "an adapter folder, a Hub repo id, or a model from hf_adapter_kit.from_pretrained or train(...).model.",
        )
    if isinstance(model, str | os.PathLike):
        model = load_folder(resolve_adapter(model, revision=revision, token=token, argument="model"))
    meta = meta_of(model)
    tokenizer = tokenizer or load_tokenizer(meta.base_model)
    base = get_backend(meta.backend).base_model(model)
    return _transformers_pipeline(task, model=base.eval(), tokenizer=tokenizer, **kwargs)
