"""Batches from several tasks, one task per batch, the task drawn by temperature: ``p_i ~ n_i ** (1 / T)`` (``n_i``
the task's training examples, ``T`` = ``temperature``, 10 by default as in the Hyperformer reference), so that small
tasks are seen more often than their share. An epoch has as many batches as the tasks have together.

Shared by the runs over several tasks (multi-task classification and multi-task instruction tuning) through
:class:`TemperatureSampling`, a Trainer mixin.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Sampler


def task_probabilities(sizes: list[int], temperature: float) -> np.ndarray:
    """``p_i ~ n_i ** (1 / T)``: T = 1 samples tasks by size, a large T samples them uniformly."""
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return weights / weights.sum()


class TemperatureBatchSampler(Sampler):
    """Indices into the concatenated tasks, ``batch_size`` at a time from one task; the order depends on (seed, epoch).

    Each task's examples are shuffled and consumed in turn (reshuffled when used up), so every batch is full.
    """

    def __init__(self, sizes: list[int], batch_size: int, temperature: float, seed: int):
        self.sizes, self.batch_size, self.seed, self.epoch = list(sizes), batch_size, seed, 0
        self.probabilities = task_probabilities(self.sizes, temperature)
        self.offsets = np.cumsum([0, *self.sizes[:-1]])
        self.num_batches = sum(math.ceil(n / batch_size) for n in self.sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def batch_tasks(self) -> np.ndarray:
        """The task of each batch of the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.choice(len(self.sizes), size=self.num_batches, p=self.probabilities)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        pools = [rng.permutation(n) for n in self.sizes]
        cursor = [0] * len(self.sizes)
        for task in self.batch_tasks():
            for _ in range(self.batch_size):
                if cursor[task] == self.sizes[task]:
                    pools[task], cursor[task] = rng.permutation(self.sizes[task]), 0
                yield int(self.offsets[task] + pools[task][cursor[task]])
                cursor[task] += 1


class TemperatureSampling:
    """Mixin for a ``KitTrainer`` over concatenated tasks (``task_sizes`` examples each, in order): training batches
    come from :class:`TemperatureBatchSampler`, whose order is fixed by the data seed and the epoch."""

    def __init__(self, *args, task_sizes: list[int], temperature: float, **kwargs):
        self.task_sizes, self.temperature = task_sizes, temperature
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        seed = self.args.data_seed or self.args.seed
        return TemperatureBatchSampler(self.task_sizes, self.args.train_batch_size, self.temperature, seed)


__all__ = ["TemperatureBatchSampler", "TemperatureSampling", "task_probabilities"]
