"""Model cards filled from the training run, rendered from ``model_cards/adapter_card.md``.

Front matter through ``huggingface_hub.ModelCardData`` (library, base model, relation, tags, datasets, license,
pipeline tag and a ``model-index`` with the measured metrics); the body from the adapter's ``hf_adapter_kit.json``.
"""

from __future__ import annotations

import importlib.metadata
import os
from importlib import resources
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .registry import get_method
from .saving import AdapterMeta


CARD_FILE = "README.md"
LIBRARY = {"adapters": "adapter-transformers", "peft": "peft", "transformers": "transformers"}
METRIC_TYPES = {"accuracy": ("accuracy", "Accuracy"), "f1_macro": ("f1", "Macro F1")}


def template_path() -> str:
    return str(resources.files("hf_adapter_kit.model_cards") / "adapter_card.md")


def render_card(
    directory: str | os.PathLike,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    display_path: str | os.PathLike | None = None,
) -> ModelCard:
    """The card for a saved adapter folder; usage snippets name ``repo_id``, else the folder (``display_path`` when
    the card is written in a staging folder that will be renamed)."""
    directory = Path(directory)
    meta = AdapterMeta.read(directory)
    spec = get_method(meta.method)
    reference = repo_id or str(display_path or directory)
    training = meta.training
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file() and p.name != CARD_FILE)
    title = f"{meta.method} adapter for {meta.task or 'text classification'}"
    # multi-task adapters report each task's own test metrics; single-task ones their task's
    per_task = training.get("task_metrics") or ({meta.task: meta.metrics} if meta.task else {})
    measured = [(task, key, value) for task, m in per_task.items() for key, value in m.items() if key in METRIC_TYPES]
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type=task,
            dataset_name=task,
            dataset_split="test",
            metric_type=METRIC_TYPES[key][0],
            metric_name=METRIC_TYPES[key][1],
            metric_value=round(value, 4),
        )
        for task, key, value in measured
    ]
    card_data = ModelCardData(
        library_name=LIBRARY[meta.backend],
        base_model=meta.base_model,
        tags=["hf_adapter_kit", meta.method, "text-classification", LIBRARY[meta.backend]],
        datasets=list(per_task) or None,
        license=license,
        pipeline_tag="text-classification",
        model_name=title,
        eval_results=results or None,
        base_model_relation="finetune" if meta.method == "full" else "adapter",
    )
    trainable, base = training.get("trainable_parameters", 0), training.get("base_parameters", 0)
    return ModelCard.from_template(
        card_data,
        template_path=template_path(),
        title=title,
        summary=spec.summary,
        reference=spec.reference,
        base_model=meta.base_model,
        base_model_url=f"https://huggingface.co/{meta.base_model}",
        task=meta.task,
        task_description=training.get("task_description", ""),
        model_type=meta.model_type,
        num_hidden_layers=meta.num_hidden_layers,
        hidden_size=meta.hidden_size,
        method=meta.method,
        backend=meta.backend,
        library=LIBRARY[meta.backend],
        trainable_parameters=f"{trainable:,}",
        base_parameters=f"{base:,}",
        trainable_percent=f"{100 * trainable / base:.2f}%" if base else "n/a",
        adapter_size_bytes=f"{size:,}",
        labels=_labels(meta),
        results=[
            {"task": task, "split": "test", "metric": METRIC_TYPES[k][1], "value": f"{v:.4f}"}
            for task, k, v in measured
        ],
        usage=_multitask_usage(meta, reference) if meta.heads else _usage(reference),
        plain_usage=_plain_usage(meta, reference),
        plain_title=f"With {LIBRARY[meta.backend]}'s own API"
        + (" (hf_adapter_kit registers this method with it)" if _is_kit_method(meta) else " (without hf_adapter_kit)"),
        hyperparameters=[(k, v) for k, v in training.items() if k not in _NOT_HYPERPARAMETERS],
        train_runtime=f"{training.get('train_runtime_s', 0):.0f} s ({training.get('global_steps', 0)} steps)",
        hardware=training.get("hardware", "unknown hardware"),
        limitations=_limitations(meta),
        versions=_versions(meta.backend),
    )


_NOT_HYPERPARAMETERS = {
    "trainable_parameters",
    "base_parameters",
    "hardware",
    "train_runtime_s",
    "global_steps",
    "task_description",
    "data",
}


def write_card(
    directory: str | os.PathLike, repo_id: str | None = None, display_path: str | os.PathLike | None = None
) -> Path:
    path = Path(directory) / CARD_FILE
    render_card(directory, repo_id, display_path=display_path).save(str(path))
    return path


def _usage(reference: str) -> str:
    return (
        "import hf_adapter_kit as kit\n\n"
        f'classifier = kit.pipeline("text-classification", model={reference!r})\n'
        'print(classifier(["What a lovely flight, thank you!", "Two hours late and nobody told us why."]))'
    )


def _is_kit_method(meta: AdapterMeta) -> bool:
    """Methods the libraries know only once hf_adapter_kit is imported (the registry's PEFT / adapters rows)."""
    from .registry import get_method

    spec = get_method(meta.method)
    return getattr(spec, meta.backend, None) is not None if meta.backend in {"peft", "adapters"} else False


def _labels(meta: AdapterMeta) -> str:
    if meta.heads:
        return "; ".join(f"{h['name']}: " + ", ".join(f"`{n}`" for n in h["label_names"]) for h in meta.heads)
    return ", ".join(f"`{name}`" for name in meta.label_names)


def _multitask_usage(meta: AdapterMeta, reference: str) -> str:
    tasks = [head["name"] for head in meta.heads]
    return (
        "import hf_adapter_kit as kit\n"
        "from transformers import AutoTokenizer\n\n"
        f"model = kit.from_pretrained({reference!r})   # encoder + adapter + one head per task\n"
        f"tokenizer = AutoTokenizer.from_pretrained({meta.base_model!r})\n"
        'batch = tokenizer(["What a lovely flight!", "Two hours late."], padding=True, return_tensors="pt")\n'
        f"out = model(batch['input_ids'], batch['attention_mask'], task_ids={[tasks[0], tasks[-1]]!r})\n"
        "print({task: logits.argmax(-1).tolist() for task, logits in out.logits.items()})"
    )


def _plain_usage(meta: AdapterMeta, reference: str) -> str:
    if meta.heads:  # the encoder's adapter through the library; the heads are in heads.safetensors
        opening = (
            "import hf_adapter_kit  # registers the method\nfrom transformers import AutoModel, AutoTokenizer\n\n"
        )
        opening += f"model = AutoModel.from_pretrained({meta.base_model!r})\n"
        opening += f"batch = AutoTokenizer.from_pretrained({meta.base_model!r})(['What a lovely flight!'], return_tensors='pt')\n"
        if meta.backend == "peft":
            load = f"from peft import PeftModel\nmodel = PeftModel.from_pretrained(model, {reference!r})\n"
        else:
            load = f"import adapters\nadapters.init(model)\nmodel.load_adapter({reference!r}, set_active=True, use_safetensors=True)\n"
        tasks = [head["name"] for head in meta.heads]
        return (
            opening
            + load
            + f"hidden = model(**batch, task_ids={tasks[:1]!r} * len(batch['input_ids'])).last_hidden_state"
        )
    kit = "import hf_adapter_kit  # registers the method with the library\n" if _is_kit_method(meta) else ""
    return kit + _plain_single(meta, reference)


def _plain_single(meta: AdapterMeta, reference: str) -> str:
    load_base = (
        "from transformers import AutoModelForSequenceClassification\n\n"
        f"labels = {meta.label_names!r}\n"
        "model = AutoModelForSequenceClassification.from_pretrained(\n"
        f"    {meta.base_model!r}, num_labels=len(labels), id2label=dict(enumerate(labels))\n)\n"
    )
    if meta.backend == "adapters":
        return (
            "import adapters\n" + load_base + "adapters.init(model)\n"
            f"model.load_adapter({reference!r}, set_active=True, use_safetensors=True)"
        )
    if meta.backend == "peft":
        return "from peft import PeftModel\n" + load_base + f"model = PeftModel.from_pretrained(model, {reference!r})"
    if meta.method == "full":
        return f"from transformers import AutoModelForSequenceClassification\n\nmodel = AutoModelForSequenceClassification.from_pretrained({reference!r})"
    return (
        "from safetensors.torch import load_file\n" + load_base + f"# head.safetensors from {reference}\n"
        "model.load_state_dict(load_file('head.safetensors'), strict=False)"
    )


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
