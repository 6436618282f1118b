"""Choose an SFT recipe's settings on the VALIDATION split: each arm is its recipe run with a few options changed.

Each arm trains ``hf-adapter-kit train --config <method>-sft`` plus the arm's overrides, on the embedded
SmolLM2-135M-Instruct (``make setup-llm``), then scores the trained adapter on the validation split the run held
out (the same 200 examples it picked its best checkpoint on): accuracy by greedy generation and completion
perplexity. The run's own test figures are dropped here, so the choice never sees the test split. Rows are appended
to the JSON beside ``--output`` as they finish; ``bench/bench_llm.py`` then measures the chosen recipe on test.

Usage:
python bench/sweep_sft.py --arms '[{"method": "parallel", "scaling": 4.0}, {"method": "parallel", "learning_rate": 1e-3}]'
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from report import save


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", required=True, help="a JSON list of {'method': ..., <option>: <value>, ...}")
    parser.add_argument("--output", default="bench/results/sft-sweep-validation.md")
    return parser.parse_args(argv)


def run_arm(arm: dict) -> dict:
    from hf_adapter_kit.commands.parser import parse_train
    from hf_adapter_kit.data.instructions import load_instructions
    from hf_adapter_kit.llm.generation import evaluate_generation
    from hf_adapter_kit.training.chat import encode_splits
    from hf_adapter_kit.training.run import run_training

    options = {k: v for k, v in arm.items() if k != "method"}
    flags = [f"--{k}={json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in options.items()]
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--config", f"{arm['method']}-sft", "--disable_tqdm", "true", "--output_dir", f"{tmp}/run", *flags]
        arguments, _ = parse_train(argv)
        model_args, data_args, _, training_args = arguments
        start = time.perf_counter()
        result = run_training(*arguments)
        data = load_instructions(data_args.task, **data_args.load_kwargs())
        validation = data.splits["validation"]
        scored = evaluate_generation(
            result.model,
            tokenizer=result.tokenizer,
            prompts=list(validation["prompt"]),
            references=list(validation["completion"]),
            encoded=encode_splits(data, result.tokenizer, model_args.max_length)["validation"],
            batch_size=training_args.per_device_eval_batch_size,
            max_new_tokens=model_args.max_new_tokens,
        )
    return {
        "arm": arm,
        "backend": result.meta.backend,
        "validation_accuracy": scored.accuracy,
        "validation_perplexity": scored.perplexity,
        "validation_examples": len(validation),
        "trainable_parameters": result.trainable_parameters,
        "run_seconds": time.perf_counter() - start,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# SFT recipe settings chosen on the validation split", "",
             (__doc__ or "").split("\n\n", 1)[1].split("\nUsage:")[0].strip(), "",
             f"Measured with `python bench/sweep_sft.py` on {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
             f"adapters {m['adapters']}, {'GPU ' + m['gpu'] if m['gpu'] else 'no GPU'}; one run per row (dated in the "
             "JSON beside this file), one after the other.", "",
             "| method | backend | changed from the recipe | validation accuracy | validation perplexity | trainable params "
             "| run |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in report["rows"]:
        changed = {k: v for k, v in row["arm"].items() if k != "method"}
        lines.append(
            f"| {row['arm']['method']} | {row['backend']} | `{json.dumps(changed)}` | {row['validation_accuracy']:.3f} "
            f"| {row['validation_perplexity']:.3f} | {row['trainable_parameters']:,} | {row['run_seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    from transformers import logging as hf_logging

    from hf_adapter_kit.commands.compare import machine_info

    hf_logging.set_verbosity_error()
    path = Path(args.output).with_suffix(".json")
    report = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    for arm in json.loads(args.arms):
        report["rows"].append(run_arm(arm))
        report["machine"] = machine_info()
        save(report, args.output, markdown)


if __name__ == "__main__":
    main()
