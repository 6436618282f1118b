"""``transformers.pipeline(task, model=<hf_adapter_kit adapter>)`` with the adapter's labels and head.

Written against transformers 4.57.6. Why: for a PEFT adapter folder or repo, ``transformers.pipelines.pipeline``
builds the model config from ``base_model_name_or_path`` (PEFT folders carry no label map), so it answers
``LABEL_0``/``LABEL_1``, cannot size a head with more than two labels, and offline cannot find the embedded base by
its Hub id. ``adapters`` folders it cannot load at all. transformers has no extension point for this (its
``PIPELINE_REGISTRY`` adds tasks, not model loaders), so the function is wrapped.

What it changes: ``transformers.pipeline`` (and ``transformers.pipelines.pipeline``) becomes a wrapper that, for the
tasks kit adapters serve (``kinds.SERVED_PIPELINES``) and a ``model`` naming an adapter saved by hf_adapter_kit (a
local folder holding ``hf_adapter_kit.json``, a Hub repo holding it) or a kit ``MultiTaskModel``, returns
``hf_adapter_kit.pipeline(...)``: a standard transformers pipeline over the base model with the adapter attached.
The call's other keyword arguments (``device``, ``top_k``, ``aggregation_strategy``, ``batch_size``...) go with it.
Every other call goes to transformers unchanged.

Deciding costs no request transformers would not make: a local folder is looked at on disk; for a Hub id, the
wrapper makes the two requests transformers' own ``pipeline`` starts with (``config.json`` for the commit, then
``adapter_config.json``) and hands transformers the commit, so that it reads both from the cache instead of asking
again. Only for a repo that holds a PEFT adapter config that is not visibly the kit's does it ask one more file,
``hf_adapter_kit.json``. Offline, nothing is asked and a Hub id goes to transformers. Code that ran
``from transformers import pipeline`` before importing hf_adapter_kit keeps the original function.

Without the import, transformers takes an ``adapters``-format folder for a PEFT one and reads
``base_model_name_or_path`` from its adapter_config.json; the kit writes a hint there (``folders.PLAIN_LIBRARY_HINT``)
that transformers repeats in its error. PEFT-format folders load in plain transformers with generic labels.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import transformers
import transformers.pipelines
from huggingface_hub import constants
from transformers.utils import CONFIG_NAME, cached_file, extract_commit_hash, find_adapter_config_file

from ..backends.files import KIT_FILE
from ..folders.save import PLAIN_LIBRARY_HINT
from ..kinds import SERVED_PIPELINES
from ..modeling import looks_like_path
from ..multitask import MultiTaskModel
from .pipeline import original_pipeline
from .pipeline import pipeline as kit_pipeline


WRITTEN_AGAINST = "4.57"
TASKS = {None, *SERVED_PIPELINES}
KIT_PEFT_TYPE_PREFIX = "HF_ADAPTER_KIT_"  # the PEFT types of the kit's own methods (patches/peft_methods.py)
_ADAPTERS_HINT = PLAIN_LIBRARY_HINT.split("{", 1)[0]  # what an `adapters` folder written by the kit says


@functools.wraps(original_pipeline)
def pipeline(task: str | None = None, model: Any = None, *args: Any, **kwargs: Any):
    if task in TASKS and not args and kwargs.get("config") is None:
        if isinstance(model, MultiTaskModel):
            return kit_pipeline(task, model=model, **kwargs)
        if isinstance(model, str | Path):
            is_kit, commit = _is_kit_adapter(str(model), kwargs)
            if is_kit:
                return kit_pipeline(task, model=model, **kwargs)
            if commit is not None:
                kwargs["_commit_hash"] = commit  # what transformers asked for is in the cache now
    return original_pipeline(task, model, *args, **kwargs)


pipeline.hf_adapter_kit_patch = True


def _is_kit_adapter(model: str, kwargs: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether ``model`` is a kit adapter, and the Hub commit the answer was read at (``None`` for a local folder)."""
    path = Path(model)
    if path.is_dir():
        return (path / KIT_FILE).is_file() or (path / "adapter" / KIT_FILE).is_file(), None
    if path.exists() or looks_like_path(model) or constants.HF_HUB_OFFLINE or kwargs.get("_commit_hash"):
        return False, None
    hub = {"revision": kwargs.get("revision"), "token": kwargs.get("token")}
    cache_dir = (kwargs.get("model_kwargs") or {}).get("cache_dir")
    try:  # transformers.pipeline's first two requests, as it makes them
        config = cached_file(
            model,
            CONFIG_NAME,
            cache_dir=cache_dir,
            _raise_exceptions_for_gated_repo=False,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub,
        )
        commit = extract_commit_hash(config, None)
        adapter_config = find_adapter_config_file(model, _commit_hash=commit, cache_dir=cache_dir, **hub)
    except (OSError, ValueError):  # transformers will say what is wrong, with its own message
        return False, None
    if adapter_config is None:
        return False, commit
    commit = commit or extract_commit_hash(adapter_config, None)
    try:
        adapter = json.loads(Path(adapter_config).read_text())
    except (OSError, ValueError):
        return False, commit
    if str(adapter.get("peft_type", "")).startswith(KIT_PEFT_TYPE_PREFIX):
        return True, commit
    if str(adapter.get("base_model_name_or_path", "")).startswith(_ADAPTERS_HINT):
        return True, commit
    try:  # a PEFT adapter of a method PEFT has (LoRA): the kit's, if the repo holds hf_adapter_kit.json
        kit_file = cached_file(
            model,
            KIT_FILE,
            _commit_hash=commit,
            cache_dir=cache_dir,
            _raise_exceptions_for_missing_entries=False,
            **hub,
        )
    except (OSError, ValueError):
        return False, commit
    return kit_file is not None, commit


def apply() -> None:
    transformers.pipelines.pipeline = pipeline
    transformers.pipeline = pipeline


__all__ = ["WRITTEN_AGAINST", "apply", "pipeline"]
