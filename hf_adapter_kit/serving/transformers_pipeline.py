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

Deciding adds no request to those transformers makes, but in the two cases named last below. A local folder is looked at on disk. For a Hub id, the
wrapper makes the two requests transformers' own ``pipeline`` starts with, as it makes them (``config.json``, whose
answer gives the commit, then ``adapter_config.json``; an error there is the one transformers would raise), decides
from what they bring, and hands transformers the commit (``_commit_hash``), so that transformers reads both files from
the cache instead of asking again; from there on transformers makes its own requests. The kit's are:

- a PEFT adapter config of a kit method's PEFT type (``HF_ADAPTER_KIT_...``), or an ``adapters`` config carrying the
  kit's hint (below): decided from that file alone;
- a PEFT adapter config of a type a kit method shares with PEFT (LoRA: its spec's ``reads_foreign``): one more
  request, ``hf_adapter_kit.json``, which tells a kit adapter from any other LoRA adapter (an absent file is cached
  as absent at that commit, so asking again costs nothing); PEFT's LoRA config has no field that could say so
  (PEFT warns about a key it does not know);
- a repo with neither ``config.json`` nor ``adapter_config.json``, which transformers cannot load (the kit's head
  baseline): that one request too, on the way to transformers' error when it is not the kit's.

Offline, nothing is asked and a Hub id goes to transformers. Code that ran ``from transformers import pipeline``
before importing hf_adapter_kit keeps the original function. A fully fine-tuned kit repo (``config.json`` and
``model.safetensors``, no tokenizer) goes to transformers like any model: give ``tokenizer=`` or use
``hf_adapter_kit.pipeline``.

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

from ..backends.files import KIT_FILE, WHOLE_MODEL_MARKER
from ..folders.save import PLAIN_LIBRARY_HINT
from ..kinds import SERVED_PIPELINES
from ..modeling import looks_like_path
from ..multitask import MultiTaskModel
from ..registry import list_specs
from .pipeline import original_pipeline
from .pipeline import pipeline as kit_pipeline


WRITTEN_AGAINST = "4.57"
TASKS = {None, *SERVED_PIPELINES}
CHANGES = ("transformers.pipeline", "transformers.pipelines.pipeline")  # what apply() replaces
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
                kwargs["_commit_hash"] = commit  # what transformers asks first is in the cache at this commit
    return original_pipeline(task, model, *args, **kwargs)


pipeline.hf_adapter_kit_patch = True


def _is_kit_adapter(model: str, kwargs: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether ``model`` is a kit adapter, and the commit at which its Hub files were read (``None``: none read)."""
    path = Path(model)
    if path.is_dir():
        return (path / KIT_FILE).is_file() or (path / "adapter" / KIT_FILE).is_file(), None
    model_kwargs = kwargs.get("model_kwargs") or {}
    if (
        path.exists()
        or looks_like_path(model)
        or constants.HF_HUB_OFFLINE
        or kwargs.get("_commit_hash") is not None
        or "use_auth_token" in model_kwargs  # transformers' older spelling of `token`: left to transformers
    ):
        return False, None
    hub = {"revision": kwargs.get("revision"), "token": kwargs.get("token")}
    # transformers.pipeline's first two requests, with its arguments (find_adapter_config_file gets no cache_dir)
    config = cached_file(
        model,
        CONFIG_NAME,
        _raise_exceptions_for_gated_repo=False,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        cache_dir=model_kwargs.get("cache_dir"),
        **hub,
    )
    commit = extract_commit_hash(config, None)
    if _marks_whole_model(config):  # a model the kit fine-tuned whole: its config.json says so
        return True, commit
    adapter_config = find_adapter_config_file(model, _commit_hash=commit, **hub)
    if adapter_config is None:
        if config is None and "gguf_file" not in model_kwargs:  # nothing transformers can load: the kit's head?
            return _holds_kit_file(model, None, hub), None
        return False, commit
    commit = commit or extract_commit_hash(adapter_config, None)
    try:
        adapter = json.loads(Path(adapter_config).read_text())
    except (OSError, ValueError):  # transformers reads it next, and says what is wrong
        return False, commit
    if not isinstance(adapter, dict):
        return False, commit
    if any(spec.peft is not None and spec.peft.peft_type == adapter.get("peft_type") for spec in list_specs()):
        return True, commit
    if str(adapter.get("base_model_name_or_path", "")).startswith(_ADAPTERS_HINT):
        return True, commit
    if any(spec.reads_foreign.get("peft", _never)(adapter) for spec in list_specs()):
        return _holds_kit_file(model, commit, hub), commit  # a LoRA adapter: the kit's only with hf_adapter_kit.json
    return False, commit


def _holds_kit_file(model: str, commit: str | None, hub: dict[str, Any]) -> bool:
    try:
        found = cached_file(
            model,
            KIT_FILE,
            _commit_hash=commit,
            _raise_exceptions_for_gated_repo=False,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub,
        )
    except (OSError, ValueError):
        return False
    return found is not None


def _marks_whole_model(config_file: str | None) -> bool:
    try:
        return config_file is not None and json.loads(Path(config_file).read_text()).get(WHOLE_MODEL_MARKER) is True
    except (OSError, ValueError, AttributeError):  # transformers reads it next, and says what is wrong
        return False


def _never(config: dict) -> bool:
    return False


def apply() -> None:
    transformers.pipelines.pipeline = pipeline
    transformers.pipeline = pipeline


__all__ = ["CHANGES", "WRITTEN_AGAINST", "apply", "pipeline"]
