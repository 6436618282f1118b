"""hf_adapter_kit: train, export, share and serve adapters over AdapterHub ``adapters`` and PEFT.

Importing the package registers the kit's methods with both libraries (``methods/``, through ``patches/``) and lets
``transformers.pipeline`` take kit adapters (``serving/transformers_pipeline.py``); nothing else of theirs changes
(docs/methods.md, "What importing the kit changes"). Training, loading and serving are imported on first use.
"""

from . import methods  # noqa: F401  (registers the built-in methods, which connects them to PEFT and adapters)
from .errors import AdapterKitError
from .patches.adapters_speedups import speed_up_adapters
from .registry import get_config, get_method, list_methods, list_specs, register_method
from .routing import task_context
from .serving import transformers_pipeline as _transformers_pipeline
from .version import __version__


_transformers_pipeline.apply()  # transformers.pipeline(model=<kit adapter>) gets the adapter's labels and head

# name -> module that defines it; imported on first use: training pulls in the Trainer and datasets
_LAZY = {
    "train": "training",
    "TrainResult": "training",
    "TrainingInterrupted": "training",
    "from_pretrained": "serving",
    "pipeline": "serving",
    "push_to_hub": "folders",
    "save_adapter": "folders",
    "remove_adapter": "folders",
    "AdapterMeta": "folders",
    "load_task": "data",
    "list_tasks": "data",
    "TaskData": "data",
    "MultiTaskModel": "multitask",
    "TaskHead": "multitask",
    "resolve_model_path": "modeling",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hf_adapter_kit' has no attribute {name!r}")


__all__ = [
    "AdapterKitError",
    "AdapterMeta",
    "MultiTaskModel",
    "TaskData",
    "TaskHead",
    "TrainResult",
    "TrainingInterrupted",
    "__version__",
    "from_pretrained",
    "get_config",
    "get_method",
    "list_methods",
    "list_specs",
    "list_tasks",
    "load_task",
    "pipeline",
    "push_to_hub",
    "register_method",
    "remove_adapter",
    "resolve_model_path",
    "save_adapter",
    "speed_up_adapters",
    "task_context",
    "train",
]
