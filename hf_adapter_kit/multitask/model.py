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

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.utils import ModelOutput

from ..backends import get_backend
from ..backends.files import TASK_HEADS_WEIGHTS, load_into, weight_file
from ..errors import choices, invalid
from ..folders import (
    AdapterMeta,
    attach_meta,
    check_compatible,
    folder_meta,
    push_to_hub,
    resolve_adapter,
    save_adapter,
)
from ..kinds import CLASSIFICATION
from ..modeling import resolve_model_path
from ..modeling.checkpointing import enable, pretrained_inside
from ..modeling.families import is_decoder
from ..registry import get_method, names_where
from ..routing import check_tasks, resolve_task_ids


@dataclass(frozen=True)
class TaskHead:
    """A task's head: ``kind`` ``"sequence"`` or ``"token"``, its number of labels and (optionally) their names."""

    kind: str
    num_labels: int
    label_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.kind not in CLASSIFICATION:
            raise choices("kind", self.kind, CLASSIFICATION)
        if isinstance(self.num_labels, bool) or not isinstance(self.num_labels, int) or self.num_labels < 1:
            raise choices("num_labels", self.num_labels, ["an integer >= 1"])
        if self.label_names is not None:
            names = tuple(self.label_names)
            if len(names) != self.num_labels or not all(isinstance(n, str) for n in names):
                raise invalid("label_names", self.label_names, f"{self.num_labels} label names (strings).")
            object.__setattr__(self, "label_names", names)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.label_names or tuple(f"LABEL_{i}" for i in range(self.num_labels))


@dataclass
class MultiTaskOutput(ModelOutput):
    """``logits[task]`` holds the logits of that task's examples, ``rows[task]`` their rows in the batch."""

    loss: torch.Tensor | None = None
    logits: dict[str, torch.Tensor] | None = None
    rows: dict[str, torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class MultiTaskModel(nn.Module):
    """A shared encoder (``AutoModel`` with a multi-task adapter) and a head per task, routed by ``task_ids``.

    It answers what pipelines and users ask of a ``PreTrainedModel``: ``config``, ``device``, ``dtype``, every input
    of the base model, ``save_pretrained`` / ``push_to_hub`` / ``from_pretrained``; ``task_model(name)`` is one task
    as a standard classification model (``transformers`` pipelines, evaluation), sharing these weights.
    """

    # the loss averages over each task's labelled tokens itself: the Trainer must not hand it num_items_in_batch
    accepts_loss_kwargs = False

    def __init__(self, encoder: nn.Module, heads: dict[str, TaskHead], dropout: float = 0.1):
        super().__init__()
        self.tasks = list(check_tasks(list(heads), argument="heads"))
        self.encoder = encoder
        self.specs = dict(heads)
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, spec.num_labels) for name, spec in heads.items()})
        self.decoder = is_decoder(encoder.config)  # a sequence head reads a decoder's last token

    @property
    def config(self):  # what the Trainer and the kit read from a model
        return self.encoder.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.encoder.parameters() if p.dtype.is_floating_point)

    def can_generate(self) -> bool:
        return False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(pretrained_inside(self), "is_gradient_checkpointing", False))

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        """Checkpoint the encoder's blocks; the adapters train and every task routes as without (see
        :mod:`hf_adapter_kit.modeling.checkpointing`)."""
        enable(self, gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        pretrained_inside(self).gradient_checkpointing_disable()

    def labels_of(self, task: str) -> tuple[str, ...]:
        """The label names of ``task``'s head (``LABEL_i`` for a head built without names)."""
        return self.specs[task].labels

    def task_index(self, task, kind: str | None = None) -> int:
        """The position of ``task`` (a name or an index) in ``tasks``; with ``kind``, its head must be of that kind."""
        allowed = [t for t in self.tasks if kind is None or self.specs[t].kind == kind]
        index = resolve_task_ids(task, self.tasks, 1)[0].item() if task is not None else None
        if index is None or self.tasks[index] not in allowed:
            raise invalid("task_ids", task, f"one of the model's {kind + ' ' if kind else ''}tasks {allowed}.")
        return index

    def forward(self, input_ids=None, attention_mask=None, task_ids=None, labels=None, **inputs) -> MultiTaskOutput:
        """``inputs`` are the encoder's own (``token_type_ids``, ``position_ids``, ``inputs_embeds``, ...)."""
        if input_ids is None and inputs.get("inputs_embeds") is None:
            raise invalid("input_ids", None, "token ids, or `inputs_embeds` instead.")
        shape = input_ids.shape if input_ids is not None else inputs["inputs_embeds"].shape[:2]
        device = input_ids.device if input_ids is not None else inputs["inputs_embeds"].device
        ids = resolve_task_ids(task_ids, self.tasks, shape[0], device)
        if attention_mask is None:
            attention_mask = torch.ones(shape, dtype=torch.long, device=device)
        inputs.pop("return_dict", None)  # the heads need the encoder's named outputs
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask, task_ids=ids, **inputs)
        hidden = encoded.last_hidden_state
        out = MultiTaskOutput(logits={}, rows={})
        for key in ("hidden_states", "attentions"):
            if encoded.get(key) is not None:
                out[key] = encoded[key]
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

    # -- one task as a standard model ---------------------------------------------------------------------------------
    def task_model(self, task) -> TaskModel:
        """``task`` (a name or index) as a ``...ForSequenceClassification`` / ``...ForTokenClassification``-like
        model: its own ``config`` (labels), the shared weights. Several can serve side by side without a reload."""
        return TaskModel(self, self.tasks[self.task_index(task)])

    # -- new tasks ----------------------------------------------------------------------------------------------------
    def add_task(self, name: str, head: TaskHead) -> list[nn.Parameter]:
        """Add a task to a trained model whose method takes new tasks (its spec's ``add_task``: Hyperformer++, a new
        task embedding): the task and a new head, served at once.

        Every other parameter stops requiring gradients, so training touches nothing the other tasks depend on;
        returns the parameters to train (the new task's and the head's).
        """
        if not isinstance(head, TaskHead):
            raise invalid("head", head, "a TaskHead, e.g. TaskHead('sequence', 2, ('negative', 'positive')).")
        meta = getattr(self, "hf_adapter_kit_meta", None)
        if meta is None:
            raise invalid("model", "MultiTaskModel", "a model from hf_adapter_kit (train or from_pretrained).")
        spec = get_method(meta.method)
        if spec.add_task is None:
            takes = names_where(lambda s: s.add_task is not None)
            raise invalid(
                "add_task",
                name,
                f"a call on a model whose method takes new tasks ({', '.join(takes)}); this model's {spec.name!r} "
                "adapter has its tasks fixed when it is built: train a new one with every task.",
            )
        check_tasks([*self.tasks, name], argument="name")
        adapter_name = get_backend(meta.backend).library_adapter_name(meta.adapter_name)
        embedding = spec.add_task(self.encoder, name, adapter_name=adapter_name, freeze_others=False)
        for param in self.parameters():  # the heads too, which the encoder's add_task does not see
            param.requires_grad_(False)
        embedding.requires_grad_(True)
        layer = nn.Linear(self.config.hidden_size, head.num_labels).to(
            device=self.device, dtype=self.heads[self.tasks[0]].weight.dtype
        )
        self.heads[name] = layer
        self.tasks.append(name)
        self.specs[name] = head
        if meta is not None:
            meta.heads.append({"name": name, "kind": head.kind, "label_names": list(head.labels)})
        return [embedding, *layer.parameters()]

    # -- PreTrainedModel's saving and loading ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory, **kwargs):
        """Write the adapter folder (the library's adapter files, the heads, the card) atomically."""
        return save_adapter(self, save_directory)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the adapter folder with its card; ``kwargs`` as :func:`hf_adapter_kit.push_to_hub`."""
        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls, repo_id_or_path, *, revision=None, token=None, base_model=None, dtype=None, trust_remote_code=False
    ) -> MultiTaskModel:
        """Load a multi-task adapter folder or Hub repo (arguments as :func:`hf_adapter_kit.from_pretrained`)."""
        directory = resolve_adapter(repo_id_or_path, revision=revision, token=token)
        meta = folder_meta(directory)
        if not meta.heads:
            raise invalid("repo_id_or_path", str(repo_id_or_path), "a multi-task adapter (it holds one task).")
        return cls.from_folder(
            directory, meta, base_model=base_model, dtype=dtype, trust_remote_code=trust_remote_code
        )

    @classmethod
    def from_folder(
        cls, directory: Path, meta: AdapterMeta, *, base_model=None, dtype=None, trust_remote_code=False
    ) -> MultiTaskModel:
        """Rebuild a saved multi-task model (safetensors only) on a freshly loaded encoder, in eval mode."""
        base_id = base_model or meta.base_model
        encoder = AutoModel.from_pretrained(
            resolve_model_path(base_id), dtype=dtype, trust_remote_code=trust_remote_code
        )
        check_compatible(encoder, meta, directory)
        weight_file(directory, TASK_HEADS_WEIGHTS)
        encoder = get_backend(meta.backend).load_encoder(encoder, directory, meta.adapter_name)
        heads = {h["name"]: TaskHead(h["kind"], len(h["label_names"]), tuple(h["label_names"])) for h in meta.heads}
        model = cls(encoder, heads)
        attach_meta(model, meta)
        model.load_weights(directory)
        return model.eval()

    def load_weights(self, directory: Path) -> None:
        """Copy a saved folder's adapter and heads into this model (checkpoint resume, best-model restore)."""
        meta = self.hf_adapter_kit_meta
        get_backend(meta.backend).load_weights(self.encoder, directory, meta.adapter_name)
        load_into(self.heads, weight_file(directory, TASK_HEADS_WEIGHTS))


class TaskModel(nn.Module):
    """One task of a :class:`MultiTaskModel` as a standard classification model; it shares the model's weights.

    ``config`` carries the task's ``id2label``; ``forward`` takes the base model's inputs (and ``labels``) and returns
    a ``SequenceClassifierOutput`` or ``TokenClassifierOutput``, so ``transformers`` pipelines serve it as they
    serve ``AutoModelFor...Classification``.
    """

    accepts_loss_kwargs = False

    def __init__(self, model: MultiTaskModel, task: str):
        super().__init__()
        self.model, self.task = model, task
        labels = model.labels_of(task)
        self.config = copy.deepcopy(model.config)
        self.config.num_labels = len(labels)  # sets id2label / label2id to generic names first
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {name: i for i, name in enumerate(labels)}

    @property
    def kind(self) -> str:
        return self.model.specs[self.task].kind

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def can_generate(self) -> bool:
        return False

    def forward(self, input_ids=None, attention_mask=None, labels=None, **inputs):
        out = self.model(input_ids, attention_mask, task_ids=self.task, labels=labels, **inputs)
        result = SequenceClassifierOutput if self.kind == "sequence" else TokenClassifierOutput
        return result(
            loss=out.loss, logits=out.logits[self.task], hidden_states=out.hidden_states, attentions=out.attentions
        )


def attach_encoder(encoder: nn.Module, config, backend: str, adapter_name: str) -> nn.Module:
    """Add a multi-task adapter to a bare encoder (``AutoModel``) with the library's own API; only it trains."""
    return get_backend(backend).attach_encoder(encoder, config, adapter_name)
