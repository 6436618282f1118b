"""``hf-adapter-kit compare``: every method trained on one task under the same budget, measured side by side.

Each method trains in its own child process (so that its peak memory is its own), with the same data, epochs, batch
size and length limit; each method keeps its own default learning rate. Per method: test accuracy and macro F1,
trainable parameters (count and % of the base model), training samples/s and time per step (optimizer steps alone,
without evaluation and checkpoints), peak memory (CUDA allocator peak on GPU, the process's peak RSS on CPU), the
adapter folder's size, and inference latency relative to the base model without adapter (batch of 32 test texts,
timed interleaved with the base model, medians).

Step time relative to full fine-tuning is measured inside each child too, not across children: a shared machine's
speed drifts between processes (docs/benchmarks.md says by how much). After training, the child alternates an
optimizer step of the trained model with one of a fresh full fine-tuning model of the same base, on the same
training batches, and reports the median of the per-batch ratios. Its optimizers run at learning rate 0, so the
trained adapter is left as it was saved. Written to ``compare.json``, ``compare.md`` and ``compare.png`` (accuracy
against trainable parameters, one labelled point per method) in the output folder, each file whole or not at all
(``atomic.write_file``): a compare killed while writing them leaves the previous results.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..atomic import clear_staging, write_file
from ..data.embedded import EMBEDDED_TASKS
from ..errors import AdapterKitError, invalid
from ..folders import check_output_dir
from ..modeling import load_base_model
from ..registry import get_method, list_specs
from ..training.args import device_defaults, split_kwargs
from ..training.run import train


LATENCY_ROUNDS = 20
STEP_ROUNDS = 12


def compare(
    task: str = "tweets-polarity",
    methods: tuple[str, ...] | list[str] | None = None,
    output_dir: str = "outputs/compare",
    **train_kwargs: Any,
) -> list[dict[str, Any]]:
    """Train ``methods`` (default: every registered method) on ``task`` with the same ``train_kwargs``; returns one
    row per method (also written)."""
    methods = [spec.name for spec in list_specs()] if methods is None else list(methods)
    if not methods or len(set(methods)) != len(methods):
        raise invalid("methods", methods, "a non-empty list of distinct method names.")
    for name in methods:
        get_method(name)  # unknown names fail here, naming the allowed ones
    if task in EMBEDDED_TASKS and EMBEDDED_TASKS[task].kind != "sequence":
        text_tasks = [name for name, spec in EMBEDDED_TASKS.items() if spec.kind == "sequence"]
        raise invalid("task", task, f"compare measures text classification (accuracy, macro F1): one of {text_tasks} "
                      "or your own file; train a token task with `train` per method.")  # fmt: skip
    for key in ("method", "task", "output_dir", "tasks"):
        if key in train_kwargs:
            raise invalid(key, train_kwargs[key], "set by compare itself; give `task`, `methods` and `output_dir`.")
    split_kwargs(dict(train_kwargs))  # unknown keys fail before any training
    out = check_output_dir(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [_run_child(name, task, out, train_kwargs) for name in methods]
    report = {"task": task, "machine": machine(), "settings": train_kwargs, "methods": rows}
    write_file(out / "compare.json", json.dumps(report, indent=2) + "\n")
    write_file(out / "compare.md", markdown(report))
    write_file(out / "compare.png", plot(rows, task))
    return rows


def _run_child(method: str, task: str, out: Path, train_kwargs: dict[str, Any]) -> dict[str, Any]:
    job = {"method": method, "task": task, "output_dir": str(out / method), "train_kwargs": train_kwargs}
    result_file = out / f".{method}.result.json"
    result_file.unlink(missing_ok=True)  # one a killed compare left is never read as this child's
    clear_staging(result_file)
    command = [sys.executable, "-m", "hf_adapter_kit.commands.compare", json.dumps(job), str(result_file)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not result_file.is_file():
        raise AdapterKitError(f"`methods`: training {method!r} failed:\n{done.stderr[-3000:]}")
    row = json.loads(result_file.read_text())
    result_file.unlink()
    return row


def measure(method: str, task: str, output_dir: str, train_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Train one method and measure it (runs in the child process)."""
    import torch

    result = train(method, task, output_dir, **train_kwargs)
    training = result.meta.training
    steps, step_time = max(training["global_steps"], 1), training["step_time_s"]  # optimizer steps alone
    peak = _peak_memory()
    texts = result.task.splits["test"]["text"][:32]
    batch = result.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    base = load_base_model(result.meta.base_model, result.meta.label_names).eval()
    device = next(result.model.parameters()).device
    base, batch = base.to(device), {k: v.to(device) for k, v in batch.items()}
    model = result.model.eval()
    base_ms, model_ms = [], []
    with torch.inference_mode():
        for _ in range(3):  # warm-up (the Hyperformer's weight cache fills here)
            base(**batch), model(**batch)
        for _ in range(LATENCY_ROUNDS):
            base_ms.append(_timed(base, batch))
            model_ms.append(_timed(model, batch))
    ratio = step_time_vs_full(result, train_kwargs)
    return {
        "method": method,
        "backend": result.meta.backend,
        "accuracy": round(result.test_metrics["accuracy"], 4),
        "f1_macro": round(result.test_metrics["f1_macro"], 4),
        "trainable_parameters": result.trainable_parameters,
        "trainable_percent": round(result.trainable_percent, 3),
        "train_samples_per_s": round(training["per_device_train_batch_size"] / step_time, 1),
        "steps": steps,
        "step_time_s": step_time,
        "step_time_vs_full": round(ratio, 3),
        "train_runtime_s": training["train_runtime_s"],
        "peak_memory_mb": round(peak / 2**20, 1),
        "adapter_bytes": result.adapter_size_bytes,
        "latency_ms": round(statistics.median(model_ms), 2),
        "base_latency_ms": round(statistics.median(base_ms), 2),
        "latency_vs_base": round(statistics.median(model_ms) / statistics.median(base_ms), 3),
    }


def step_time_vs_full(result, train_kwargs: dict[str, Any]) -> float:
    """Median over ``STEP_ROUNDS`` training batches of (trained model's step time / full fine-tuning's step time).

    The two models take turns on each batch (who goes first alternates), in this process, so machine drift hits both.
    Both optimizers are AdamW at learning rate 0: the same work as a real step, and no weight moves.
    """
    import torch

    batch_size, max_length = result.meta.training["per_device_train_batch_size"], result.meta.training["max_length"]
    train_split = result.task.splits["train"]
    order = torch.randperm(len(train_split), generator=torch.Generator().manual_seed(0)).tolist()
    device = next(result.model.parameters()).device
    batches = []
    for k in range(STEP_ROUNDS + 2):  # two warm-up batches
        rows = train_split.select([order[(k * batch_size + i) % len(order)] for i in range(batch_size)])
        batch = result.tokenizer(
            list(rows["text"]), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        batch["labels"] = torch.tensor(rows["label"])
        batches.append({key: value.to(device) for key, value in batch.items()})
    full = load_base_model(result.meta.base_model, result.meta.label_names).to(device).train()
    model = result.model.train()
    contenders = [
        (model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)),
        (full, torch.optim.AdamW(full.parameters(), lr=0.0)),
    ]
    cuda = device.type == "cuda"
    defaults = device_defaults(cuda, cuda and torch.cuda.is_bf16_supported())  # the precision training used
    bf16, fp16 = (train_kwargs.get(key, defaults[key]) for key in ("bf16", "fp16"))
    dtype = torch.bfloat16 if bf16 else torch.float16
    mixed = bool(bf16 or fp16)
    ratios = []
    for k, batch in enumerate(batches):
        seconds = [0.0, 0.0]
        for which in (0, 1) if k % 2 == 0 else (1, 0):
            network, optimizer = contenders[which]
            start = _now(cuda)
            with torch.autocast(device.type, dtype=dtype, enabled=mixed):
                loss = network(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds[which] = _now(cuda) - start
        if k >= 2:
            ratios.append(seconds[0] / seconds[1])
    model.eval()
    return statistics.median(ratios)


def _now(cuda: bool) -> float:
    import torch

    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def _timed(model, batch) -> float:
    import torch

    cuda = torch.cuda.is_available()
    start = _now(cuda)
    model(**batch)
    return (_now(cuda) - start) * 1000


def _peak_memory() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def machine_info() -> dict[str, Any]:
    """The machine a measurement ran on: CPU model (from /proc/cpuinfo where there is one), cores, GPU, versions."""
    import adapters
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "adapters": adapters.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def machine() -> str:
    info = machine_info()
    if info["gpu"]:
        return f"{info['gpu']}, torch {info['torch']}"
    return f"{info['cpu']}, {info['cores']} cores, no GPU, torch {info['torch']}"


COLUMNS = [
    ("method", "method", "{}"),
    ("backend", "backend", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("f1_macro", "macro F1", "{:.4f}"),
    ("trainable_parameters", "trainable params", "{:,}"),
    ("trainable_percent", "% of base", "{:.2f}"),
    ("train_samples_per_s", "train samples/s", "{:.1f}"),
    ("step_time_vs_full", "step time vs full", "{:.2f}x"),
    ("peak_memory_mb", "peak memory (MB)", "{:,.0f}"),
    ("adapter_bytes", "adapter folder (bytes)", "{:,}"),
    ("latency_vs_base", "inference latency vs base", "{:.2f}x"),
]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Methods compared on `{report['task']}`",
        "",
        f"Machine: {report['machine']}. Settings: `{json.dumps(report['settings'])}` (each method with its own default "
        "learning rate). One run; every method trained and measured in its own process, side by side.",
        "",
        "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in report["methods"]:
        cells = ["n/a" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], task: str) -> bytes:
    """The PNG of accuracy against trainable parameters, one labelled point per method."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for row in rows:
        axes.scatter(row["trainable_parameters"], row["accuracy"], s=40)
        axes.annotate(
            row["method"], (row["trainable_parameters"], row["accuracy"]), textcoords="offset points", xytext=(5, 4)
        )
    axes.set_xscale("log")
    axes.set_xlabel("trainable parameters (log scale)")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"Accuracy against trainable parameters: {task}")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    plt.close(figure)
    return image.getvalue()


if __name__ == "__main__":  # the child process of compare(): python -m hf_adapter_kit.commands.compare JOB RESULT_FILE
    job = json.loads(sys.argv[1])
    row = measure(job["method"], job["task"], job["output_dir"], job["train_kwargs"])
    write_file(sys.argv[2], json.dumps(row))
