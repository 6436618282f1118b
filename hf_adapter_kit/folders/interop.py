"""Folders written by plain ``adapters`` or plain PEFT (no ``hf_adapter_kit.json``): what the kit reads from them.

Which kit method such a folder holds is each method's own knowledge: its spec's ``reads_foreign`` predicate over the
library's ``adapter_config.json`` (``registry.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from ..backends.files import ADAPTER_CONFIG, PEFT_WEIGHTS
from ..errors import AdapterKitError
from ..kinds import GENERATIVE, KINDS
from ..registry import list_specs
from .meta import AdapterMeta


def infer_meta(directory: Path) -> AdapterMeta:
    """Metadata for a library's own adapter folder, from its adapter_config.json (and head files)."""
    config_path = directory / ADAPTER_CONFIG
    if not config_path.is_file():
        raise AdapterKitError(
            f"`{directory}` is not an adapter folder: it has neither hf_adapter_kit.json nor adapter_config.json."
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise AdapterKitError(f"{config_path} is not valid JSON: {err}.") from err
    if "peft_type" in config:
        return _peft_meta(directory, config)
    if "config" in config and "model_name" in config:
        return _adapters_meta(directory, config)
    raise AdapterKitError(f"{config_path} was written by neither PEFT nor adapters: it has no peft_type or config.")


def method_of_foreign(library: str, config: dict, directory: Path) -> str:
    """The kit method that recognises ``config`` (a plain ``library`` folder's adapter config): its spec's
    ``reads_foreign`` predicate, or, for a method the kit added to PEFT, its own PEFT type (a folder PEFT or TRL wrote
    with a kit config)."""
    found = [spec.name for spec in list_specs() if _recognises(spec, library, config)]
    if len(found) != 1:
        known = [spec.name for spec in list_specs() if library in spec.reads_foreign or _kit_peft(spec, library)]
        what = f"peft_type={config.get('peft_type')!r}" if library == "peft" else f"this adapters config {config}"
        raise AdapterKitError(
            f"{directory}: {what} is not a method the kit loads from a plain {library} folder; it loads {known}."
        )
    return found[0]


def _kit_peft(spec, library: str) -> bool:
    return library == "peft" and spec.peft is not None


def _recognises(spec, library: str, config: dict) -> bool:
    if _kit_peft(spec, library) and config.get("peft_type") == spec.peft.peft_type:
        return config.get("method", spec.name) == spec.name  # one PEFT type may serve several methods (bottleneck)
    return spec.reads_foreign.get(library, _never)(config)


def _never(config: dict) -> bool:
    return False


def _peft_meta(directory: Path, config: dict) -> AdapterMeta:
    method = method_of_foreign("peft", config, directory)
    kinds = {kind.peft_task_type: name for name, kind in KINDS.items()}
    task_type = str(config.get("task_type") or "SEQ_CLS").removeprefix("TaskType.")
    if task_type not in kinds:
        raise AdapterKitError(
            f"{directory}: task_type={task_type!r} is not one the kit serves from a plain PEFT folder; it serves "
            f"{sorted(kinds)} (a multi-task encoder's heads are the kit's own: load it from the kit's folder)."
        )
    kind = kinds[task_type]
    generative = kind in GENERATIVE
    labels = [] if generative else [f"LABEL_{i}" for i in range(_head_outputs(directory / PEFT_WEIGHTS))]
    tasks = config.get("tasks") or []
    return AdapterMeta(
        method=method,
        backend="peft",
        adapter_name="default",
        base_model=config.get("base_model_name_or_path") or "",
        label_names=labels,
        kind=kind,
        tasks=[{"name": name, "label_names": []} for name in tasks] if generative and len(tasks) > 1 else [],
    )


def _adapters_meta(directory: Path, config: dict) -> AdapterMeta:
    method = method_of_foreign("adapters", config["config"], directory)
    head_path = directory / "head_config.json"
    head = json.loads(head_path.read_text()) if head_path.is_file() else {}
    label2id = head.get("label2id") or {}
    labels = (
        sorted(label2id, key=label2id.get) if label2id else [f"LABEL_{i}" for i in range(head.get("num_labels", 2))]
    )
    return AdapterMeta(
        method=method,
        backend="adapters",
        adapter_name=config.get("name") or "adapter",
        base_model=config["model_name"],
        label_names=labels,
        model_type=config.get("model_type", ""),
        hidden_size=config.get("hidden_size", 0),
    )


def _head_outputs(weights: Path) -> int:
    """Number of labels of the classification head saved in a PEFT file (its last head weight's rows)."""
    if not weights.is_file():
        raise AdapterKitError(f"`{weights.parent}` has no adapter_model.safetensors.")
    with safe_open(str(weights), framework="pt") as handle:
        heads = [k for k in handle.keys() if k.endswith(".weight") and any(h in k for h in ("classifier", "score"))]
        if not heads:
            raise AdapterKitError(f"{weights} holds no classification head (classifier or score).")
        return handle.get_slice(sorted(heads)[-1]).get_shape()[0]
