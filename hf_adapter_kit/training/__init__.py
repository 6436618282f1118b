"""Training: argument dataclasses, the kit's Trainer and the ``train()`` entry point."""

from .run import TrainResult, train


__all__ = ["TrainResult", "train"]
