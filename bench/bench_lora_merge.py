"""LoRA merged for inference: latency against the base model (target: equal within noise).

The embedded model with a PEFT LoRA adapter (the kit's default config, weights moved off zero so that the merge
changes the matrices), timed three ways on the same batch of 32 real tweets (max length 64), eval mode, inference
mode: the base model without adapter, the adapter unmerged, and after ``merge_and_unload()``. Rounds interleave the
three; medians and ratios to the base are reported. The merged model's logits are checked against the unmerged one.

Usage: python bench/bench_lora_merge.py [--rounds 30] [--out bench/results/lora-merge-cpu.md]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from hf_adapter_kit import get_config
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.commands.compare import machine
from hf_adapter_kit.data import load_task
from hf_adapter_kit.modeling import DEFAULT_MODEL, load_base_model, load_tokenizer


def timed(model, batch) -> float:
    start = time.perf_counter()
    model(**batch)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", default="bench/results/lora-merge-cpu.md")
    args = parser.parse_args()
    task = load_task("tweets-polarity")
    texts = task.splits["test"]["text"][:32]
    batch = load_tokenizer(DEFAULT_MODEL)(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    torch.manual_seed(0)
    base = load_base_model(DEFAULT_MODEL, task.label_names).eval()
    lora = get_backend("peft").attach(copy.deepcopy(base), get_config("lora", backend="peft"), "bench").eval()
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    merged = copy.deepcopy(lora).merge_and_unload().eval()
    variants = {"base model": base, "LoRA, unmerged": lora, "LoRA, merged": merged}
    times = {name: [] for name in variants}
    with torch.inference_mode():
        difference = (lora(**batch).logits - merged(**batch).logits).abs().max().item()
        for model in variants.values():
            for _ in range(3):
                model(**batch)
        for _ in range(args.rounds):
            for name, model in variants.items():
                times[name].append(timed(model, batch))
    base_ms = statistics.median(times["base model"])
    rows = "".join(
        f"| {name} | {statistics.median(t):.1f} | {statistics.median(t) / base_ms:.3f}x | "
        f"{statistics.quantiles(t, n=4)[0]:.1f} - {statistics.quantiles(t, n=4)[2]:.1f} |\n"
        for name, t in times.items()
    )
    text = (
        "# LoRA merged for inference\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/bench_lora_merge.py --rounds {args.rounds}` on "
        f"{machine()}. all-MiniLM-L6-v2, PEFT LoRA r=8 on query/value, batch of 32 test tweets, max length 64; "
        "medians of interleaved rounds. Merged vs unmerged logits differ by at most "
        f"{difference:.2e}.\n\n| model | ms per batch (median) | vs base | interquartile range (ms) |\n|---|---|---|---|\n"
        + rows
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
