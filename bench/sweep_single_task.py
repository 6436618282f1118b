"""Choose a method's single-task settings on the VALIDATION split, with the budget ``hf-adapter-kit compare`` uses.

Each arm is one ``hf_adapter_kit.train`` run (the Trainer, the kit's defaults) on the embedded default with compare's
settings, scored on the task's whole validation split. The test split is never read here: ``train`` evaluates it, and
this script drops that number. Rows are appended to the JSON beside ``--output`` as they finish.

Usage:
python bench/sweep_single_task.py --arms '[{"method": "parallel", "learning_rate": 3e-3,
                                            "method_options": {"scaling": 1.0}}]'
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
from transformers import EvalPrediction
from transformers import logging as hf_logging

import hf_adapter_kit as kit
from hf_adapter_kit.commands.compare import machine
from hf_adapter_kit.metrics import compute_classification_metrics
from hf_adapter_kit.registry import get_method


COMPARE_SETTINGS = {"max_length": 64, "max_train_samples": 4800, "num_train_epochs": 2.0, "disable_tqdm": True}


def validation_accuracy(result) -> tuple[float, float]:
    """Accuracy and macro F1 (the kit's Trainer metrics) of the trained model on the task's whole validation split."""
    split = result.task.splits["validation"]
    texts, predictions = list(split["text"]), []
    with torch.inference_mode():
        for i in range(0, len(texts), 128):
            batch = result.tokenizer(
                texts[i : i + 128],
                padding=True,
                truncation=True,
                max_length=COMPARE_SETTINGS["max_length"],
                return_tensors="pt",
            )
            predictions.append(result.model.eval()(**batch).logits.argmax(-1).numpy())
    scores = compute_classification_metrics(
        EvalPrediction(predictions=np.concatenate(predictions), label_ids=np.asarray(split["label"]))
    )
    return scores["accuracy"], scores["f1_macro"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", required=True, help="JSON list of {method, learning_rate?, method_options?}")
    parser.add_argument("--task", default="tweets-polarity")
    parser.add_argument("--output", default="bench/results/single-task-sweep-validation.md")
    args = parser.parse_args()
    arms = json.loads(args.arms)
    for arm in arms:
        unknown = set(arm) - {"method", "learning_rate", "method_options"}
        if unknown or "method" not in arm:
            parser.error(f"arm {arm}: give `method` and optionally `learning_rate`, `method_options`")
    hf_logging.set_verbosity_error()
    logging.getLogger("adapters").setLevel(logging.ERROR)
    out = Path(args.output)
    rows = json.loads(out.with_suffix(".json").read_text())["rows"] if out.with_suffix(".json").is_file() else []
    for arm in arms:
        lr = arm.get("learning_rate", get_method(arm["method"]).learning_rate)
        options = arm.get("method_options", {})
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            result = kit.train(
                arm["method"],
                args.task,
                folder,
                learning_rate=lr,
                method_options=json.dumps(options),
                **COMPARE_SETTINGS,
            )
            accuracy, f1 = validation_accuracy(result)
        row = {
            "method": arm["method"],
            "learning_rate": lr,
            "method_options": options,
            "trainable_parameters": result.trainable_parameters,
            "validation_accuracy": round(accuracy, 4),
            "validation_f1_macro": round(f1, 4),
            "seconds": round(time.perf_counter() - start),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        rows.append(row)
        print(row, flush=True)
        write_report(out, rows, args.task)


def write_report(out: Path, rows: list[dict], task: str) -> None:
    lines = [
        "# Single-task settings chosen on the validation split",
        "",
        f"Measured with `python bench/sweep_single_task.py` on {machine()} (rows dated in the JSON beside this file). "
        f"`{task}`, the settings of `hf-adapter-kit compare` (`{json.dumps(COMPARE_SETTINGS)}`, batch 32, seed 42), "
        "the kit's Trainer and schedule; scored on the whole validation split after the best epoch is restored "
        "(by validation accuracy). One run per row. Method options: those the arm set; `{}` is the method's defaults "
        "on the row's date.",
        "",
        "| method | learning rate | method options | trainable params | validation accuracy | validation macro F1 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['learning_rate']:g} | `{json.dumps(row['method_options'])}` | "
            f"{row['trainable_parameters']:,} | {row['validation_accuracy']:.4f} | {row['validation_f1_macro']:.4f} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
