"""Writing an adapter folder: what the backend's library writes (so the library alone can load it), plus
``hf_adapter_kit.json`` and the model card. Saving writes into a temporary folder beside the target and renames it into
place (``atomic.py``), so an interrupted save never leaves a half-written adapter.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..atomic import normalize_modes, recover, replace_dir, staging_dir
from ..backends import get_backend
from ..backends.files import ADAPTER_CONFIG, KIT_FILE, TASK_HEADS_WEIGHTS
from ..errors import AdapterKitError, invalid
from .cards import write_card
from .meta import AdapterMeta, meta_of


# transformers (pipeline, AutoModel*.from_pretrained) takes any folder with an adapter_config.json for a PEFT adapter
# and loads ``base_model_name_or_path`` from it: an ``adapters`` folder has no such key (KeyError, no hint). The kit
# writes this text there, which transformers then names in its error ("Can't load the configuration of '...'").
# adapters itself ignores the key; the kit reads the base model from hf_adapter_kit.json.
PLAIN_LIBRARY_HINT = (
    "not a PEFT adapter: an hf_adapter_kit adapter in the AdapterHub `adapters` format, for the base model {base}. "
    "Run `import hf_adapter_kit` before transformers.pipeline (or use hf_adapter_kit.pipeline / from_pretrained), "
    "or load it with adapters: model.load_adapter(folder, use_safetensors=True)"
)


def check_output_dir(output_dir: str | os.PathLike, argument: str = "output_dir") -> Path:
    """``output_dir`` as a Path (``~`` expanded) once it is sure that it is, or can be made, a writable folder."""
    if not isinstance(output_dir, str | os.PathLike) or not str(output_dir).strip():
        raise invalid(argument, output_dir, "a folder path (it is created if missing).")
    path = Path(output_dir).expanduser()
    shown = str(output_dir)
    if path.is_dir():
        if not _writable(path):
            raise invalid(argument, shown, "a folder you can write to; this one is not writable.")
        return path
    if os.path.lexists(path):
        if path.is_symlink():
            raise invalid(argument, shown, f"a folder; it is a link to {os.readlink(path)!r}, which does not exist.")
        raise AdapterKitError(f"`{argument}`={shown!r} is a file: give a folder (it is created if missing).")
    existing = next(parent for parent in path.absolute().parents if os.path.lexists(parent))
    if not existing.is_dir():
        what = "a file" if existing.is_file() else "a link to nothing"
        raise invalid(argument, shown, f"a folder path; {str(existing)!r} in it is {what}, not a folder.")
    if not _writable(existing):
        raise invalid(argument, shown, f"a folder that can be created; {str(existing)!r} is not writable.")
    return path


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def save_adapter(
    model: torch.nn.Module, directory: str | os.PathLike, meta: AdapterMeta | None = None, *, merge: bool = False
) -> Path:
    """Write the adapter folder atomically: into a temporary sibling, then renamed over ``directory``.

    ``merge=True`` is for Trainer checkpoints, whose folder the adapter shares with the Trainer's own files and with
    every process's RNG state: the adapter's files are renamed into the folder one by one (each rename atomic) and
    the folder's other files stay. The Trainer writes that folder in a staging folder of its own, renamed into place
    once whole (``training/checkpoints.py``).

    Either way the staging folders that killed saves of ``directory`` left beside it go first (one writer per folder).
    """
    meta = meta or meta_of(model)
    target = check_output_dir(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target, clean=True)
    staging = staging_dir(target)  # folder and files get the modes os.makedirs / open give, not mkdtemp's 0700
    try:
        if meta.heads:  # a multi-task model: the library's adapter files for its encoder, and its task heads
            get_backend(meta.backend).save(model.encoder, staging, meta.adapter_name)
            heads = {key: value.detach().contiguous() for key, value in model.heads.state_dict().items()}
            save_file(heads, str(staging / TASK_HEADS_WEIGHTS))
        else:
            get_backend(meta.backend).save(model, staging, meta.adapter_name)
        _add_plain_library_hint(staging, meta)
        (staging / KIT_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n")
        write_card(staging, display_path=target, meta=meta)  # rendered from the metadata in memory
        normalize_modes(staging)
        if merge:
            target.mkdir(exist_ok=True)
            for path in staging.iterdir():  # the libraries write flat folders
                os.replace(path, target / path.name)
        else:
            replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _add_plain_library_hint(folder: Path, meta: AdapterMeta) -> None:
    """In an ``adapters`` adapter_config.json, the key transformers reads first carries a hint (PLAIN_LIBRARY_HINT)."""
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    if not isinstance(config, dict) or "peft_type" in config or "base_model_name_or_path" in config:
        return  # PEFT's own config: transformers and PEFT load it (the base model's id is its real value)
    config["base_model_name_or_path"] = PLAIN_LIBRARY_HINT.format(base=meta.base_model)
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def folder_size(directory: str | os.PathLike) -> int:
    """Bytes of all files in a folder (the adapter's size on disk and on the Hub)."""
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
