"""Reading an adapter folder: its metadata (a kit folder's ``hf_adapter_kit.json``, or what a plain library's config
says), and a one-task adapter loaded onto its base model through its backend; merging and removing it again.

A multi-task folder (task heads of its own) is rebuilt by ``multitask/`` (``MultiTaskModel.from_pretrained``);
``hf_adapter_kit.from_pretrained`` takes either.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from transformers import PreTrainedModel

from ..atomic import recover
from ..backends import get_backend
from ..backends.files import KIT_FILE
from ..errors import AdapterKitError, invalid
from ..modeling import load_base_model
from ..registry import get_method, names_where
from .interop import infer_meta
from .meta import AdapterMeta, attach_meta, meta_of


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
    return infer_meta(directory)  # a folder written by plain adapters or PEFT


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
        raise invalid(
            "directory",
            str(directory),
            "a one-task adapter folder; this one holds a multi-task model (its tasks: "
            f"{[head['name'] for head in meta.heads]}): load it with hf_adapter_kit.from_pretrained or "
            "MultiTaskModel.from_pretrained.",
        )
    base = load_base_model(base_id, meta.label_names, kind=meta.kind, dtype=dtype, trust_remote_code=trust_remote_code)
    check_compatible(base, meta, directory)
    try:
        model = get_backend(meta.backend).load(base, directory, meta.adapter_name, allow_pickle=allow_pickle)
    except (RuntimeError, KeyError, OSError) as err:  # shapes or names that do not fit this base model
        if allow_pickle and _refused_pickle(err):
            raise invalid(
                "allow_pickle",
                True,
                f"True only reads pickles of plain tensors; the pickled weights in {directory} hold other objects, "
                "which torch.load(weights_only=True) refused to build (they could run code), and nothing was loaded. "
                "Ask for the adapter as safetensors.",
            ) from err
        raise AdapterKitError(f"The adapter in {directory} does not fit the base model {base_id!r}: {err}") from err
    attach_meta(model, meta)
    return merge_adapter(model) if merge else model


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


def check_mergeable(meta: AdapterMeta) -> None:
    """Only a method whose spec is ``mergeable`` (a linear update of the base weights) folds into them."""
    if not get_method(meta.method).mergeable:
        mergeable = names_where(lambda spec: spec.mergeable)
        raise invalid(
            "merge",
            True,
            f"False for a {meta.method!r} adapter: only {', '.join(map(repr, mergeable))} is a linear update that "
            "folds into the base model's weights; the other adapters have a non-linearity.",
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


def _refused_pickle(error: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refusing a pickle is what went wrong (the libraries wrap its error)."""
    while error is not None:
        if isinstance(error, pickle.UnpicklingError):
            return True
        error = error.__cause__ or error.__context__
    return False
