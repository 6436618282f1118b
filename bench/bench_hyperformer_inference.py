"""Hyperformer++ inference latency vs bottleneck adapters of the same size, side by side in one run (project issue).

The claim checked: "In eval mode, Hyperformer++ inference time is within 1.05x of a Pfeiffer adapter of the same
bottleneck size, measured side by side in one benchmark run."

What is timed: one forward pass of the embedded all-MiniLM-L6-v2 encoder (``AutoModel``, ``adapters`` backend) over a
batch of 32 real tweets padded to 64 tokens, in ``eval()`` mode under ``torch.inference_mode()``, where the
hypernetwork generates each (task, layer, position) adapter once and then serves it from its cache. Like is compared
with like, every adapter with the same bottleneck (hidden size / ``--reduction-factor``) and ReLU:

- FFN position only: Hyperformer++ with ``mh_adapter=False`` vs Pfeiffer (``adapters`` ``seq_bn``, as the kit's
  ``pfeiffer``, which also applies the model's layer norm once before the adapter).
- After attention and FFN: Hyperformer++ (its default placement) vs Houlsby (``double_seq_bn``).
- The base model without adapters, for scale.

Each Hyperformer++ model is timed on a single-task batch (``task_ids`` one task name) and on a mixed batch (the 32 rows
split over three tasks, each row through its own task's generated adapter). The mixed batch is compared with the
single bottleneck adapter on the same tokens (the claim) and with three bottleneck adapters serving the three tasks
through ``adapters``' ``BatchSplit`` (what separate per-task adapters cost on such a batch). Adapter weights are
perturbed away from their identity initialisation, and every adapter model is checked to change the encoder's output.

Protocol: warm-up passes, then ``--rounds`` rounds; each round times every variant (``--repeats`` passes, averaged),
in an order rotated by one each round so that no variant always runs first or after the same neighbour; drift on a
shared machine then hits all variants alike. Reported: the median latency per variant, the ratio of medians, and the
median (with quartiles) of the per-round ratios, which pairs measurements taken seconds apart.

Usage: python bench/bench_hyperformer_inference.py --rounds 30
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import adapters
import numpy as np
import torch
from adapters.composition import BatchSplit
from report import machine_sentence, save
from transformers import AutoModel
from transformers import logging as hf_logging

import hf_adapter_kit as kit
from hf_adapter_kit.commands.compare import machine_info as machine
from hf_adapter_kit.modeling import DEFAULT_MODEL, load_tokenizer, resolve_model_path


TASKS = ("tweets-polarity", "tweets-subjectivity", "tweets-3way")
# (Hyperformer++ variant, comparator, what the ratio shows)
PAIRS = (
    ("hyperformer-ffn", "pfeiffer", "FFN only, single-task batch"),
    ("hyperformer", "houlsby", "attention + FFN, single-task batch"),
    ("hyperformer-ffn mixed", "pfeiffer", "FFN only, mixed batch vs one Pfeiffer adapter"),
    ("hyperformer mixed", "houlsby", "attention + FFN, mixed batch vs one Houlsby adapter"),
    ("hyperformer-ffn mixed", "pfeiffer x3 BatchSplit", "FFN only, mixed batch vs three Pfeiffer adapters"),
    ("hyperformer mixed", "houlsby x3 BatchSplit", "attention + FFN, mixed batch vs three Houlsby adapters"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="forward passes per timing")
    parser.add_argument("--warmup", type=int, default=5, help="untimed passes per variant first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-length", type=int, default=64)
    parser.add_argument("--reduction-factor", type=float, default=32, help="bottleneck = hidden / this, for all")
    parser.add_argument("--projected-dim", type=int, default=7, help="as bench_hyperformer.py picks for the 1/3 rule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="bench/results/hyperformer-inference.md")
    return parser.parse_args()


def encoder_with(configs: dict[str, object], active, seed: int) -> torch.nn.Module:
    """The embedded encoder with the given adapters, ``active`` set, weights moved off the identity, in eval mode."""
    torch.manual_seed(seed)
    encoder = AutoModel.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    if configs:
        adapters.init(encoder)
        for name, config in configs.items():
            encoder.add_adapter(name, config=config)
        encoder.set_active_adapters(active)
        with torch.no_grad():  # up-projections (and Hyperformer's generators) start at zero: the adapter is a no-op
            for name, param in encoder.named_parameters():
                if ".adapters." in name or name.startswith("shared_parameters."):
                    param.add_(torch.randn_like(param) * 0.02)
    return encoder.eval()


def build_variants(args: argparse.Namespace, inputs: dict) -> dict[str, tuple[torch.nn.Module, dict]]:
    """Variant name -> (model, forward keyword arguments)."""
    r, p = args.reduction_factor, args.projected_dim
    per_task = [len(rows) for rows in np.array_split(np.arange(args.batch_size), len(TASKS))]
    mixed_ids = [
        task for task, n in zip(TASKS, per_task, strict=True) for _ in range(n)
    ]  # contiguous, as BatchSplit needs

    def hyperformer(attention: bool):
        return kit.get_config(
            "hyperformer",
            backend="adapters",
            tasks=list(TASKS),
            reduction_factor=r,
            projected_dim=p,
            mh_adapter=attention,
            conditional_layer_norm=True,
        )

    def pfeiffer():
        return kit.get_config("pfeiffer", backend="adapters", reduction_factor=r, non_linearity="relu")

    def houlsby():
        return kit.get_config("houlsby", backend="adapters", reduction_factor=r, non_linearity="relu")

    split = BatchSplit(*TASKS, batch_sizes=per_task)
    hyper_ffn = encoder_with({"h": hyperformer(False)}, "h", args.seed)
    hyper = encoder_with({"h": hyperformer(True)}, "h", args.seed)
    return {
        "base (no adapter)": (encoder_with({}, None, args.seed), inputs),
        "pfeiffer": (encoder_with({"a": pfeiffer()}, "a", args.seed), inputs),
        "hyperformer-ffn": (hyper_ffn, {**inputs, "task_ids": TASKS[0]}),
        "houlsby": (encoder_with({"a": houlsby()}, "a", args.seed), inputs),
        "hyperformer": (hyper, {**inputs, "task_ids": TASKS[0]}),
        "pfeiffer x3 BatchSplit": (encoder_with({t: pfeiffer() for t in TASKS}, split, args.seed), inputs),
        "hyperformer-ffn mixed": (hyper_ffn, {**inputs, "task_ids": mixed_ids}),
        "houlsby x3 BatchSplit": (encoder_with({t: houlsby() for t in TASKS}, split, args.seed), inputs),
        "hyperformer mixed": (hyper, {**inputs, "task_ids": mixed_ids}),
    }


def time_forward(model: torch.nn.Module, kwargs: dict, repeats: int) -> float:
    """Mean seconds of one forward pass over ``repeats`` passes."""
    start = time.perf_counter()
    for _ in range(repeats):
        model(**kwargs)
    return (time.perf_counter() - start) / repeats


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def main() -> None:
    args = parse_args()
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)  # "none are activated", from set_active_adapters' reset
    start = time.perf_counter()
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    texts = kit.load_task("tweets-3way").splits["test"]["text"][: args.batch_size]
    inputs = dict(
        tokenizer(texts, padding="max_length", truncation=True, max_length=args.seq_length, return_tensors="pt")
    )
    variants = build_variants(args, inputs)

    with torch.inference_mode():
        base_out = variants["base (no adapter)"][0](**inputs).last_hidden_state
        for name, (model, kwargs) in variants.items():
            for _ in range(args.warmup):
                out = model(**kwargs).last_hidden_state
            if name != "base (no adapter)" and torch.allclose(out, base_out):
                raise SystemExit(f"{name}: the adapter does not change the output; is it active?")
        cached = {
            name: len(variants[name][0].base_model.shared_parameters["h"]._cache)
            for name in ("hyperformer-ffn", "hyperformer")
        }
        names = list(variants)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                model, kwargs = variants[name]
                times[name].append(time_forward(model, kwargs, args.repeats))
            if (r + 1) % 5 == 0:
                print(
                    f"round {r + 1}/{args.rounds}: "
                    + ", ".join(f"{n} {1e3 * statistics.median(t):.1f} ms" for n, t in times.items())
                )

    medians = {name: statistics.median(t) for name, t in times.items()}
    pairs = []
    for hyper, other, what in PAIRS:
        per_round = [h / o for h, o in zip(times[hyper], times[other], strict=True)]
        q1, q2, q3 = quartiles(per_round)
        ratio = medians[hyper] / medians[other]
        pairs.append({"hyperformer": hyper, "comparator": other, "what": what, "ratio_of_medians": ratio})
        pairs[-1].update(
            {"per_round_median": q2, "per_round_q1": q1, "per_round_q3": q3, "within_1_05": ratio <= 1.05}
        )
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "load_average_end": os.getloadavg(),
        "settings": vars(args),
        "bottleneck": int(variants["pfeiffer"][0].config.hidden_size // args.reduction_factor),
        "cached_generated_adapters": cached,
        "median_seconds": medians,
        "times": times,
        "pairs": pairs,
        "wall_seconds": time.perf_counter() - start,
    }
    save(report, args.output, markdown)


def markdown(report: dict) -> str:
    s = report["settings"]
    base = report["median_seconds"]["base (no adapter)"]
    lines = [
        "# Hyperformer++ inference latency vs bottleneck adapters of the same size",
        "",
        machine_sentence(report),
        "",
        f"all-MiniLM-L6-v2 encoder, eval mode, `torch.inference_mode()`, batch {s['batch_size']} real tweets "
        f"padded to {s['seq_length']} tokens; every adapter has bottleneck {report['bottleneck']} (reduction factor "
        f"{s['reduction_factor']:g}) and ReLU; Hyperformer++ with projected dim {s['projected_dim']}, conditional "
        f"layer norm, three tasks. {s['warmup']} warm-up passes per variant, then {s['rounds']} rounds in rotated "
        f"order, each timing {s['repeats']} passes per variant. Generated adapters held in the cache after warm-up: "
        + ", ".join(f"{name} {n}" for name, n in report["cached_generated_adapters"].items())
        + " (layers x positions x tasks seen).",
        "",
        "## Median latency per forward pass",
        "",
        "| variant | median ms | vs base |",
        "|---|---|---|",
    ]
    for name, seconds in report["median_seconds"].items():
        lines.append(f"| {name} | {1e3 * seconds:.1f} | {seconds / base:.3f} |")
    lines += [
        "",
        "## Hyperformer++ / comparator",
        "",
        "| comparison | Hyperformer++ | comparator | ratio of medians | per-round ratio, median [q1, q3] | <= 1.05 |",
        "|---|---|---|---|---|---|",
    ]
    for p in report["pairs"]:
        lines.append(
            f"| {p['what']} | {p['hyperformer']} | {p['comparator']} | {p['ratio_of_medians']:.3f} | "
            f"{p['per_round_median']:.3f} [{p['per_round_q1']:.3f}, {p['per_round_q3']:.3f}] | "
            f"{'yes' if p['within_1_05'] else 'no'} |"
        )
    lines += [
        "",
        "The claim (within 1.05x of a bottleneck adapter of the same size and placement) is the first two rows; the "
        "mixed-batch rows add the cost of routing the rows of three tasks. One run on one machine; the quartiles of "
        "the per-round ratios show how much the timings move between rounds.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
