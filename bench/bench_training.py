"""Training speed, measured side by side in one run on the embedded default (issue: recipes and comparison).

1. Step time of each method relative to full fine-tuning, on the same batches (batch 32, dynamic padding), with raw
   ``adapters`` ``seq_bn`` (``adapters.init`` + ``add_adapter`` + ``train_adapter``, no kit code) as a reference.
2. Training samples/s of the article's fixed padding to 100 tokens vs dynamic padding of shuffled batches vs dynamic
   padding of length-grouped batches (the kit's default), with the Pfeiffer adapter.

Every batch is run by every variant back to back (the order rotating from batch to batch), so that a slow moment of
a shared machine hits all variants alike; a ratio is the median over batches and rounds of the per-batch ratio.
Usage: python bench/bench_training.py [--steps 20] [--rounds 3] [--out bench/results/training-cpu.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import adapters
import torch
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_adapter_kit import get_config, get_method
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.commands.compare import machine_info
from hf_adapter_kit.data import load_task
from hf_adapter_kit.modeling import DEFAULT_MODEL, load_base_model, load_tokenizer


METHODS = ["full", "head", "pfeiffer", "houlsby", "lora"]
RAW = "raw adapters seq_bn (reference)"


def make_model(method: str, labels: list[str]):
    spec = get_method(method)
    torch.manual_seed(0)
    base = load_base_model(DEFAULT_MODEL, labels)
    model = get_backend(spec.default_backend).attach(base, get_config(method), "bench")
    params = [p for p in model.parameters() if p.requires_grad]
    return model.train(), torch.optim.AdamW(params, lr=spec.learning_rate)


def raw_adapters_model(labels: list[str]):
    """The reference: ``adapters``' own seq_bn on the same base model, set up by hand."""
    torch.manual_seed(0)
    model = load_base_model(DEFAULT_MODEL, labels)
    adapters.init(model)
    model.add_adapter("raw", config="seq_bn")
    model.train_adapter("raw")  # freezes everything but the adapter
    for param in model.classifier.parameters():
        param.requires_grad = True
    params = [p for p in model.parameters() if p.requires_grad]
    return model.train(), torch.optim.AdamW(params, lr=1e-3)


def step(model, optimizer, batch) -> float:
    """Seconds for one optimizer step (forward, backward, update)."""
    start = time.perf_counter()
    model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def interleaved(variants: dict[str, tuple], batches_of: dict[str, list], rounds: int) -> dict[str, list[float]]:
    """Per variant, the time of each (round, batch); batch k of every variant runs back to back."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for k in range(len(next(iter(batches_of.values())))):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                times[name].append(step(*variants[name], batches_of[name][k]))
    return times


def median_ratio(times: list[float], reference: list[float]) -> float:
    return statistics.median(t / r for t, r in zip(times, reference, strict=True))


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
    models[RAW] = raw_adapters_model(task.label_names)
    trainable = {m: sum(p.numel() for p in model.parameters() if p.requires_grad) for m, (model, _) in models.items()}
    for m in models:  # warm-up: first steps pay for allocations
        for batch in same_batches[:2]:
            step(*models[m], batch)
    step_times = interleaved(models, dict.fromkeys(models, same_batches), args.rounds)
    padding_times = interleaved(dict.fromkeys(padding_variants, models["pfeiffer"]), padding_variants, args.rounds)

    info = machine_info()  # this script trains on the CPU even where there is a GPU
    cpu = f"{info['cpu']}, {info['cores']} CPU cores, torch {info['torch']}"
    lines = [
        "# Training speed on the embedded default",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/bench_training.py --steps {args.steps} "
        f"--rounds {args.rounds}` on {cpu}, on the CPU. all-MiniLM-L6-v2, tweets-polarity, batch "
        f"{args.batch_size}; {args.rounds} rounds of {args.steps} batches, every batch run by every variant back to "
        "back; s/step is the median step, a ratio the median of the per-batch ratios.",
        "",
        "## Step time by method (same batches, dynamic padding)",
        "",
        "| method | trainable params | s/step | vs full |",
        "|---|---|---|---|",
    ]
    for m in models:
        t = statistics.median(step_times[m])
        lines.append(f"| {m} | {trainable[m]:,} | {t:.3f} | {median_ratio(step_times[m], step_times['full']):.2f} |")
    fixed_name = "fixed padding to 100 (article)"
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
    # Throughput over an epoch is total samples / total time: per round, the sum over the variant's batches.
    totals = {
        name: [sum(t[i : i + args.steps]) for i in range(0, len(t), args.steps)] for name, t in padding_times.items()
    }
    for name in padding_variants:
        samples_per_s = args.steps * args.batch_size / statistics.median(totals[name])
        speedup = 1 / median_ratio(totals[name], totals[fixed_name])
        lines.append(f"| {name} | {tokens[name]:,} | {samples_per_s:.1f} | {speedup:.2f}x |")
    report = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
