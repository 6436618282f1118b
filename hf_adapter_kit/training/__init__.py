"""Training: argument dataclasses, the kit's Trainer, the one training pipeline (``run.py``) with a strategy per task
shape (``strategies/``), and the ``train()`` entry point."""

from .checkpoints import TrainingInterrupted
from .result import TrainResult
from .run import train


__all__ = ["TrainResult", "TrainingInterrupted", "train"]
