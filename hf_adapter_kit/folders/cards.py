"""Model cards filled from the training run, rendered from ``model_cards/adapter_card.md``.

Front matter through ``huggingface_hub.ModelCardData`` (library, base model when it is a Hub id, relation, tags,
datasets, license, pipeline tag and a ``model-index`` with the measured metrics); the body from the adapter's metadata
(``AdapterMeta``). This module hands the template plain values; the template writes the usage code, one block per
backend, single- or multi-task, and head kind.
"""

from __future__ import annotations

import importlib.metadata
import os
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..backends.files import CARD_FILE
from ..data.instructions import render_prompt
from ..data.text2text import render_source
from ..kinds import GENERATIVE, KINDS
from ..modeling import is_embedded, looks_like_path
from ..registry import get_method
from .meta import AdapterMeta


LIBRARY = {"adapters": "adapter-transformers", "peft": "peft", "transformers": "transformers"}
# result key -> (model-index metric type, name shown)
METRIC_TYPES = {
    "accuracy": ("accuracy", "Accuracy"),
    "f1_macro": ("f1", "Macro F1"),
    "entity_precision": ("precision", "Entity precision"),
    "entity_recall": ("recall", "Entity recall"),
    "entity_f1": ("f1", "Entity F1"),
    "token_accuracy": ("accuracy", "Token accuracy"),
    "perplexity": ("perplexity", "Perplexity"),
}
PIPELINE_TAGS = {name: kind.pipeline_tag for name, kind in KINDS.items()}  # AdapterMeta.kind -> Hub tag


def template_path() -> str:
    return str(resources.files("hf_adapter_kit.model_cards") / "adapter_card.md")


def render_card(
    directory: str | os.PathLike,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    display_path: str | os.PathLike | None = None,
    meta: AdapterMeta | None = None,
) -> ModelCard:
    """The card for a saved adapter folder; usage snippets name ``repo_id``, else the folder (``display_path`` when
    the card is written in a staging folder that will be renamed).

    ``meta``: the adapter's metadata when the caller has it at hand (else read from the folder's
    ``hf_adapter_kit.json``). The template (``model_cards/adapter_card.md``) writes the usage code from it.
    """
    directory = Path(directory)
    meta = meta or AdapterMeta.read(directory)
    spec = get_method(meta.method)
    adapter = repo_id or str(display_path or directory)
    training = meta.training
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file() and p.name != CARD_FILE)
    pipeline_tag = PIPELINE_TAGS[meta.kind]
    title = f"{meta.method} adapter for {meta.task or pipeline_tag.replace('-', ' ')}"
    # multi-task adapters report each task's own test metrics; single-task ones their task's
    per_task = training.get("task_metrics") or ({meta.task: meta.metrics} if meta.task else {})
    measured = [(task, key, value) for task, m in per_task.items() for key, value in m.items() if key in METRIC_TYPES]
    kinds = {head["name"]: head["kind"] for head in meta.heads}  # a multi-task adapter's tasks may differ in kind
    results = [
        EvalResult(
            task_type=PIPELINE_TAGS[kinds.get(task, meta.kind)],
            dataset_type=task,
            dataset_name=task,
            dataset_split="test",
            metric_type=METRIC_TYPES[key][0],
            metric_name=METRIC_TYPES[key][1],
            metric_value=round(value, 4),
        )
        for task, key, value in measured
    ]
    base_on_hub = is_hub_id(meta.base_model)
    card_data = ModelCardData(
        library_name=LIBRARY[meta.backend],
        base_model=meta.base_model if base_on_hub else None,  # the Hub links base_model: a local folder is none
        tags=["hf_adapter_kit", meta.method, pipeline_tag, LIBRARY[meta.backend]],
        datasets=list(per_task) or None,
        license=license,
        pipeline_tag=pipeline_tag,
        model_name=title,
        eval_results=results or None,
        base_model_relation="finetune" if spec.whole_model else "adapter",
    )
    trainable, base = training.get("trainable_parameters", 0), training.get("base_parameters", 0)
    return ModelCard.from_template(
        card_data,
        template_path=template_path(),
        title=title,
        summary=spec.summary,
        reference=spec.reference,
        base_model=meta.base_model,
        base_model_url=f"https://huggingface.co/{meta.base_model}" if base_on_hub else "",
        base_embedded=is_embedded(meta.base_model),
        task=meta.task,
        task_description=training.get("task_description", ""),
        model_type=meta.model_type,
        num_hidden_layers=meta.num_hidden_layers,
        hidden_size=meta.hidden_size,
        method=meta.method,
        whole_model=spec.whole_model,
        backend=meta.backend,
        library=LIBRARY[meta.backend],
        # methods PEFT / adapters know only once hf_adapter_kit is imported (the registry's PeftMethod / AdaptersMethod)
        registers_method=meta.backend in {"peft", "adapters"} and getattr(spec, meta.backend) is not None,
        trainable_parameters=f"{trainable:,}",
        base_parameters=f"{base:,}",
        trainable_percent=f"{100 * trainable / base:.2f}%" if base else "n/a",
        adapter_size_bytes=f"{size:,}",
        labels=_labels(meta) or ("none: free text, generated" if meta.kind in GENERATIVE else ""),
        label_names=list(meta.label_names),
        token=meta.kind == "token",
        generation=meta.kind == "causal-lm",
        text2text=meta.kind == "seq2seq-lm",
        messages=_example_messages(meta),
        prompt=_example_prompt(meta),
        task_id=meta.tasks[0]["name"] if meta.tasks else None,  # a multi-task adapter's usage code asks its first
        max_new_tokens=training.get("max_new_tokens", 16),
        heads=[dict(head) for head in meta.heads],
        adapter=adapter,
        adapter_is_repo=repo_id is not None,
        literal=repr,  # values enter the usage code as Python literals
        results=[
            {"task": task, "split": "test", "metric": METRIC_TYPES[k][1], "value": f"{v:.4f}"}
            for task, k, v in measured
        ]
        + _baseline_rows(meta),
        hyperparameters=[(k, v) for k, v in training.items() if k not in _NOT_HYPERPARAMETERS],
        train_runtime=f"{training.get('train_runtime_s', 0):.0f} s ({training.get('global_steps', 0)} steps)",
        hardware=training.get("hardware", "unknown hardware"),
        limitations=_limitations(meta),
        versions=_versions(meta.backend),
    )


def is_hub_id(name: str) -> bool:
    """Whether a base model name is a Hub id (linked, and ``base_model`` metadata) rather than a local folder."""
    if not name:
        return False
    if is_embedded(name):
        return True
    if looks_like_path(name) or Path(name).expanduser().exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


_NOT_HYPERPARAMETERS = {
    "trainable_parameters",
    "base_parameters",
    "hardware",
    "train_runtime_s",
    "global_steps",
    "task_description",
    "data",
    "generation_samples",  # instruction tuning: a few answers of each model, kept in hf_adapter_kit.json
    "zero_shot_samples",
    "test_examples",
    "probe_train_accuracy",  # the head's starting probe on its training examples (head_init="probe")
}


def write_card(
    directory: str | os.PathLike,
    repo_id: str | None = None,
    display_path: str | os.PathLike | None = None,
    meta: AdapterMeta | None = None,
) -> Path:
    path = Path(directory) / CARD_FILE
    render_card(directory, repo_id, display_path=display_path, meta=meta).save(str(path))
    return path


def _labels(meta: AdapterMeta) -> str:
    named = meta.heads or meta.tasks  # a multi-task adapter's tasks, each with its labels
    if named:
        return "; ".join(f"{h['name']}: " + ", ".join(f"`{n}`" for n in h["label_names"]) for h in named)
    return ", ".join(f"`{name}`" for name in meta.label_names)


def _baseline_rows(meta: AdapterMeta) -> list[dict[str, str]]:
    """A generative adapter's zero-shot base model, measured in the same run: in the card's body only (the
    model-index lists what this model scored)."""
    per_task = meta.training.get("task_metrics") or {meta.task: meta.metrics}
    return [
        {"task": task, "split": "test", "metric": f"{METRIC_TYPES[key][1]}, base model zero-shot",
         "value": f"{metrics[f'zero_shot_{key}']:.4f}"}
        for task, metrics in per_task.items()
        for key in ("accuracy", "perplexity")
        if f"zero_shot_{key}" in metrics
    ]  # fmt: skip


EXAMPLE_TEXT = "What a lovely flight, thank you!"  # what a generative card's usage code asks about


def _first_task(meta: AdapterMeta) -> tuple[str, list[str]]:
    """The task a generative card's usage code asks (a multi-task adapter's first) and its answers."""
    return (meta.tasks[0]["name"], meta.tasks[0]["label_names"]) if meta.tasks else (meta.task, meta.label_names)


def _example_messages(meta: AdapterMeta) -> list[dict[str, str]]:
    """The chat prompt a causal-lm card's usage code sends: the instruction the adapter was trained on for a
    classification task, a free question otherwise."""
    task, labels = _first_task(meta)
    if labels:
        return render_prompt(task, labels, EXAMPLE_TEXT)
    return [{"role": "user", "content": "What can you help me with?"}]


def _example_prompt(meta: AdapterMeta) -> str:
    """The input a seq2seq-lm card's usage code sends: a classification task's text with its task prefix, as the
    adapter was trained (``data/text2text.py``), the text alone otherwise."""
    task, labels = _first_task(meta)
    return render_source(task, labels, EXAMPLE_TEXT) if labels else EXAMPLE_TEXT


def _limitations(meta: AdapterMeta) -> str:
    training = meta.training
    return (
        f"Trained on {training.get('train_examples', 'an unknown number of')} examples of `{meta.task}` and evaluated "
        "on its held-out test split only; expect lower accuracy on text unlike it (other domains, languages, or "
        f"lengths beyond {training.get('max_length', 'the training maximum')} tokens, which are truncated). "
        f"The adapter works only with `{meta.base_model}`. It inherits the biases of the base model and of the "
        "training data and has not been evaluated for them; do not use it for decisions about people."
    )


def _versions(backend: str) -> list[tuple[str, str]]:
    names = ["hf_adapter_kit", "torch", "transformers", backend, "datasets", "huggingface_hub"]
    out = []
    for name in dict.fromkeys(names):
        try:
            out.append((name, importlib.metadata.version(name.replace("_", "-"))))
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


__all__ = ["render_card", "write_card"]
