"""Sharing adapters on the Hugging Face Hub: ``push_to_hub`` for every method and backend, and
:func:`resolve_adapter`, the local folder of a repo id (downloaded) or of a path, which every loader reads.

Only safetensors, JSON and the card are downloaded (pickles only with ``allow_pickle=True``); an upload is one
commit, so a failed push never leaves a partial adapter as the repo's head. A push stages the folder it uploads in the
system's temporary folder (``atomic.scratch_dir``): one that a killed push left there is removed by the next push.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from huggingface_hub import HfApi, get_token, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from ..atomic import recover, scratch_dir
from ..backends.files import ADAPTER_CONFIG, KIT_FILE
from ..errors import AdapterKitError
from ..modeling import looks_like_path
from .cards import write_card
from .meta import AdapterMeta, meta_of
from .save import save_adapter


DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "README.md"]
PUSH_PREFIX = "hf_adapter_kit-push-"
PICKLE_PATTERNS = ["*.bin"]


def push_to_hub(
    model_or_dir: torch.nn.Module | str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload an adapter folder (or a model's adapter) with its card naming ``repo_id``; returns the commit sha."""
    _check_repo_id(repo_id)
    token = token or get_token()
    if token is None:
        raise AdapterKitError(
            f"Pushing to `repo_id`={repo_id!r}{' (private)' if private else ''} needs a token: pass token=... or "
            "log in with `huggingface-cli login` / set HF_TOKEN."
        )
    with scratch_dir(PUSH_PREFIX) as tmp:
        staging = tmp / "adapter"
        if isinstance(model_or_dir, torch.nn.Module):
            meta = meta_of(model_or_dir)
            save_adapter(model_or_dir, staging, meta)
        else:
            source = Path(model_or_dir)
            if not source.is_dir():
                _not_a_folder("model_or_dir", model_or_dir, or_repo=False)
            meta = AdapterMeta.read(source)  # refuses a folder that is not a kit adapter, before any request
            shutil.copytree(source, staging)
        write_card(staging, repo_id=repo_id, meta=meta)
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(staging),
                revision=revision,
                commit_message=commit_message or f"Upload {meta.method} adapter for {meta.task} (hf_adapter_kit)",
            )
        except HfHubHTTPError as err:
            raise AdapterKitError(f"Pushing to `repo_id`={repo_id!r} failed: {err}") from err
    return info.oid


def resolve_adapter(
    repo_id_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | None = None,
    allow_pickle=False,
    argument: str = "repo_id_or_path",
) -> Path:
    """A local folder holding the adapter: the path itself, or a download of the Hub repo at ``revision``.

    ``argument`` is the name the caller's user gave the value (``model`` in ``pipeline``), for the messages.
    """
    if not isinstance(repo_id_or_path, str | os.PathLike) or not str(repo_id_or_path).strip():
        raise AdapterKitError(
            f"`{argument}`={repo_id_or_path!r} is not valid: give an adapter folder (e.g. <output_dir>/adapter of a "
            "training run) or a Hub repo id ('owner/name')."
        )
    path = Path(repo_id_or_path).expanduser()
    recover(path)  # a save killed between its two renames (no renameat2) left the folder aside: put it back
    if path.is_dir():
        return path
    name = str(repo_id_or_path)
    if path.exists() or not isinstance(repo_id_or_path, str) or looks_like_path(name) or name.endswith(("/", os.sep)):
        _not_a_folder(argument, repo_id_or_path)
    # "outputs/run" when ./outputs exists: a mistyped local path far more often than a Hub repo, but both are tried.
    local = len(Path(name).parts) > 1 and Path(Path(name).parts[0]).is_dir()
    if local:
        try:
            validate_repo_id(name)
        except HFValidationError:
            _not_a_folder(argument, repo_id_or_path)
    _check_repo_id(name, argument=argument)
    patterns = DOWNLOAD_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    neither = f"`{argument}`={name!r} is neither a local folder"
    try:
        folder = snapshot_download(name, revision=revision, token=token, allow_patterns=patterns)
    except RevisionNotFoundError as err:
        raise AdapterKitError(f"`revision`={revision!r} does not exist in the Hub repo {name!r}.") from err
    except RepositoryNotFoundError as err:
        if local:
            _not_a_folder(argument, repo_id_or_path, hub="it is not a Hub repo you can read either")
        raise AdapterKitError(f"{neither} nor a Hub repo you can read (a private repo needs token=...).") from err
    except (LocalEntryNotFoundError, EntryNotFoundError, HfHubHTTPError, OSError) as err:
        if local:
            _not_a_folder(argument, repo_id_or_path, hub="no Hub repo of that name could be downloaded either")
        raise AdapterKitError(f"{neither} nor a Hub repo that could be downloaded: {err}") from err
    folder = Path(folder)
    if not (folder / KIT_FILE).is_file() and not (folder / ADAPTER_CONFIG).is_file():
        raise AdapterKitError(f"The Hub repo {name!r} (revision {revision or 'main'}) holds no adapter.")
    return folder


def _check_repo_id(repo_id: str, argument: str = "repo_id") -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise AdapterKitError(
            f"`{argument}`={repo_id!r} is not a valid Hub repo id ('name' or 'owner/name')."
        ) from err


def _not_a_folder(argument: str, value, hub: str = "", or_repo: bool = True) -> None:
    """Refuse a local path that is missing or not a folder, saying what is there instead."""
    path = Path(value).expanduser()
    shown = str(value)
    if os.path.lexists(path):
        raise AdapterKitError(
            f"`{argument}`={shown!r} is a file, not a folder: give the adapter folder (the one holding {KIT_FILE})."
        )
    existing = next(parent for parent in path.absolute().parents if os.path.lexists(parent))
    if not existing.is_dir():
        raise AdapterKitError(f"`{argument}`={shown!r} is not a folder: {str(existing)!r} in it is a file.")
    try:
        inside = sorted(p.name for p in existing.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:  # a folder we may not list
        inside = []
    listing = f"; the folders in it: {', '.join(inside[:8])}{', ...' if len(inside) > 8 else ''}" if inside else ""
    raise AdapterKitError(
        f"`{argument}`={shown!r} does not exist or is not a folder: there is no local folder "
        f"{str(path.absolute())!r} (the nearest existing folder is {str(existing)!r}{listing})"
        f"{'; ' + hub if hub else ''}. Give an adapter folder, e.g. "
        f"<output_dir>/adapter of a training run{', or a Hub repo id (owner/name)' if or_repo else ''}."
    )
