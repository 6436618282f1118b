"""Serving many tasks from one base model: a mixed-task batch's latency, the parameters and the memory (issue 13).

What is timed: one forward pass of the embedded all-MiniLM-L6-v2 encoder (``AutoModel``, eval mode,
``torch.inference_mode()``) over a batch of ``--batch-size`` real tweets padded to the longest (at most
``--max-length`` tokens; ``--length L``: exactly L tokens each), for N = ``--tasks`` tasks. In the mixed batch every example has a task drawn at random
(seeded) from the N, anew for every pass (a server's traffic, not one batch over and over: a cache of recent tasks
is not flattered); in the one-task batch all examples have the first task. Every task is served once before timing
(steady state). Side by side, for each N:

- the bare encoder (the denominator of every ratio);
- the kit's multi-task parallel adapters and Hyperformer++, each on both backends (``adapters`` and PEFT), with the
  kit's default settings, on the mixed batch and on a one-task batch;
- PEFT LoRA (r=8 on query and value), one adapter per task, the mixed batch through ``adapter_names=``;
- ``adapters`` ``seq_bn`` (Pfeiffer: after each FFN) and ``double_seq_bn`` (Houlsby: after attention and FFN, the
  places Hyperformer++ takes), one adapter per task, one active for the whole batch (``adapters`` routes a mixed batch
  only through ``BatchSplit`` over contiguous rows; one active adapter is its best case).

Every ``adapters`` model runs with the kit's opt-in speed-ups on (``hf_adapter_kit.speed_up_adapters()``, called
first: its patch 10 skips the attention's copies of query, key and value, leaving outputs bit for bit the same), as
the figures in docs/benchmarks.md were measured; without the call ``adapters``' own variants run the library's code.

Every adapter's weights are moved off their identity start (an adapter whose up-projection is zero changes nothing),
and each variant is checked to change the encoder's output.

Protocol: warm-up passes, then ``--rounds`` rounds; each round times every variant (``--repeats`` passes, averaged)
in an order rotated by one each round, each timing paired with a timing of the base model taken right before or
right after it (alternately), so that the machine's drift over a round does not enter the ratio. Reported per
variant: the median over rounds of the ratio within each pair [quartiles], the adapter's parameters, and resident
memory: each (variant, N) is built in a
fresh process and the growth of its resident set (CPU) or of allocated GPU memory, once every task has been served and
after a mixed pass, over the bare encoder's is reported (``--no-memory`` skips this).

Usage: python bench/bench_serving.py [--tasks 1 10 100 1000] [--device cuda] [--output bench/results/serving-cpu.md]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from report import machine_sentence, save
from transformers import AutoModel
from transformers import logging as hf_logging


BASE = "base (no adapter)"
KIT = ("parallel/adapters", "parallel/peft", "hyperformer/adapters", "hyperformer/peft")
OTHERS = ("lora/peft mixed adapter_names", "seq_bn/adapters one active", "double_seq_bn/adapters one active")
VARIANTS = (*KIT, *OTHERS)
# what the adapter parameters' names hold: PEFT LoRA, the kit on PEFT, adapters' layers and shared weights
ADAPTER_MARKS = ("lora_", "kit_", ".adapters.", "shared_parameters.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="forward passes per timing")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes per variant first")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument(
        "--length",
        type=int,
        help="every example exactly this many tokens (tweets cut or padded; the pads are computed, as a padded batch's "
        "are): the input length a server gets, from short queries to long texts; default: padded to the longest tweet",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-variant memory measurement")
    parser.add_argument(
        "--allocator",
        choices=["keep", "glibc"],
        default="keep",
        help="keep: freed heap memory stays with the process while timing (see keep_freed_memory); glibc: its defaults",
    )
    parser.add_argument("--output", default="bench/results/serving-cpu.md")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="a subset to run")
    parser.add_argument(
        "--bank-mib", type=float, help="Hyperformer++'s serving bank budget (hypernet.cache_bytes) in MiB; default 128"
    )
    parser.add_argument("--memory-of", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def quiet() -> None:
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)


def batch(args: argparse.Namespace) -> dict:
    import hf_adapter_kit as kit
    from hf_adapter_kit.modeling import DEFAULT_MODEL, load_tokenizer

    texts = kit.load_task("tweets-3way").splits["test"]["text"][: args.batch_size]
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    if args.length is not None:
        inputs = tokenizer(texts, padding="max_length", truncation=True, max_length=args.length, return_tensors="pt")
    else:
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
    return {k: v.to(args.device) for k, v in inputs.items()}


def encoder(device: str) -> torch.nn.Module:
    from hf_adapter_kit.modeling import DEFAULT_MODEL, resolve_model_path

    return AutoModel.from_pretrained(resolve_model_path(DEFAULT_MODEL)).to(device).eval()


def perturb(model: torch.nn.Module, names: list[str]) -> int:
    """Move the adapter weights off their start; returns how many parameters the adapters have."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            params[name].add_(torch.randn_like(params[name]) * 0.02)
    return sum(params[name].numel() for name in names)


def build(variant: str, n: int, device: str, bank_mib: float | None = None) -> tuple[torch.nn.Module, int]:
    """The encoder with ``n`` tasks' worth of ``variant``; returns it (eval, on ``device``) and its adapter size.
    ``bank_mib``: Hyperformer++'s serving bank budget, when not the default."""
    import hf_adapter_kit as kit
    from hf_adapter_kit.multitask import attach_encoder

    tasks = [f"task{i}" for i in range(n)]
    base = encoder("cpu")
    method, backend = variant.split(" ")[0].split("/")
    if variant in KIT:
        model = attach_encoder(base, kit.get_config(method, backend=backend, tasks=tasks), backend, "serve")
    elif method == "lora":
        import peft

        config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"])
        model = peft.get_peft_model(base, config, adapter_name=tasks[0])
        for task in tasks[1:]:
            model.add_adapter(task, config)
    else:
        import adapters

        adapters.init(base)
        for task in tasks:
            base.add_adapter(task, config=method)
        base.set_active_adapters(tasks[0])
        model = base
    names = [name for name, _ in model.named_parameters() if any(mark in name for mark in ADAPTER_MARKS)]
    size = perturb(model, names)
    if bank_mib is not None:
        from hf_adapter_kit.methods.hyperformer.hypernet import HyperNetwork

        for net in (m for m in model.modules() if isinstance(m, HyperNetwork)):
            net.cache_bytes = int(bank_mib * 2**20)
    return model.to(device).eval(), size


def caller(variant: str, model: torch.nn.Module, inputs: dict, draw):
    """A no-argument function running one forward pass of ``model`` on the batch, with the task ids ``draw()``
    gives for that pass (a list, one per example)."""
    if variant == BASE or variant.endswith("one active"):
        return lambda: model(**inputs).last_hidden_state
    if variant.startswith("lora"):
        return lambda: model(**inputs, adapter_names=[f"task{i}" for i in draw()]).last_hidden_state
    device = inputs["input_ids"].device
    return lambda: model(**inputs, task_ids=torch.tensor(draw(), device=device)).last_hidden_state


def mixed_draws(args: argparse.Namespace, n: int):
    """Each call, a new batch of tasks drawn at random from the N; every variant gets the same sequence."""
    rng = np.random.default_rng([args.seed, n])
    return lambda: rng.integers(0, n, size=args.batch_size).tolist()


def serve_every_task(variant: str, model: torch.nn.Module, inputs: dict, n: int) -> None:
    """One pass per batch-size group of tasks until every task has been served once: steady-state serving."""
    size = inputs["input_ids"].shape[0]
    for start in range(0, n, size):
        caller(variant, model, inputs, lambda start=start: [(start + i) % n for i in range(size)])()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn, repeats: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def measure_latency(args: argparse.Namespace, n: int, inputs: dict) -> dict:
    def one():
        return [0] * args.batch_size

    calls, sizes = {BASE: caller(BASE, encoder(args.device), inputs, one)}, {}
    for variant in args.variants:
        built = time.perf_counter()
        model, sizes[variant] = build(variant, n, args.device, args.bank_mib)
        print(f"N={n}: built {variant} ({sizes[variant]:,} parameters) in {time.perf_counter() - built:.1f} s")
        with torch.inference_mode():
            serve_every_task(variant, model, inputs, n)
        if variant in KIT:
            calls[f"{variant} mixed"] = caller(variant, model, inputs, mixed_draws(args, n))
            calls[f"{variant} one task"] = caller(variant, model, inputs, one)
        else:
            calls[variant] = caller(variant, model, inputs, mixed_draws(args, n))
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    per_round: dict[str, list[float]] = {name: [] for name in names}
    draw = mixed_draws(args, n)
    distinct = statistics.mean(len(set(draw())) for _ in range(100))
    with torch.inference_mode():
        reference = calls[BASE]()
        for name, fn in calls.items():
            for _ in range(args.warmup):
                out = fn()
            if name != BASE and torch.allclose(out, reference):
                raise SystemExit(f"{name}: the adapter does not change the output; is it active?")
        variants = [name for name in names if name != BASE]
        for r in range(args.rounds):
            for i, name in enumerate(variants[r % len(variants) :] + variants[: r % len(variants)]):
                pair = (BASE, name) if (r + i) % 2 == 0 else (name, BASE)  # the base before, then after
                timed = {key: time_call(calls[key], args.repeats, args.device) for key in pair}
                for key, seconds in timed.items():
                    times[key].append(seconds)
                per_round[name].append(timed[name] / timed[BASE])
    per_round[BASE] = [1.0]
    return {
        "distinct_tasks_in_mixed_batch": distinct,
        "parameters": sizes,
        "median_ms": {name: 1e3 * statistics.median(t) for name, t in times.items()},
        "ratio": {name: statistics.median(r) for name, r in per_round.items()},
        "ratio_q1_q3": {name: [float(q) for q in np.percentile(r, [25, 75])] for name, r in per_round.items()},
    }


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of handing it back to the system (``mallopt``), as a server
    does with jemalloc or tcmalloc. With glibc's defaults a large freed block goes back to the system (unmapped, or
    trimmed off the heap) and the next allocation faults every page in afresh: on the 2-core VM about 33,000 page
    faults per pass of the bare encoder, some 20% of its time, and a number that depends on the heap's history, so
    that two models doing the same arithmetic differed by up to 8% between runs. Returns whether it was applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**30))


def resident_bytes(device: str) -> int:
    if device.startswith("cuda"):
        sync(device)
        return torch.cuda.memory_allocated()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # hand freed heap back, so the resident set is what is held
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib * 1024


def memory_of(args: argparse.Namespace, variant: str, n: int) -> None:
    """In a fresh process: memory of the bare encoder after a pass, then with the adapters once every task has been
    served (batches of every task in turn; Hyperformer++'s serving bank is then as full as it gets) and a mixed
    pass."""
    inputs = batch(args)
    base = encoder(args.device)
    with torch.inference_mode():
        base(**inputs)
    start = resident_bytes(args.device)
    del base
    gc.collect()
    model, _ = build(
        variant, n, args.device, args.bank_mib
    )  # as served: built outside inference mode, as the timings' models
    with torch.inference_mode():
        serve_every_task(variant, model, inputs, n)
        caller(variant, model, inputs, mixed_draws(args, n))()
        held = {
            "base_bytes": start,
            "with_adapters_bytes": resident_bytes(args.device),
            "bank_bytes": bank_bytes(model),
        }
        print(json.dumps(held))


def bank_bytes(model: torch.nn.Module) -> int:
    """Bytes held by Hyperformer++'s serving banks in ``model`` (part of its resident memory)."""
    from hf_adapter_kit.methods.hyperformer.hypernet import HyperNetwork

    return sum(net.bank_bytes() for net in model.modules() if isinstance(net, HyperNetwork))


def measure_memory(args: argparse.Namespace, n: int) -> dict:
    out = {}
    for variant in args.variants:
        command = [sys.executable, __file__, "--memory-of", variant, str(n), "--device", args.device]
        if args.bank_mib is not None:
            command += ["--bank-mib", str(args.bank_mib)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        values = json.loads(result.stdout.strip().splitlines()[-1])
        out[variant] = values["with_adapters_bytes"] - values["base_bytes"]
        if values["bank_bytes"]:
            out[f"{variant} bank"] = values["bank_bytes"]
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    quiet()
    import hf_adapter_kit as kit

    kit.speed_up_adapters()  # in the --memory-of processes too
    if args.memory_of:
        memory_of(args, args.memory_of[0], int(args.memory_of[1]))
        return
    from hf_adapter_kit.commands.compare import machine_info

    start = time.perf_counter()
    if args.allocator == "keep" and not keep_freed_memory():
        raise SystemExit("--allocator keep needs glibc's mallopt; pass --allocator glibc")
    inputs = batch(args)
    results = {}
    for n in args.tasks:
        results[n] = measure_latency(args, n, inputs)
        if not args.no_memory:
            results[n]["memory_bytes"] = measure_memory(args, n)
        print(markdown_rows(n, results[n]))
        gc.collect()
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_info(),
        "load_average_end": os.getloadavg(),
        "settings": {k: v for k, v in vars(args).items() if k != "memory_of"},
        "tokens_per_example": int(inputs["input_ids"].shape[1]),
        "results": results,
        "wall_seconds": time.perf_counter() - start,
    }
    save(report, args.output, markdown)


def markdown_rows(n: int, result: dict) -> str:
    rows = []
    for name, ratio in result["ratio"].items():
        if name == BASE:
            continue
        variant = name.removesuffix(" mixed").removesuffix(" one task")
        memory = result.get("memory_bytes", {}).get(variant)
        bank = result.get("memory_bytes", {}).get(f"{variant} bank")
        held = "-" if memory is None else f"{memory / 2**20:.0f} MiB" + (f" (bank {bank / 2**20:.0f})" if bank else "")
        q1, q3 = result["ratio_q1_q3"][name]
        rows.append(
            f"| {n} | {name} | {ratio:.3f} [{q1:.2f}, {q3:.2f}] | {result['median_ms'][name]:.1f} | "
            f"{result['parameters'][variant]:,} | {held} |"
        )
    return "\n".join(rows)


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        "# Serving many tasks from one base model",
        "",
        f"`bench/bench_serving.py --device {s['device']}`. {machine_sentence(report)}",
        "",
        f"all-MiniLM-L6-v2 encoder, eval mode, `torch.inference_mode()`, a batch of {s['batch_size']} real tweets "
        f"({report['tokens_per_example']} tokens each after padding). Mixed batch: each example's task drawn at random "
        f"from the N, anew for every pass; every task is served once before timing. {s['warmup']} warm-up passes, "
        f"then {s['rounds']} rounds in rotated order, {s['repeats']} passes per timing, each timing paired with one of "
        "the bare encoder right before or after it. Latency: the median over rounds of the ratio within each pair "
        "[quartiles]. Memory: growth of the process's resident set (GPU: allocated memory) over the bare encoder's, "
        "built in a fresh process, once every task has been served and after a mixed pass (Hyperformer++'s serving "
        "bank, in brackets, holds generated adapters for at most its budget, "
        + (f"{s['bank_mib']:g} MiB here (`--bank-mib`)" if s.get("bank_mib") else "128 MiB by default")
        + "; its size is counted from its tensors). "
        + (
            "Allocator while timing: glibc told to keep freed memory (`--allocator keep`: no page faults per pass)."
            if s.get("allocator", "glibc") == "keep"
            else "Allocator while timing: glibc's defaults (`--allocator glibc`: freed blocks go back to the system "
            "and each pass faults their pages in again)."
        ),
        "",
        "| N | variant | latency vs base | median ms | adapter parameters | memory |",
        "|---|---|---|---|---|---|",
    ]
    for n, result in report["results"].items():
        base_ms = result["median_ms"][BASE]
        lines.append(
            f"| {n} | base: {base_ms:.1f} ms; {result['distinct_tasks_in_mixed_batch']:.1f} distinct tasks per mixed "
            "batch | | | | |"
        )
        lines.append(markdown_rows(n, result))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
