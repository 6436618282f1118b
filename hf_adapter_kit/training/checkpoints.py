"""Checkpoints: what counts as whole, which one a run resumes from (``resume_from_checkpoint``), how one appears whole
or not at all, and what Ctrl-C says about them. The one place that decides, so that it can change here alone.

Writing (``KitTrainer._save_checkpoint``): the Trainer writes every file of ``checkpoint-N`` (the adapter, optimizer,
scheduler, each process's RNG state, ``trainer_state.json``) into the staging folder ``.checkpoint-N.saving-trainer``;
:func:`publish` then lists the files with their sizes in ``checkpoint_manifest.json`` and renames the folder into
place. A process killed while a checkpoint is written leaves that hidden folder, never a ``checkpoint-N`` cut short;
the next run in the folder removes it (:func:`clear_checkpoint_staging`). Its name is fixed, not random, because under
torchrun every process writes its RNG state into it.

Reading (:func:`checkpoint_problem`): a checkpoint is whole when ``trainer_state.json`` is there, every file its
manifest lists is there at its size (transformers deletes old checkpoints file by file: a kill then leaves one with
files missing), every JSON file parses, every safetensors file opens with the tensors its index names, and the
optimizer, scheduler, scaler and RNG states load. A checkpoint without a manifest (plain transformers, or the kit
before it wrote one) is judged by the files it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME, safe_globals
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..atomic import normalize_modes, replace_dir
from ..errors import AdapterKitError, invalid


MANIFEST = "checkpoint_manifest.json"
STAGING_TAG = "saving"
TRAINER_TAG = "trainer"  # the staging folder every process of a run writes into: .checkpoint-N.saving-trainer
# The pickles the Trainer reads back when it resumes (torch.save); others, such as plain transformers'
# training_args.bin, it never reads, and they do not load with weights_only.
RESUMED_STATES = re.compile(
    rf"^({re.escape(OPTIMIZER_NAME)}|{re.escape(SCHEDULER_NAME)}|{re.escape(SCALER_NAME)}|rng_state(_\d+)?\.pth)$"
)
_STEP = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def checkpoint_staging(final: Path) -> Path:
    """The staging folder of the checkpoint folder ``final`` (the same name in every process of a run)."""
    return final.with_name(f".{final.name}.{STAGING_TAG}-{TRAINER_TAG}")


def clear_checkpoint_staging(run_dir: Path) -> None:
    """Remove the staging folders of checkpoints that a killed run left in ``run_dir`` (the run's one writer)."""
    if run_dir.is_dir():
        for stale in run_dir.glob(f".{PREFIX_CHECKPOINT_DIR}-*.{STAGING_TAG}-*"):
            shutil.rmtree(stale, ignore_errors=True)


def publish(written: Path, final: Path) -> None:
    """Rename the checkpoint folder ``written`` (complete) to ``final``, after listing its files in the manifest."""
    files = {str(p.relative_to(written)): p.stat().st_size for p in sorted(written.rglob("*")) if p.is_file()}
    (written / MANIFEST).write_text(json.dumps({"files": files}, indent=2) + "\n")
    normalize_modes(written)  # the modes os.makedirs and open give, whoever wrote the files
    replace_dir(written, final)  # whole or not at all; over a checkpoint of the same step that a resumed run redoes


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a whole checkpoint, naming the file; None when it is whole (see the module docstring)."""
    if not (folder / TRAINER_STATE_NAME).is_file():
        return f"it has no {TRAINER_STATE_NAME} (the run stopped before the Trainer wrote it)"
    manifest = folder / MANIFEST
    if manifest.is_file():
        problem = _manifest_problem(folder, manifest)
        if problem:
            return problem
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        problem = _file_problem(path)
        if problem:
            return f"{path.relative_to(folder)} {problem}"
    return None


def _manifest_problem(folder: Path, manifest: Path) -> str | None:
    try:
        files = json.loads(manifest.read_text())["files"]
        listed = {str(name): int(size) for name, size in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return f"{MANIFEST} is not a list of files ({err})"
    for name, size in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing (the checkpoint was written with it)"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written"
    return None


def _file_problem(path: Path) -> str | None:
    """What is wrong with one file of a checkpoint, by its kind; None when it reads."""
    try:
        if path.name.endswith(".safetensors.index.json"):
            return _index_problem(path)
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_slice(key).get_shape()
        elif RESUMED_STATES.match(path.name):
            with safe_globals():  # what the Trainer allows when it reads the RNG state back
                torch.load(path, map_location="cpu", weights_only=True)
    except json.JSONDecodeError as err:
        return f"is not valid JSON (cut short while it was written?): {err}"
    except (SafetensorError, OSError, ValueError, RuntimeError, EOFError) as err:
        return f"does not load (cut short while it was written?): {str(err).rstrip('. ')}"
    except Exception as err:  # noqa: BLE001 - torch.load's unpickler raises whatever a damaged pickle leads it to
        return f"does not load: {type(err).__name__}: {str(err).rstrip('. ')}"
    return None


def _index_problem(index: Path) -> str | None:
    weight_map = json.loads(index.read_text()).get("weight_map", {})
    for shard in sorted(set(weight_map.values())):
        with safe_open(str(index.parent / shard), framework="pt") as handle:
            missing = sorted(set(k for k, v in weight_map.items() if v == shard) - set(handle.keys()))
        if missing:
            return f"names tensors that {shard} does not hold: {missing[:3]}"
    return None


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders of ``output_dir``, the highest step first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found, reverse=True)]


def newest_whole(output_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest whole checkpoint of ``output_dir`` (None if there is none), and the newer ones skipped, with why."""
    skipped = []
    for folder in checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, skipped
        skipped.append((folder, problem))
    return None, skipped


def resolve_checkpoint(resume: str | os.PathLike | None, output_dir: Path) -> str | None:
    """A whole checkpoint folder to resume from; ``"last"`` takes the newest whole one in ``output_dir`` and warns
    about each newer one it skips. A folder named explicitly that is not whole is refused, naming the bad file."""
    if resume is None:
        return None
    if not isinstance(resume, str | os.PathLike):
        raise invalid("resume_from_checkpoint", resume, "a checkpoint-N folder or 'last' (the newest whole one).")
    if resume == "last":
        chosen, skipped = newest_whole(output_dir)
        if chosen is None:
            why = "".join(f"; {folder.name}: {problem}" for folder, problem in skipped)
            raise AdapterKitError(
                f"`resume_from_checkpoint`='last' found no complete checkpoint in `output_dir`={str(output_dir)!r}"
                f"{why or ' (it holds no checkpoint-N folder)'}."
            )
        for folder, problem in skipped:
            warnings.warn(
                f"`resume_from_checkpoint`='last' skipped {folder}, which is not whole: {problem}. Resuming from "
                f"{chosen.name}, the newest whole checkpoint.",
                UserWarning,
                stacklevel=2,
            )
        return str(chosen)
    folder = Path(resume)
    if not folder.is_dir():
        raise AdapterKitError(
            f"`resume_from_checkpoint`={str(resume)!r} is not a folder: give a checkpoint-N folder or 'last'."
        )
    problem = checkpoint_problem(folder)
    if problem:
        raise AdapterKitError(
            f"`resume_from_checkpoint`={str(resume)!r} is incomplete: {problem}. Give an earlier checkpoint, or "
            "'last' for the newest whole one."
        )
    return str(resume)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a training run; the message says where its last checkpoint is and how to resume.

    A ``KeyboardInterrupt``, so that whatever stops on Ctrl-C (a notebook, a script's handler) still does."""


@contextlib.contextmanager
def resumable_on_ctrl_c(trainer, output_dir: Path) -> Iterator[None]:
    """Turn Ctrl-C during training into :class:`TrainingInterrupted`, whose one line names the checkpoint to resume
    from (the newest whole one: a checkpoint being written when Ctrl-C came is not)."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        state = trainer.state
        chosen, _ = newest_whole(output_dir)
        where = f"training stopped by Ctrl-C at step {state.global_step} of {state.max_steps}"
        if chosen is None:
            message = f"{where}, before its first checkpoint: nothing to resume from; run it again to start over."
        else:
            message = (
                f"{where}; the last checkpoint is {chosen}: resume with resume_from_checkpoint='last' "
                "(command line: --resume_from_checkpoint last) and the same arguments."
            )
        raise TrainingInterrupted(message) from None


__all__ = [
    "MANIFEST",
    "TrainingInterrupted",
    "checkpoint_problem",
    "checkpoint_staging",
    "clear_checkpoint_staging",
    "newest_whole",
    "publish",
    "resolve_checkpoint",
    "resumable_on_ctrl_c",
]
