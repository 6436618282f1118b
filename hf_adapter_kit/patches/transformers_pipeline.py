"""``transformers.pipeline(task, model=<hf_adapter_kit adapter>)`` with the adapter's labels and head.

Written against transformers 4.57.6. Why: for a PEFT adapter folder or repo, ``transformers.pipelines.pipeline``
builds the model config from ``base_model_name_or_path`` (PEFT folders carry no label map), so it answers
``LABEL_0``/``LABEL_1``, cannot size a head with more than two labels, and offline cannot find the embedded base by
its Hub id. ``adapters`` folders it cannot load at all.

What it changes: ``transformers.pipeline`` (and ``transformers.pipelines.pipeline``) becomes a wrapper that, for the
text-classification, token-classification and text-generation tasks and a ``model`` given as a string naming an adapter saved by
hf_adapter_kit (a local folder holding ``hf_adapter_kit.json``, or a Hub repo holding it) or as a kit
``MultiTaskModel``, returns ``hf_adapter_kit.pipeline(...)``: a standard transformers pipeline over the base model
with the adapter attached (for a multi-task adapter, :mod:`hf_adapter_kit.pipelines`, which takes ``task_ids=``).
The call's other keyword arguments (``device``, ``top_k``, ``aggregation_strategy``, ``batch_size``...) go with it;
``tokenizer``, ``revision`` and ``token`` are used to load. Every other call goes to transformers unchanged. For a
Hub id the wrapper first asks for ``hf_adapter_kit.json`` (one request; none when offline).
Code that ran ``from transformers import pipeline`` before importing hf_adapter_kit keeps the original function.
A training run's output folder (its adapter in ``adapter/``) also goes to the kit, whose error names that folder.

Without the import, transformers takes an ``adapters``-format folder for a PEFT one and reads
``base_model_name_or_path`` from its adapter_config.json; the kit writes a hint there (``saving.PLAIN_LIBRARY_HINT``)
that transformers repeats in its error. PEFT-format folders load in plain transformers with generic labels.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import transformers
import transformers.pipelines

from ..modeling import PIPELINES


WRITTEN_AGAINST = "4.57"
TASKS = {None, *(task for tasks in PIPELINES.values() for task in tasks)}  # the pipelines kit adapters serve
_original = transformers.pipelines.pipeline


def _is_kit_adapter(model: str, revision: str | None, token: Any) -> bool:
    from ..modeling import looks_like_path
    from ..saving import KIT_FILE

    path = Path(model)
    if path.is_dir():
        return (path / KIT_FILE).is_file() or (path / "adapter" / KIT_FILE).is_file()
    if path.exists() or looks_like_path(model):
        return False
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        hf_hub_download(model, KIT_FILE, revision=revision, token=token)
    except (HfHubHTTPError, HFValidationError, OSError, ValueError):
        return False
    return True


@functools.wraps(_original)
def pipeline(task: str | None = None, model: Any = None, *args: Any, **kwargs: Any):
    if task in TASKS and not args and _is_kit_model(model, kwargs.get("revision"), kwargs.get("token")):
        from ..inference import pipeline as kit_pipeline

        return kit_pipeline(task, model=model, **kwargs)
    return _original(task, model, *args, **kwargs)


def _is_kit_model(model: Any, revision: str | None, token: Any) -> bool:
    if isinstance(model, str):
        return _is_kit_adapter(model, revision, token)
    from ..multitask import MultiTaskModel

    return isinstance(model, MultiTaskModel)


pipeline.hf_adapter_kit_patch = True


def apply() -> None:
    transformers.pipelines.pipeline = pipeline
    transformers.pipeline = pipeline
