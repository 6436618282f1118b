"""hf_adapter_kit: train, export, share and serve adapters over AdapterHub ``adapters`` and PEFT."""

__version__ = "0.1.0"

from . import atomic  # noqa: E402,F401
from .patches import transformers_pipeline as _transformers_pipeline  # noqa: E402


_transformers_pipeline.apply()  # transformers.pipeline(model=<kit adapter>) gets the adapter's labels and head
from .errors import AdapterKitError  # noqa: E402
from .methods.common.routing import task_context  # noqa: E402
from .registry import get_config, get_method, list_methods, list_specs, register_method  # noqa: E402


list_specs()  # registers the built-in methods, which connects them to PEFT and adapters


def __getattr__(name):
    # Training and loading pull in the Trainer and datasets; import them on first use to keep `import` fast.
    if name in {"train", "TrainResult"}:
        from . import training as module

        return getattr(module, name)
    if name in {"from_pretrained", "push_to_hub"}:
        from . import hub

        return getattr(hub, name)
    if name in {"save_adapter", "remove_adapter", "AdapterMeta"}:
        from . import saving

        return getattr(saving, name)
    if name in {"load_task", "list_tasks", "TaskData"}:
        from . import data

        return getattr(data, name)
    if name == "pipeline":
        from .inference import pipeline

        return pipeline
    if name == "resolve_model_path":
        from .modeling import resolve_model_path

        return resolve_model_path
    raise AttributeError(f"module 'hf_adapter_kit' has no attribute {name!r}")


__all__ = [
    "AdapterKitError",
    "AdapterMeta",
    "TaskData",
    "TrainResult",
    "from_pretrained",
    "get_config",
    "get_method",
    "list_methods",
    "list_tasks",
    "load_task",
    "pipeline",
    "push_to_hub",
    "register_method",
    "task_context",
    "remove_adapter",
    "resolve_model_path",
    "save_adapter",
    "train",
]
