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
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type=meta.task,
            dataset_name=meta.task,
            dataset_split="test",
            metric_type=METRIC_TYPES[key][0],
            metric_name=METRIC_TYPES[key][1],
            metric_value=round(value, 4),
        )
        for key, value in meta.metrics.items()
        if key in METRIC_TYPES
    ]
    card_data = ModelCardData(
        library_name=LIBRARY[meta.backend],
        base_model=meta.base_model,
        tags=["hf_adapter_kit", meta.method, "text-classification", LIBRARY[meta.backend]],
        datasets=[meta.task] if meta.task else None,
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
        labels=", ".join(f"`{name}`" for name in meta.label_names),
        results=[
            {"task": meta.task, "split": "test", "metric": METRIC_TYPES[k][1], "value": f"{v:.4f}"}
            for k, v in meta.metrics.items()
            if k in METRIC_TYPES
        ],
        usage=_usage(reference),
        plain_usage=_plain_usage(meta, reference),
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


def _plain_usage(meta: AdapterMeta, reference: str) -> str:
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
