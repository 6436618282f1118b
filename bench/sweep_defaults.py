"""Choose defaults across every embedded task, on the VALIDATION split (issue 27): each method x task x setting.

Each arm is one ``hf_adapter_kit.train`` run on the embedded default with ``compare``'s budget (4,800 training
examples, 2 epochs, batch 32: 300 steps; ``--ner-steps`` for tweets-ner, whose budget is 1,200 tweets and 2 epochs of
batch 16), scored on the task's whole validation split: accuracy, or entity F1 for tweets-ner. The test split is never
read here (``train`` evaluates it; this script drops that number). Rows are appended to the JSON beside ``--output``
as they finish, so a long sweep can be stopped and resumed (arms already in the JSON are skipped).

Usage:
python bench/sweep_defaults.py --methods head pfeiffer hyperformer --tasks rotten-tomatoes tweets-ner \
    --settings '{"head_init": "probe"}' '{"head_init": "random"}'
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding
from transformers import logging as hf_logging

import hf_adapter_kit as kit
from hf_adapter_kit.commands.compare import machine
from hf_adapter_kit.metrics import TOKEN_METRIC, load_metric, tag_sequences
from hf_adapter_kit.training.preprocess import tokenize_task


BUDGET = {"max_length": 64, "max_train_samples": 4800, "num_train_epochs": 2.0, "disable_tqdm": True}
NER_BUDGET = {"max_length": 64, "max_train_samples": 1200, "num_train_epochs": 2.0, "disable_tqdm": True,
              "per_device_train_batch_size": 16}  # fmt: skip
TASKS = ("tweets-polarity", "tweets-subjectivity", "tweets-3way", "rotten-tomatoes", "tweets-ner")


@torch.inference_mode()
def validation_score(result) -> float:
    """Accuracy (text classification) or entity F1 (token classification) on the whole validation split."""
    token = result.task.kind == "token"
    encoded = tokenize_task(result.task, result.tokenizer, BUDGET["max_length"])["validation"]
    encoded = encoded.remove_columns([c for c in encoded.column_names if c not in {"input_ids", "attention_mask",
                                                                                  "token_type_ids", "labels"}])  # fmt: skip
    collate = (DataCollatorForTokenClassification if token else DataCollatorWithPadding)(result.tokenizer)
    model = result.model.eval()
    guesses, golds, correct, total = [], [], 0, 0
    for start in range(0, encoded.num_rows, 128):
        batch = collate([encoded[i] for i in range(start, min(start + 128, encoded.num_rows))])
        labels = batch.pop("labels")
        predicted = model(**batch).logits.argmax(-1)
        if token:
            g, r = tag_sequences(predicted.numpy(), labels.numpy(), result.task.label_names)
            guesses, golds = guesses + g, golds + r
        else:
            correct += int((predicted == labels).sum())
            total += labels.numel()
    if token:
        return float(load_metric(TOKEN_METRIC).compute(predictions=guesses, references=golds)["entity_f1"])
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", required=True)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--settings", nargs="+", default=["{}"], help="JSON objects of train() keyword arguments")
    parser.add_argument("--output", default="bench/results/defaults-sweep-validation.md")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)
    out = Path(args.output)
    rows = json.loads(out.with_suffix(".json").read_text())["rows"] if out.with_suffix(".json").is_file() else []
    for task in args.tasks:
        for method in args.methods:
            for setting in map(json.loads, args.settings):
                if any(r["task"] == task and r["method"] == method and r["setting"] == setting for r in rows):
                    continue
                budget = NER_BUDGET if task == "tweets-ner" else BUDGET
                with tempfile.TemporaryDirectory() as folder:
                    start = time.perf_counter()
                    result = kit.train(method, task, folder, **{**budget, **setting})
                    score = validation_score(result)
                row = {"task": task, "method": method, "setting": setting, "budget": budget,
                       "metric": "entity_f1" if task == "tweets-ner" else "accuracy",
                       "validation": round(score, 4), "learning_rate": result.meta.training["learning_rate"],
                       "seconds": round(time.perf_counter() - start), "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
                rows.append(row)
                print(row, flush=True)
                write_report(out, rows)


def write_report(out: Path, rows: list[dict]) -> None:
    settings = list(dict.fromkeys(json.dumps(r["setting"], sort_keys=True) for r in rows))
    tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
    lines = [
        "# Defaults chosen on the validation split, across the embedded tasks",
        "",
        f"Measured with `python bench/sweep_defaults.py` on {machine()} (rows dated in the JSON beside this file): "
        "the embedded all-MiniLM-L6-v2, compare's budget (4,800 training examples, 2 epochs of 32: 300 steps; "
        "tweets-ner: 1,200 tweets, 2 epochs of 16: 150 steps), seed 42, each method's default learning rate, scored on "
        "the whole validation split (accuracy; entity F1 for tweets-ner) after the best epoch is restored. One run per "
        "cell. The test split is not read.",
        "",
        "| method | setting | " + " | ".join(tasks) + " | mean |",
        "|---|---|" + "---|" * (len(tasks) + 1),
    ]
    for method in dict.fromkeys(r["method"] for r in rows):
        for setting in settings:
            cells = [next((r["validation"] for r in rows if r["method"] == method and r["task"] == t
                           and json.dumps(r["setting"], sort_keys=True) == setting), None) for t in tasks]  # fmt: skip
            if all(c is None for c in cells):
                continue
            done = [c for c in cells if c is not None]
            mean = f"{np.mean(done):.4f}" if len(done) == len(cells) else "n/a"
            shown = " | ".join("" if c is None else f"{c:.4f}" for c in cells)
            lines.append(f"| {method} | `{setting}` | {shown} | {mean} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
