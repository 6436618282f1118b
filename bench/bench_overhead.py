"""The kit's overhead over a hand-written loop with the raw library, same method, same batches (target <= 1.03x).

Kit: ``hf_adapter_kit.train("pfeiffer", ...)`` (the Trainer, the kit's sampler, its checkpointing switched off so
that both sides do the same work), timed by the Trainer's own ``train_runtime``. Raw: ``adapters.init`` +
``add_adapter(seq_bn)`` + ``train_adapter`` on the same base model, the same batches in the same order (the kit's
length-grouped order for the same seed), fused AdamW, gradient clipping at 1.0 and the linear schedule with warm-up:
the arithmetic the Trainer does. Rounds alternate kit and raw; medians are reported.

Usage: python bench/bench_overhead.py [--steps 40] [--rounds 3] [--out bench/results/overhead-cpu.md]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import adapters
import torch
from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

from hf_adapter_kit import train
from hf_adapter_kit.compare import machine
from hf_adapter_kit.data import load_task
from hf_adapter_kit.modeling import DEFAULT_MODEL, head_prefixes, load_base_model, load_tokenizer
from hf_adapter_kit.training.preprocess import tokenize_task
from hf_adapter_kit.training.trainer import EpochSeededLengthGroupedSampler


SETTINGS = dict(max_train_samples=4800, max_eval_samples=32, max_length=64, per_device_train_batch_size=32, seed=42)
LR, WARMUP = 1e-3, 0.06


def kit_run(steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        result = train(
            "pfeiffer",
            "tweets-polarity",
            out,
            max_steps=steps,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            logging_steps=10_000,
            disable_tqdm=True,
            learning_rate=LR,
            warmup_ratio=WARMUP,
            **SETTINGS,
        )
    return result.train_metrics["train_runtime"] / steps


def raw_batches(steps: int):
    task = load_task("tweets-polarity", max_train_samples=SETTINGS["max_train_samples"], max_eval_samples=32, seed=42)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    data = tokenize_task(task, tokenizer, SETTINGS["max_length"])["train"]
    order = list(EpochSeededLengthGroupedSampler(32, lengths=data["length"], seed=SETTINGS["seed"]))
    collator = DataCollatorWithPadding(tokenizer)
    rows = data.remove_columns(["length"])
    return [collator([rows[i] for i in order[k * 32 : (k + 1) * 32]]) for k in range(steps)], task.label_names


def raw_run(batches, labels) -> float:
    torch.manual_seed(SETTINGS["seed"])
    model = load_base_model(DEFAULT_MODEL, labels)
    adapters.init(model)
    model.add_adapter("raw", config="seq_bn")
    model.train_adapter("raw")
    for name, param in model.named_parameters():
        if name.split(".")[0] in head_prefixes(model):
            param.requires_grad = True
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, fused=True)
    schedule = get_linear_schedule_with_warmup(optimizer, int(WARMUP * len(batches)), len(batches))
    model.train()
    start = time.perf_counter()
    for batch in batches:
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench/results/overhead-cpu.md")
    args = parser.parse_args()
    batches, labels = raw_batches(args.steps)
    kit, raw = [], []
    for round_ in range(args.rounds):
        kit.append(kit_run(args.steps))
        raw.append(raw_run(batches, labels))
        print(f"round {round_ + 1}: kit {kit[-1]:.3f} s/step, raw {raw[-1]:.3f} s/step", flush=True)
    ratio = statistics.median(kit) / statistics.median(raw)
    text = (
        "# The kit's training overhead over a hand-written loop\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/bench_overhead.py --steps {args.steps} --rounds "
        f"{args.rounds}` on {machine()}. Pfeiffer (`seq_bn`) on all-MiniLM-L6-v2, tweets-polarity, batch 32, max "
        "length 64, the same batches in the same order on both sides; medians of interleaved rounds.\n\n"
        "| | s/step (median) | rounds |\n|---|---|---|\n"
        f"| kit (`hf_adapter_kit.train`, Trainer) | {statistics.median(kit):.3f} | {', '.join(f'{t:.3f}' for t in kit)} |\n"
        f"| raw `adapters`, hand-written loop | {statistics.median(raw):.3f} | {', '.join(f'{t:.3f}' for t in raw)} |\n"
        f"| **kit / raw** | **{ratio:.3f}x** | target <= 1.03x |\n"
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
