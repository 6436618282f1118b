"""One Trainer for every backend: checkpoints hold the adapter (and head) only, as safetensors.

Why not ``adapters.AdapterTrainer``: on a transformers model with its own head (what pipelines need) it checkpoints
the adapter but reloads only flex heads, so ``load_best_model_at_end`` would pair the best adapter with the last
head; and it writes pickled weights. This subclass routes ``_save`` and both checkpoint loads through the backend,
which writes exactly the files the backend's library writes itself.

Overrides of ``Trainer``'s private methods, written against transformers 4.57 (``PRIVATE_OVERRIDES``; the multi-task
trainer adds its own sampler): ``_save`` (the backend writes the adapter), ``_load_from_checkpoint`` and
``_load_best_model`` (the backend reads it back), ``_get_train_sampler`` (an order fixed by seed and epoch),
``_set_signature_columns_if_needed`` (``model_columns`` such as ``task_ids`` kept for a model that takes them through
``**kwargs``), ``_save_checkpoint`` and ``_get_output_dir`` (the Trainer writes each checkpoint into a staging folder,
renamed into place once whole: ``checkpoints.py``). ``tests/test_patches_methods.py`` fails when transformers changes
their signatures or stops calling them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..backends import get_backend
from ..folders import AdapterMeta, save_adapter
from ..folders.cards import write_card
from ..modeling.checkpointing import enable
from .checkpoints import checkpoint_staging, clear_checkpoint_staging, publish


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped batches whose order depends only on (seed, epoch).

    transformers' sampler draws from the global RNG, whose state at an epoch's start is not replayed when a run is
    resumed from a checkpoint; with the order fixed by (seed, epoch), a resumed run sees the batches the
    uninterrupted run saw. The Trainer (through accelerate) calls ``set_epoch`` before each epoch.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return super().__iter__()


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step alone (forward, backward, update), without data loading, evaluation or
    checkpoints, which the Trainer's ``train_runtime`` includes: what step-time comparisons between methods need."""

    def __init__(self):
        self.times: list[float] = []
        self._start = 0.0

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(self._now() - self._start)

    @property
    def seconds_per_step(self) -> float:
        return sum(self.times) / max(len(self.times), 1)


class GradientCheckpointing(TrainerCallback):
    """With ``gradient_checkpointing=True``: checkpointing as :mod:`hf_adapter_kit.modeling.checkpointing` sets it up, once training begins
    (after the Trainer's own ``gradient_checkpointing_enable``, whose reentrant default leaves adapters untrained)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        enable(model, args.gradient_checkpointing_kwargs)


WRITTEN_AGAINST = "4.57"
# transformers 4.57 orders checkpoints by mtime at every save (Trainer._sorted_checkpoints) and, when they are less
# than a second apart (any short run), warns that "mtime may not be reliable on this filesystem" before it orders them
# by step number: a false alarm about the user's file system, and the kit's checkpoints are named by step. That one
# message is ignored while KitTrainer.train runs; every other warning passes.
MTIME_WARNING = "mtime may not be reliable on this filesystem"
PRIVATE_OVERRIDES = (
    "_save",
    "_load_from_checkpoint",
    "_load_best_model",
    "_get_train_sampler",
    "_set_signature_columns_if_needed",
    "_save_checkpoint",
    "_get_output_dir",
)


class KitTrainer(Trainer):
    def __init__(self, *args, kit_meta: AdapterMeta, model_columns: tuple[str, ...] = (), **kwargs):
        self.model_columns = model_columns  # dataset columns the model takes beyond its forward's named arguments
        self._checkpoint: Path | None = None  # the checkpoint folder being written (into its staging folder)
        super().__init__(*args, **kwargs)
        self.step_timer = StepTimer()
        self.add_callback(self.step_timer)
        if self.args.gradient_checkpointing:
            self.add_callback(GradientCheckpointing())
        self.kit_meta = kit_meta
        self.kit_backend = get_backend(kit_meta.backend)
        column = self.args.length_column_name
        dataset = self.train_dataset
        # The Trainer drops unused columns before building the sampler, so it would re-measure every example.
        self._lengths = dataset[column] if dataset is not None and column in dataset.column_names else None

    def _get_train_sampler(self, train_dataset=None):
        if self.args.group_by_length and self._lengths is not None:
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return EpochSeededLengthGroupedSampler(
                batch, lengths=self._lengths, seed=self.args.data_seed or self.args.seed
            )
        return super()._get_train_sampler(train_dataset)

    def _set_signature_columns_if_needed(self):
        # The Trainer keeps the dataset columns that the model's forward names; a model whose forward takes
        # ``**kwargs`` (``adapters`` reads ``task_ids`` from them) would lose the ``model_columns``.
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in self.model_columns if c not in self._signature_columns]

    def train(self, *args, **kwargs):
        if self.args.should_save:  # what a killed run left; hidden, so never taken for a checkpoint meanwhile
            clear_checkpoint_staging(Path(self.args.output_dir))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=re.escape(MTIME_WARNING), category=UserWarning)
            return super().train(*args, **kwargs)

    def trained_model(self) -> torch.nn.Module:
        """The model as the user gets it back. With mixed precision, accelerate wraps the model's ``forward`` in
        autocast, and the wrapper would stay after training: outputs in bf16/fp16 that the saved adapter, reloaded,
        does not reproduce. This returns the same model with its own ``forward``."""
        return self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)

    def _save(self, output_dir: str | None = None, state_dict=None):
        folder = save_adapter(self.model, output_dir or self.args.output_dir, self.kit_meta, merge=True)
        if self._checkpoint is not None:  # in the staging folder: the card names the folder it becomes
            write_card(folder, display_path=self._checkpoint, meta=self.kit_meta)

    def _get_output_dir(self, trial) -> str:
        # While _save_checkpoint runs, the Trainer's run folder is the checkpoint's staging folder: every file it
        # writes for the checkpoint lands there.
        if self._checkpoint is not None:
            return str(checkpoint_staging(self._checkpoint))
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's own checkpoint, every file of it written into a staging folder that is renamed into place
        once whole (``checkpoints.py``): a kill at any moment leaves ``checkpoint-N`` whole or absent."""
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final = Path(run_dir) / name
        staging = checkpoint_staging(final)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()  # every process writes its RNG state into the staging folder
        self._checkpoint = final
        try:
            super()._save_checkpoint(model, trial)
        except BaseException:  # Ctrl-C or a full disk: nothing half-written stays behind
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            self._checkpoint = None
        staged_best = self.state.best_model_checkpoint == os.path.join(str(staging), name)
        if staged_best:  # the Trainer found this checkpoint the best where it wrote it; it will be at `final`
            self.state.best_model_checkpoint = os.path.join(run_dir, name)
        self.accelerator.wait_for_everyone()  # every process's files are in the staging folder
        if self.args.should_save:
            if staged_best:
                self.state.save_to_json(str(staging / name / TRAINER_STATE_NAME))
            publish(staging / name, final)
            shutil.rmtree(staging, ignore_errors=True)
            self._rotate_checkpoints(use_mtime=True, output_dir=run_dir)  # what the Trainer did in the staging folder
        self.accelerator.wait_for_everyone()  # no process reads the checkpoint before it is in place

    def _load_checkpoint_weights(self, model, checkpoint) -> None:
        """Read the adapter (and head) weights of a checkpoint into ``model`` (resume and best-model restore)."""
        self.kit_backend.load_weights(model, checkpoint, self.kit_meta.adapter_name)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        self._load_checkpoint_weights(model or self.model, resume_from_checkpoint)

    def _load_best_model(self):
        # transformers 4.57 has no barrier here: without one, a process may read the best checkpoint while rank 0 is
        # still writing it.
        self.accelerator.wait_for_everyone()
        self._load_checkpoint_weights(self.model, self.state.best_model_checkpoint)
