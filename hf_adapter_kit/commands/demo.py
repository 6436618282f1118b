"""The adapter workflow end to end (``make demo``): train, evaluate, save, reload, serve, remove.

Each step prints what it did and checks what it claims: reloaded logits are compared to the trained model's, and
after removal the base model's hidden states are compared bit for bit with those before the adapter was added.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..backends import get_backend
from ..folders import AdapterMeta, attach_meta, remove_adapter
from ..modeling import encoder_of, load_base_model
from ..serving import from_pretrained, pipeline
from ..training import train


def _say(step: str, text: str) -> None:
    print(f"\n[{step}] {text}", flush=True)


@torch.no_grad()
def logits(model: torch.nn.Module, tokenizer, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    return model(**batch).logits


@torch.no_grad()
def hidden_states(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """Output of the pretrained body (without the task head, which is new and trained)."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    return encoder_of(model)(**batch).last_hidden_state


def removal_check(adapter_dir: Path, tokenizer, texts: list[str]) -> tuple[bool, bool]:
    """(adapter changed the base's hidden states, removal restored them bit for bit) on a fresh base model."""
    meta = AdapterMeta.read(adapter_dir)
    base = load_base_model(meta.base_model, meta.label_names).eval()
    before = hidden_states(base, tokenizer, texts)
    model = get_backend(meta.backend).load(base, adapter_dir, meta.adapter_name)
    attach_meta(model, meta)
    with_adapter = hidden_states(get_backend(meta.backend).base_model(model), tokenizer, texts)
    restored = remove_adapter(model).eval()
    after = hidden_states(restored, tokenizer, texts)
    return not torch.equal(before, with_adapter), torch.equal(before, after)


def run_demo(method: str = "pfeiffer", task: str = "tweets-polarity", output_dir: str = "outputs/demo", **kwargs: Any):
    """Run the seven steps and return the TrainResult; raises if a check fails."""
    started = time.perf_counter()
    _say("1/7 data + 2/7 train", f"method={method} task={task} -> {output_dir}")
    result = train(method=method, task=task, output_dir=output_dir, **kwargs)
    splits = {name: ds.num_rows for name, ds in result.task.splits.items()}
    print(f"data: {result.task.source}; splits {splits}; labels {result.task.label_names}")
    print(
        f"trainable parameters: {result.trainable_parameters:,} "
        f"({result.trainable_percent:.2f}% of the base's {result.base_parameters:,})"
    )

    _say("3/7 evaluate", "test split")
    print(f"accuracy {result.test_metrics['accuracy']:.4f}   macro F1 {result.test_metrics['f1_macro']:.4f}")

    _say("4/7 save", f"adapter alone -> {result.adapter_dir}")
    for path in sorted(result.adapter_dir.iterdir()):
        print(f"  {path.name:28s} {path.stat().st_size:>10,d} bytes")
    print(f"adapter size: {result.adapter_size_bytes:,} bytes")

    texts = result.task.splits["test"]["text"][:32]
    _say("5/7 reload", "into a freshly loaded base model")
    reloaded = from_pretrained(result.adapter_dir)
    same = torch.equal(logits(result.model, result.tokenizer, texts), logits(reloaded, result.tokenizer, texts))
    print(f"logits identical to the trained model's on {len(texts)} test tweets: {same}")

    _say("6/7 pipeline", 'transformers.pipeline("text-classification") with the adapter attached')
    classifier = pipeline("text-classification", model=reloaded, tokenizer=result.tokenizer)
    examples = ["I love this, best day ever!", "Worst service I have ever had.", *texts[:3]]
    for text, prediction in zip(examples, classifier(examples), strict=True):
        print(f"  {prediction['label']:>9s} {prediction['score']:.3f}  {text[:70]!r}")

    _say("7/7 remove", "deactivate and delete the adapter")
    changed = restored = True
    if result.meta.backend == "transformers":
        print(f"method {method!r} adds no adapter to the base model: nothing to remove")
    else:
        changed, restored = removal_check(result.adapter_dir, result.tokenizer, texts)
        print(
            f"adapter changed the base model's outputs: {changed}; after removal bit-identical to before: {restored}"
        )

    print(f"\ndone in {time.perf_counter() - started:.0f} s; adapter at {result.adapter_dir}")
    if not (same and changed and restored):
        raise SystemExit("demo check failed: see the lines above")
    return result
