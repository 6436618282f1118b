"""Training speed, measured side by side in one run on the embedded default (issue: recipes and comparison).

1. Step time of each method relative to full fine-tuning, on the same batches (batch 32, dynamic padding).
2. Training samples/s of the article's fixed padding to 100 tokens vs dynamic padding of shuffled batches vs dynamic
   padding of length-grouped batches (the kit's default), with the Pfeiffer adapter.

Rounds interleave the variants, so that a slow patch of a shared machine hits all of them; the median per variant
is reported. Usage: python bench/bench_training.py [--steps 20] [--rounds 3] [--out bench/results/training-cpu.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_adapter_kit import get_config, get_method
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.data import load_task
from hf_adapter_kit.modeling import DEFAULT_MODEL, load_base_model, load_tokenizer


METHODS = ["full", "head", "pfeiffer", "houlsby", "lora"]


def make_model(method: str, labels: list[str]):
    spec = get_method(method)
    torch.manual_seed(0)
    base = load_base_model(DEFAULT_MODEL, labels)
    model = get_backend(spec.default_backend).attach(base, get_config(method), "bench")
    params = [p for p in model.parameters() if p.requires_grad]
    return model.train(), torch.optim.AdamW(params, lr=spec.learning_rate)


def time_steps(model, optimizer, batches) -> float:
    """Seconds per optimizer step over the given batches (forward, backward, step)."""
    start = time.perf_counter()
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def batches_from(dataset, order, collator, batch_size, steps):
    """``steps`` batches spread evenly over one epoch in this order (the start of a length-grouped epoch holds
    its longest batches, so the first ones would not be representative)."""
    epoch = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    picked = [epoch[int(k * len(epoch) / steps)] for k in range(steps)]
    return [collator([dataset[int(i)] for i in indices]) for indices in picked]


def padded_tokens_per_epoch(lengths, order, batch_size, fixed: int | None = None) -> int:
    """Exact token positions one epoch computes: each batch pads to its longest example (or to ``fixed``)."""
    total = 0
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        total += len(chunk) * (fixed or max(lengths[j] for j in chunk))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--out", default="bench/results/training-cpu.md")
    args = parser.parse_args()

    task = load_task("tweets-polarity")
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    train = task.splits["train"]

    def encode(padding, max_length):
        return train.map(
            lambda b: {
                **tokenizer(b["text"], truncation=True, max_length=max_length, padding=padding),
                "labels": b["label"],
            },
            batched=True,
            remove_columns=train.column_names,
        )

    dynamic, fixed = encode(False, 128), encode("max_length", 100)
    collator = DataCollatorWithPadding(tokenizer)
    generator = torch.Generator().manual_seed(0)
    shuffled = torch.randperm(len(dynamic), generator=generator).tolist()
    lengths = [len(ids) for ids in dynamic["input_ids"]]
    grouped = list(LengthGroupedSampler(args.batch_size, lengths=lengths, generator=generator))
    same_batches = batches_from(dynamic, shuffled, collator, args.batch_size, args.steps)
    padding_variants = {
        "fixed padding to 100 (article)": batches_from(fixed, shuffled, collator, args.batch_size, args.steps),
        "dynamic, shuffled": same_batches,
        "dynamic, length-grouped (kit default)": batches_from(dynamic, grouped, collator, args.batch_size, args.steps),
    }
    tokens = {
        "fixed padding to 100 (article)": padded_tokens_per_epoch(lengths, shuffled, args.batch_size, fixed=100),
        "dynamic, shuffled": padded_tokens_per_epoch(lengths, shuffled, args.batch_size),
        "dynamic, length-grouped (kit default)": padded_tokens_per_epoch(lengths, grouped, args.batch_size),
    }

    models = {m: make_model(m, task.label_names) for m in METHODS}
    trainable = {m: sum(p.numel() for p in models[m][0].parameters() if p.requires_grad) for m in METHODS}
    step_times: dict[str, list[float]] = {m: [] for m in METHODS}
    padding_times: dict[str, list[float]] = {name: [] for name in padding_variants}
    for m in METHODS:  # warm-up: first steps pay for allocations
        time_steps(*models[m], same_batches[:2])
    for _ in range(args.rounds):
        for m in METHODS:
            step_times[m].append(time_steps(*models[m], same_batches))
        for name, batches in padding_variants.items():
            padding_times[name].append(time_steps(*models["pfeiffer"], batches))

    full = statistics.median(step_times["full"])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    lines = [
        "# Training speed on the embedded default",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/bench_training.py --steps {args.steps} "
        f"--rounds {args.rounds}` on {machine}, no GPU. all-MiniLM-L6-v2, tweets-polarity, batch "
        f"{args.batch_size}; median of {args.rounds} interleaved rounds of {args.steps} steps.",
        "",
        "## Step time by method (same batches, dynamic padding)",
        "",
        "| method | trainable params | s/step | vs full |",
        "|---|---|---|---|",
    ]
    for m in METHODS:
        t = statistics.median(step_times[m])
        lines.append(f"| {m} | {trainable[m]:,} | {t:.3f} | {t / full:.2f} |")
    base = statistics.median(padding_times["fixed padding to 100 (article)"])
    lines += [
        "",
        "## Padding (Pfeiffer adapter)",
        "",
        f"Padded tokens: exact, over one epoch of {len(lengths):,} tweets; time: {args.steps} batches spread over the "
        "epoch.",
        "",
        "| batches | padded tokens per epoch | samples/s | vs fixed 100 |",
        "|---|---|---|---|",
    ]
    for name in padding_variants:
        t = statistics.median(padding_times[name])
        lines.append(f"| {name} | {tokens[name]:,} | {args.batch_size / t:.1f} | {base / t:.2f}x |")
    report = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
