"""Choose Hyperformer++'s settings on the VALIDATION split, before bench_hyperformer.py reports on test.

Trains the three Pfeiffer adapters once, then each Hyperformer++ variant, with the data, batches, schedule and budget
of ``bench_hyperformer.py`` (same functions), and scores everything on each task's validation split. Every variant
must fit the one-third parameter budget; its projected dim is the largest that fits unless it names one.

Writes a markdown table (and JSON with the same stem). Usage:
python bench/sweep_hyperformer.py --variants '[{"learning_rate": 3e-4}, {"reduction_factor": 64}]'
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from bench_hyperformer import (
    TASKS,
    TaskBatches,
    build_model,
    hyperformer_count,
    largest_projected_dim,
    load_data,
    machine,
    predict,
    scores,
    task_schedule,
    train,
    trainable,
)
from transformers import logging as hf_logging

import hf_adapter_kit as kit
from hf_adapter_kit.modeling import DEFAULT_MODEL, load_tokenizer


DEFAULTS = {"learning_rate": 1e-3, "reduction_factor": 32, "projector_hidden_dim": 128, "projected_dim": None}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="[{}]", help=f"JSON list of overrides of {DEFAULTS}")
    parser.add_argument("--steps-per-task", type=int, default=300)
    parser.add_argument("--output", default="bench/results/hyperformer-sweep-validation.md")
    args = parser.parse_args()
    variants = json.loads(args.variants)
    for variant in variants:
        unknown = set(variant) - set(DEFAULTS)
        if unknown:
            parser.error(f"unknown variant keys {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    # the fixed settings of bench_hyperformer.py, evaluated on the whole validation split
    args.batch_size, args.max_length, args.max_train_samples, args.seed = 32, 64, None, 42
    args.eval_samples, args.eval_split, args.warmup_ratio, args.temperature = 10**9, "validation", 0.06, 10.0
    args.eval_batch_size, args.task_embedding_dim, args.pfeiffer_reduction_factor = 128, 64, 16
    args.variant_list = [DEFAULTS | v for v in variants]
    return args


def evaluate(model, data, tokenizer, args) -> dict[str, dict[str, float]]:
    return {
        name: scores(
            predict(model, name, data[name]["eval_texts"], tokenizer, args),
            np.asarray(data[name]["eval_labels"]),
            len(data[name]["label_names"]),
        )
        for name in TASKS
    }


def main() -> None:
    args = parse_args()
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    data = load_data(args)
    n = args.steps_per_task
    labels = {name: len(d["label_names"]) for name, d in data.items()}

    def batches():  # fresh, identically seeded batch streams for every arm
        return {name: TaskBatches(d["train_texts"], d["train_labels"], 32, args.seed) for name, d in data.items()}

    rows, pfeiffer_total, pfeiffer_scores = [], 0, {}
    streams = batches()
    for name in TASKS:
        config = kit.get_config("pfeiffer", backend="adapters", reduction_factor=16)
        model = build_model(config, {name: labels[name]}, args.seed)
        pfeiffer_total += trainable(model.encoder)
        train(model, [(name, streams[name], k) for k in range(n)], tokenizer, args, 1e-3)
        pfeiffer_scores[name] = scores(
            predict(model, name, data[name]["eval_texts"], tokenizer, args),
            np.asarray(data[name]["eval_labels"]),
            labels[name],
        )
        hidden, layers = model.encoder.config.hidden_size, model.encoder.config.num_hidden_layers
        print(f"Pfeiffer {name}: {pfeiffer_scores[name]}", flush=True)
    budget = pfeiffer_total // 3
    rows.append({"arm": "3 x Pfeiffer (reduction 16, lr 0.001)", "weights": pfeiffer_total, "scores": pfeiffer_scores})

    sizes = [len(data[name]["train_texts"]) for name in TASKS]
    schedule = task_schedule(sizes, len(TASKS) * n, args.temperature, args.seed)
    for variant in args.variant_list:
        settings = {**vars(args), **variant}
        p = variant["projected_dim"] or largest_projected_dim(settings, hidden, layers, budget)
        weights = hyperformer_count(settings, hidden, layers, p)
        if weights > budget:
            print(f"skipped {variant}: {weights:,} weights > budget {budget:,}")
            continue
        streams, visits, steps = batches(), dict.fromkeys(TASKS, 0), []
        for index in schedule:
            steps.append((TASKS[index], streams[TASKS[index]], visits[TASKS[index]]))
            visits[TASKS[index]] += 1
        config = kit.get_config(
            "hyperformer",
            backend="adapters",
            tasks=list(TASKS),
            reduction_factor=variant["reduction_factor"],
            projected_dim=p,
            task_embedding_dim=args.task_embedding_dim,
            projector_hidden_dim=variant["projector_hidden_dim"],
        )
        model = build_model(config, labels, args.seed)
        assert trainable(model.encoder) == weights, (trainable(model.encoder), weights)
        seconds = train(model, steps, tokenizer, args, variant["learning_rate"])
        result = evaluate(model, data, tokenizer, args)
        label = ", ".join(f"{k} {v}" for k, v in variant.items() if k != "projected_dim") + f", projected_dim {p}"
        rows.append({"arm": f"Hyperformer++ ({label})", "weights": weights, "scores": result, "seconds": seconds})
        print(f"{rows[-1]['arm']}: {result}", flush=True)

    split_sizes = ", ".join(f"{name} {len(data[name]['eval_labels']):,}" for name in TASKS)
    lines = [
        "# Hyperformer++ settings chosen on the validation split",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python bench/sweep_hyperformer.py` on "
        f"{machine()['cpu']}, {machine()['cores']} cores, no GPU. The settings of bench_hyperformer.py ({n} steps "
        f"per Pfeiffer task, {3 * n} Hyperformer++ steps, batch 32, seed 42), scored on each task's whole validation "
        f"split ({split_sizes} rows). "
        f"Budget: {budget:,} adapter weights (a third of the three Pfeiffer adapters). One run per row.",
        "",
        "| arm | adapter weights | " + " | ".join(f"{t} acc" for t in TASKS) + " | mean acc |",
        "|---|---|" + "---|" * (len(TASKS) + 1),
    ]
    for row in rows:
        accs = [row["scores"][t]["accuracy"] for t in TASKS]
        lines.append(
            f"| {row['arm']} | {row['weights']:,} | "
            + " | ".join(f"{a:.4f}" for a in accs)
            + f" | {np.mean(accs):.4f} |"
        )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
