"""One encoder with a multi-task adapter (Hyperformer++ or multi-task parallel) and one head per task.

Tasks may differ in kind: ``"sequence"`` heads classify the whole input (pooled: first token for encoders, last
non-padding token for decoders), ``"token"`` heads label every token (NER). A batch may mix tasks; each example goes
through its task's adapter (``task_ids`` are handed to the encoder) and its task's head.

>>> heads = {"sentiment": TaskHead("sequence", 2), "ner": TaskHead("token", 5)}  # doctest: +SKIP
>>> model = MultiTaskModel(encoder_with_adapter, heads)                            # doctest: +SKIP
>>> out = model(input_ids, attention_mask, task_ids=["sentiment", "ner"], labels=labels)  # doctest: +SKIP
>>> out.logits["ner"], out.rows["ner"]   # logits of the ner examples, and their rows in the batch  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .errors import choices
from .methods.common.routing import check_tasks, resolve_task_ids


KINDS = ("sequence", "token")


@dataclass(frozen=True)
class TaskHead:
    kind: str
    num_labels: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise choices("kind", self.kind, KINDS)
        if isinstance(self.num_labels, bool) or not isinstance(self.num_labels, int) or self.num_labels < 1:
            raise choices("num_labels", self.num_labels, ["an integer >= 1"])


@dataclass
class MultiTaskOutput(ModelOutput):
    """``logits[task]`` holds the logits of that task's examples, ``rows[task]`` their rows in the batch."""

    loss: torch.Tensor | None = None
    logits: dict[str, torch.Tensor] | None = None
    rows: dict[str, torch.Tensor] | None = None


class MultiTaskModel(nn.Module):
    """A shared encoder (``AutoModel`` with a multi-task adapter) and a head per task, routed by ``task_ids``."""

    def __init__(self, encoder: nn.Module, heads: dict[str, TaskHead], dropout: float = 0.1):
        super().__init__()
        self.tasks = list(check_tasks(list(heads), argument="heads"))
        self.encoder = encoder
        self.specs = dict(heads)
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, spec.num_labels) for name, spec in heads.items()})
        self.decoder = encoder.config.model_type in {"gpt2", "llama"}

    @property
    def config(self):  # what the Trainer and the kit read from a model
        return self.encoder.config

    def forward(self, input_ids, attention_mask=None, task_ids=None, labels=None) -> MultiTaskOutput:
        ids = resolve_task_ids(task_ids, self.tasks, input_ids.shape[0], input_ids.device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, task_ids=ids).last_hidden_state
        out = MultiTaskOutput(logits={}, rows={})
        losses = []
        for index in sorted(set(ids.tolist())):
            name = self.tasks[index]
            rows = (ids == index).nonzero().squeeze(1)
            features = hidden.index_select(0, rows)
            if self.specs[name].kind == "sequence":
                features = self._pool(features, attention_mask.index_select(0, rows))
            logits = self.heads[name](self.dropout(features))
            out.logits[name], out.rows[name] = logits, rows
            if labels is not None:
                target = labels.index_select(0, rows)
                if self.specs[name].kind == "sequence":
                    target = target[:, 0] if target.dim() > 1 else target
                # token labels use -100 for positions that carry no label (padding, sub-words)
                losses.append(
                    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum")
                    / max(int((target != -100).sum()), 1)
                    * rows.numel()
                )
        if losses:
            out["loss"] = torch.stack(losses).sum() / ids.numel()  # ModelOutput: item assignment sets both views
        return out

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.decoder:
            return hidden[:, 0]
        last = mask.sum(dim=1).clamp(min=1) - 1  # right padding: the last real token sees the whole input
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def attach_encoder(encoder: nn.Module, config, backend: str, adapter_name: str) -> nn.Module:
    """Add a multi-task adapter to a bare encoder (``AutoModel``) with the library's own API; only it trains."""
    from .backends.base import check_fits

    check_fits(config, encoder)
    if backend == "peft":
        import peft

        config.task_type = "FEATURE_EXTRACTION"
        config.modules_to_save = None
        return peft.get_peft_model(encoder, config, adapter_name="default")
    import adapters

    from .logs import quiet_adapter_activation

    adapters.init(encoder)
    with quiet_adapter_activation():
        encoder.add_adapter(adapter_name, config=config)
        encoder.train_adapter(adapter_name)
    return encoder


HEADS_FILE = "heads.safetensors"


def save_heads(model: MultiTaskModel, directory) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.heads.state_dict().items()}, str(directory / HEADS_FILE))


def load_weights(model: MultiTaskModel, directory, backend: str, adapter_name: str) -> None:
    """Copy a saved folder's adapter and heads into ``model`` (checkpoint resume, best-model restore)."""
    from pathlib import Path

    from .backends import get_backend
    from .backends.base import load_into, weight_file

    directory = Path(directory)
    if backend == "peft":
        get_backend("peft").load_weights(model.encoder, directory, adapter_name)
    else:
        load_into(model.encoder, weight_file(directory, "adapter.safetensors"))
    load_into(model.heads, weight_file(directory, HEADS_FILE))


def load_multitask(directory, meta, encoder: nn.Module) -> MultiTaskModel:
    """Rebuild a saved multi-task model on a freshly loaded encoder (safetensors only)."""
    from .backends.base import weight_file

    weight_file(directory, HEADS_FILE)
    if meta.backend == "peft":
        import peft

        weight_file(directory, "adapter_model.safetensors")
        encoder = peft.PeftModel.from_pretrained(encoder, str(directory), adapter_name="default")
    else:
        import adapters

        weight_file(directory, "adapter.safetensors")
        from .logs import quiet_adapter_activation

        adapters.init(encoder)
        with quiet_adapter_activation():
            encoder.load_adapter(str(directory), load_as=meta.adapter_name, set_active=True, use_safetensors=True)
    heads = {spec["name"]: TaskHead(spec["kind"], len(spec["label_names"])) for spec in meta.heads}
    model = MultiTaskModel(encoder, heads)
    load_weights(model, directory, meta.backend, meta.adapter_name)
    return model.eval()
