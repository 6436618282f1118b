"""Saving and loading a trained adapter folder.

A folder is what the backend's library writes (so the library alone can load it) plus ``hf_adapter_kit.json``:
the method, backend, base model id, label names and the metrics it was trained to. Saving writes into a temporary
folder beside the target and renames it into place, so an interrupted save never leaves a half-written adapter.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from . import __version__
from .atomic import normalize_modes, recover, replace_dir, staging_dir
from .backends import get_backend
from .errors import AdapterKitError, invalid
from .modeling import AUTO_CLASSES, load_base_model


KIT_FILE = "hf_adapter_kit.json"
KINDS = tuple(AUTO_CLASSES)  # AdapterMeta.kind: "sequence", "token", "causal-lm"
# transformers (pipeline, AutoModel*.from_pretrained) takes any folder with an adapter_config.json for a PEFT adapter
# and loads ``base_model_name_or_path`` from it: an ``adapters`` folder has no such key (KeyError, no hint). The kit
# writes this text there, which transformers then names in its error ("Can't load the configuration of '...'").
# adapters itself ignores the key; the kit reads the base model from hf_adapter_kit.json.
PLAIN_LIBRARY_HINT = (
    "not a PEFT adapter: an hf_adapter_kit adapter in the AdapterHub `adapters` format, for the base model {base}. "
    "Run `import hf_adapter_kit` before transformers.pipeline (or use hf_adapter_kit.pipeline / from_pretrained), "
    "or load it with adapters: model.load_adapter(folder, use_safetensors=True)"
)


@dataclass
class AdapterMeta:
    """What the kit records beside the library's own files."""

    method: str
    backend: str
    adapter_name: str
    base_model: str
    label_names: list[str]
    model_type: str = ""
    hidden_size: int = 0
    num_hidden_layers: int = 0
    task: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # multi-task models: [{name, kind, label_names}] in the adapter's task order (task ids are positions in it)
    heads: list[dict[str, Any]] = field(default_factory=list)
    # multi-task instruction-tuned adapters (kind "causal-lm"): [{name, label_names}] in the adapter's task order
    tasks: list[dict[str, Any]] = field(default_factory=list)
    kit_version: str = __version__
    # single-task models: "sequence" (one label per input, AutoModelForSequenceClassification) or "token" (one label
    # per token, AutoModelForTokenClassification). Folders written before this key existed are "sequence".
    kind: str = "sequence"

    @classmethod
    def for_model(cls, model: PreTrainedModel, **values: Any) -> AdapterMeta:
        config = model.config
        return cls(
            model_type=config.model_type,
            hidden_size=getattr(config, "hidden_size", 0),
            num_hidden_layers=getattr(config, "num_hidden_layers", 0),
            **values,
        )

    @classmethod
    def read(cls, directory: Path) -> AdapterMeta:
        path = Path(directory) / KIT_FILE
        if not path.is_file():
            raise AdapterKitError(
                f"`{directory}` is not an hf_adapter_kit adapter folder: it has no {KIT_FILE}. "
                "Give a folder written by hf_adapter_kit.train or save_adapter."
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise AdapterKitError(f"{path} is not valid JSON: {err}.") from err
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data] if isinstance(data, dict) else required
        if missing:
            raise AdapterKitError(f"{path} is not a valid {KIT_FILE}: it lacks the keys {missing}.")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            warnings.warn(
                f"{path} has keys {extra} that hf_adapter_kit {__version__} does not know (written by a newer "
                "version?); they are ignored.",
                stacklevel=2,
            )
        if data.get("kind", "sequence") not in KINDS:
            raise AdapterKitError(f"{path}: `kind`={data['kind']!r} is not valid: expected one of {list(KINDS)}.")
        return cls(**{k: v for k, v in data.items() if k in known})


def attach_meta(model: torch.nn.Module, meta: AdapterMeta) -> None:
    """Remember on the model which method/backend/adapter it carries (used by save_adapter and remove_adapter)."""
    model.hf_adapter_kit_meta = meta


MERGEABLE = ("lora",)  # a linear update of the base weights; the bottleneck methods have a non-linearity


def check_mergeable(meta: AdapterMeta) -> None:
    if meta.method not in MERGEABLE:
        raise invalid(
            "merge",
            True,
            f"False for a {meta.method!r} adapter: only LoRA ('lora') is a linear update that folds into the base "
            "model's weights; the bottleneck, parallel and Hyperformer++ adapters have a non-linearity.",
        )


def merge_adapter(model: torch.nn.Module) -> PreTrainedModel:
    """The model's LoRA folded into its base weights: a plain transformers model (PEFT's ``merge_and_unload``;
    ``adapters``' ``merge_adapter``), as fast as the base model, which no longer carries a kit adapter. Changes
    ``model`` in place; save the adapter before, from the unmerged model."""
    meta = meta_of(model)
    check_mergeable(meta)
    merged = get_backend(meta.backend).merge(model, meta.adapter_name)
    merged.__dict__.pop("hf_adapter_kit_meta", None)
    return merged.eval()


def meta_of(model: torch.nn.Module) -> AdapterMeta:
    meta = getattr(model, "hf_adapter_kit_meta", None)
    if meta is None:
        raise AdapterKitError("`model` carries no hf_adapter_kit adapter: train one or load it with from_pretrained.")
    return meta


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
    the folder's other files stay. A checkpoint counts as complete once the Trainer writes ``trainer_state.json``,
    after these files.
    """
    meta = meta or meta_of(model)
    target = check_output_dir(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not merge:
        recover(target, clean=True)
    staging = staging_dir(target)  # folder and files get the modes os.makedirs / open give, not mkdtemp's 0700
    try:
        if meta.heads:  # a MultiTaskModel: the library's adapter files plus the task heads
            from .multitask import save_heads

            get_backend(meta.backend).save(model.encoder, staging, meta.adapter_name)
            save_heads(model, staging)
        else:
            get_backend(meta.backend).save(model, staging, meta.adapter_name)
        _add_plain_library_hint(staging, meta)
        (staging / KIT_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n")
        from .cards import write_card  # imported here to keep saving free of cycles

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
    path = folder / "adapter_config.json"
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


def folder_meta(directory: Path) -> AdapterMeta:
    """What an adapter folder holds: its ``hf_adapter_kit.json``, or for a folder written by plain ``adapters`` or
    PEFT what its config says (``interop.infer_meta``)."""
    recover(directory)
    if not directory.is_dir():
        raise AdapterKitError(f"`path`={str(directory)!r} is not a folder: give a folder written by hf_adapter_kit.")
    inner = directory / "adapter"
    if not (directory / KIT_FILE).is_file() and (inner / KIT_FILE).is_file():
        raise AdapterKitError(
            f"`path`={str(directory)!r} is a training run's output folder, not an adapter folder: the adapter it "
            f"holds is {str(inner)!r}."
        )
    if (directory / KIT_FILE).is_file():
        return AdapterMeta.read(directory)
    from .interop import infer_meta  # a folder written by plain adapters or PEFT

    return infer_meta(directory)


def load_folder(
    directory: str | os.PathLike,
    *,
    base_model: str | None = None,
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    merge: bool = False,
) -> torch.nn.Module:
    """Load the base model an adapter folder names (or ``base_model``), attach adapter and head; active, in eval.
    ``merge=True`` (LoRA): the adapter folded into the weights, a plain transformers model (:func:`merge_adapter`).

    Weights are read from safetensors only; ``allow_pickle=True`` also accepts pickled weights, read with
    ``torch.load(weights_only=True)``. No model code from the Hub runs unless ``trust_remote_code=True``.
    """
    directory = Path(directory)
    meta = folder_meta(directory)
    if not isinstance(merge, bool):
        raise invalid("merge", merge, "True or False.")
    if merge:
        check_mergeable(meta)
    base_id = base_model or meta.base_model
    if meta.heads:
        return _load_multitask(directory, meta, base_id, dtype, trust_remote_code)
    base = load_base_model(base_id, meta.label_names, kind=meta.kind, dtype=dtype, trust_remote_code=trust_remote_code)
    check_compatible(base, meta, directory)
    try:
        model = get_backend(meta.backend).load(base, directory, meta.adapter_name, allow_pickle=allow_pickle)
    except (RuntimeError, KeyError, OSError) as err:  # shapes or names that do not fit this base model
        raise AdapterKitError(f"The adapter in {directory} does not fit the base model {base_id!r}: {err}") from err
    attach_meta(model, meta)
    return merge_adapter(model) if merge else model


def _load_multitask(directory: Path, meta: AdapterMeta, base_id: str, dtype, trust_remote_code: bool):
    from transformers import AutoModel

    from .modeling import resolve_model_path
    from .multitask import load_multitask

    encoder = AutoModel.from_pretrained(resolve_model_path(base_id), dtype=dtype, trust_remote_code=trust_remote_code)
    check_compatible(encoder, meta, directory)
    model = load_multitask(directory, meta, encoder)
    attach_meta(model, meta)
    return model


def check_compatible(model: PreTrainedModel, meta: AdapterMeta, directory: Path) -> None:
    """The adapter must have been trained on this kind of base model: same type, width and depth."""
    config = model.config
    checks = (
        ("model_type", meta.model_type),
        ("hidden_size", meta.hidden_size),
        ("num_hidden_layers", meta.num_hidden_layers),
    )
    for key, saved in checks:
        ours = getattr(config, key, None)
        if saved and ours != saved:
            raise AdapterKitError(
                f"The adapter in {directory} was trained for {key}={saved!r}, but the base model has {key}={ours!r}."
            )


def remove_adapter(model: torch.nn.Module) -> PreTrainedModel:
    """Deactivate and delete the kit adapter; return the plain transformers model, as it was before."""
    meta = meta_of(model)
    base = get_backend(meta.backend).remove(model, meta.adapter_name)
    base.hf_adapter_kit_meta = None
    return base
