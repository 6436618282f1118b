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
    hyperformer_config,
    hyperformer_count,
    largest_projected_dim,
    load_data,
    machine,
    multitask_steps,
    predict,
    scores,
    train,
    trainable,
)
from transformers import AutoConfig
from transformers import logging as hf_logging

import hf_adapter_kit as kit
from hf_adapter_kit.modeling import DEFAULT_MODEL, load_tokenizer, resolve_model_path


DEFAULTS = {"learning_rate": 1e-3, "reduction_factor": 32, "projector_hidden_dim": 128, "projected_dim": None}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="[{}]", help=f"JSON list of overrides of {DEFAULTS}")
    parser.add_argument("--steps-per-task", type=int, default=300)
    parser.add_argument("--output", default="bench/results/hyperformer-sweep-validation.md")
    parser.add_argument(
        "--append", action="store_true", help="keep the rows (Pfeiffer included) of the JSON beside --output"
    )
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
        for name in data
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

    out = Path(args.output)
    rows = json.loads(out.with_suffix(".json").read_text())["rows"] if args.append else []
    config = AutoConfig.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    hidden, layers = config.hidden_size, config.num_hidden_layers
    if not any(row["arm"].startswith("3 x Pfeiffer") for row in rows):
        pfeiffer_total, pfeiffer_scores, streams = 0, {}, batches()
        for name in TASKS:
            model = build_model(
                kit.get_config("pfeiffer", backend="adapters", reduction_factor=16), {name: labels[name]}, args.seed
            )
            pfeiffer_total += trainable(model.encoder)
            train(model, [(name, streams[name], k) for k in range(n)], tokenizer, args, 1e-3)
            pfeiffer_scores[name] = evaluate(model, {name: data[name]}, tokenizer, args)[name]
            print(f"Pfeiffer {name}: {pfeiffer_scores[name]}", flush=True)
        arm = "3 x Pfeiffer (reduction 16, lr 0.001)"
        rows.insert(0, {"arm": arm, "weights": pfeiffer_total, "scores": pfeiffer_scores, "date": now()})
        write_report(out, rows, data, n)
    budget = next(row["weights"] for row in rows if row["arm"].startswith("3 x Pfeiffer")) // 3

    sizes = [len(data[name]["train_texts"]) for name in TASKS]
    for variant in args.variant_list:
        settings = {**vars(args), **variant}
        p = variant["projected_dim"] or largest_projected_dim(settings, hidden, layers, budget)
        weights = hyperformer_count(settings, hidden, layers, p)
        if weights > budget:
            print(f"skipped {variant}: {weights:,} weights > budget {budget:,}")
            continue
        steps, _ = multitask_steps(batches(), sizes, args)
        model = build_model(hyperformer_config(settings, p), labels, args.seed)
        if trainable(model.encoder) != weights:
            raise SystemExit(f"the hypernetwork has {trainable(model.encoder):,} weights, the formula {weights:,}")
        seconds = train(model, steps, tokenizer, args, variant["learning_rate"])
        result = evaluate(model, data, tokenizer, args)
        label = ", ".join(f"{k} {v}" for k, v in variant.items() if k != "projected_dim") + f", projected_dim {p}"
        rows.append(
            {
                "arm": f"Hyperformer++ ({label})",
                "weights": weights,
                "scores": result,
                "seconds": seconds,
                "date": now(),
            }
        )
        print(f"{rows[-1]['arm']}: {result}", flush=True)
        write_report(out, rows, data, n)  # after every row: an interrupted sweep keeps what it measured


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")


def write_report(out: Path, rows: list[dict], data: dict, n: int) -> None:
    split_sizes = ", ".join(f"{name} {len(data[name]['eval_labels']):,}" for name in TASKS)
    info = machine()
    lines = [
        "# Hyperformer++ settings chosen on the validation split",
        "",
        f"Measured with `python bench/sweep_hyperformer.py` (rows dated in the JSON beside this file; the last "
        f"{now()}) on {info['cpu']}, {info['cores']} cores, no GPU. The settings of bench_hyperformer.py ({n} steps "
        f"per Pfeiffer task, {3 * n} Hyperformer++ steps, batch 32, seed 42), scored on each task's whole validation "
        f"split ({split_sizes} rows). Budget: {rows[0]['weights'] // 3:,} adapter weights (a third of the three "
        "Pfeiffer adapters); every Hyperformer++ row is within it. One run per row.",
        "",
        "| arm | adapter weights | " + " | ".join(f"{t} acc" for t in TASKS) + " | mean acc |",
        "|---|---|" + "---|" * (len(TASKS) + 1),
    ]
    for row in rows:
        accs = [row["scores"][t]["accuracy"] for t in TASKS]
        cells = " | ".join(f"{a:.4f}" for a in accs)
        lines.append(f"| {row['arm']} | {row['weights']:,} | {cells} | {np.mean(accs):.4f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    print(out.read_text(), flush=True)


if __name__ == "__main__":
    main()
