"""A shared encoder with a multi-task adapter and one head per task (``model.py``): trained, saved, loaded and served
as one model, each example routed to its task's adapter and head by ``task_ids``."""

from .model import MultiTaskModel, MultiTaskOutput, TaskHead, TaskModel, attach_encoder


__all__ = ["MultiTaskModel", "MultiTaskOutput", "TaskHead", "TaskModel", "attach_encoder"]
