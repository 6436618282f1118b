"""What the kit records beside the library's own files: ``hf_adapter_kit.json``, as :class:`AdapterMeta`.

The method, backend and adapter name; the base model's Hub id and shape (checked against the base it is loaded into);
the task, its kind (``kinds.py``) and labels, or a multi-task adapter's tasks; what the run measured and how it
trained. A model the kit trained or loaded carries its metadata (:func:`attach_meta`), which saving writes back.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from ..backends.files import KIT_FILE
from ..errors import AdapterKitError
from ..kinds import KINDS
from ..registry import list_methods
from ..version import __version__


@dataclass
class AdapterMeta:
    """What the kit records beside the library's own files."""

    method: str
    backend: str
    adapter_name: str
    base_model: str
    label_names: list[str]
    model_type: str = ""
    hidden_size: int = 0
    num_hidden_layers: int = 0
    task: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # multi-task models: [{name, kind, label_names}] in the adapter's task order (task ids are positions in it)
    heads: list[dict[str, Any]] = field(default_factory=list)
    # multi-task instruction-tuned adapters (kind "causal-lm"): [{name, label_names}] in the adapter's task order
    tasks: list[dict[str, Any]] = field(default_factory=list)
    kit_version: str = __version__
    # single-task models: "sequence" (one label per input, AutoModelForSequenceClassification) or "token" (one label
    # per token, AutoModelForTokenClassification). Folders written before this key existed are "sequence".
    kind: str = "sequence"

    @classmethod
    def for_model(cls, model: PreTrainedModel, **values: Any) -> AdapterMeta:
        config = model.config
        return cls(
            model_type=config.model_type,
            hidden_size=getattr(config, "hidden_size", 0),
            num_hidden_layers=getattr(config, "num_hidden_layers", 0),
            **values,
        )

    @classmethod
    def read(cls, directory: Path) -> AdapterMeta:
        path = Path(directory) / KIT_FILE
        if not path.is_file():
            raise AdapterKitError(
                f"`{directory}` is not an hf_adapter_kit adapter folder: it has no {KIT_FILE}. "
                "Give a folder written by hf_adapter_kit.train or save_adapter."
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise AdapterKitError(f"{path} is not valid JSON: {err}.") from err
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data] if isinstance(data, dict) else required
        if missing:
            raise AdapterKitError(f"{path} is not a valid {KIT_FILE}: it lacks the keys {missing}.")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            warnings.warn(
                f"{path} has keys {extra} that hf_adapter_kit {__version__} does not know (written by a newer "
                "version?); they are ignored.",
                stacklevel=2,
            )
        if data.get("kind", "sequence") not in KINDS:
            raise AdapterKitError(f"{path}: `kind`={data['kind']!r} is not valid: expected one of {list(KINDS)}.")
        if data["method"] not in list_methods():
            raise AdapterKitError(
                f"{path}: `method`={data['method']!r} is not a method hf_adapter_kit {__version__} knows "
                f"({', '.join(list_methods())}); it was written by another version, or by hand."
            )
        return cls(**{k: v for k, v in data.items() if k in known})


def attach_meta(model: torch.nn.Module, meta: AdapterMeta) -> None:
    """Remember on the model which method/backend/adapter it carries (used by save_adapter and remove_adapter)."""
    model.hf_adapter_kit_meta = meta


def meta_of(model: torch.nn.Module) -> AdapterMeta:
    meta = getattr(model, "hf_adapter_kit_meta", None)
    if meta is None:
        raise AdapterKitError("`model` carries no hf_adapter_kit adapter: train one or load it with from_pretrained.")
    return meta
