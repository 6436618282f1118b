"""``hf_adapter_kit.from_pretrained``: any kit adapter folder or Hub repo, ready to predict.

A one-task adapter is loaded onto its base model through its backend (``folders/load.py``); a multi-task model is
rebuilt by :meth:`MultiTaskModel.from_folder`; folders written by plain ``adapters`` or PEFT load too.
"""

from __future__ import annotations

import os

import torch

from ..errors import invalid
from ..folders import check_mergeable, folder_meta, load_folder, resolve_adapter
from ..multitask import MultiTaskModel


def from_pretrained(
    repo_id_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | None = None,
    base_model: str | None = None,
    dtype: torch.dtype | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    merge: bool = False,
) -> torch.nn.Module:
    """The base model with the adapter and its head attached and active, in eval mode, ready to predict.

    ``repo_id_or_path`` is a local folder or a Hub repo id (``revision``: branch, tag or commit). Folders written by
    plain ``adapters`` or PEFT load too. ``base_model`` overrides the base the adapter names (checked to match).
    ``merge=True`` (a mergeable method: LoRA): the adapter folded into the base weights, a plain transformers model
    that serves as fast as the base model (PEFT's ``merge_and_unload``).

    Weights are read from safetensors only; ``allow_pickle=True`` also accepts pickled weights, read with
    ``torch.load(weights_only=True)``. No model code from the Hub runs unless ``trust_remote_code=True``.
    """
    if not isinstance(merge, bool):
        raise invalid("merge", merge, "True or False.")
    directory = resolve_adapter(repo_id_or_path, revision=revision, token=token, allow_pickle=allow_pickle)
    meta = folder_meta(directory)
    if merge:
        check_mergeable(meta)
    if meta.heads:
        return MultiTaskModel.from_folder(
            directory, meta, base_model=base_model, dtype=dtype, trust_remote_code=trust_remote_code
        )
    return load_folder(
        directory,
        base_model=base_model,
        dtype=dtype,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        merge=merge,
    )
