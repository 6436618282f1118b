"""The kit's overhead over a hand-written loop with the raw library, same method, same batches (target <= 1.03x).

Kit: ``hf_adapter_kit.train("pfeiffer", ...)`` (the Trainer, the kit's sampler and collator, logging every 10 steps;
evaluation and checkpoints off, since the loop below does neither). Raw: ``adapters.init`` + ``add_adapter(seq_bn)``
+ ``train_adapter`` on the same base model and a hand-written loop over a ``DataLoader`` that collates the same
batches in the same order (the kit's length-grouped order for the same seed), fused AdamW, gradient clipping at 1.0
and the linear schedule with warm-up: the arithmetic the Trainer does.

The two run in lockstep in one process, so that both sides of every comparison are measured seconds apart (whole
runs one after the other differed by +-10% on a shared 2-core machine): a callback in the kit's run does one raw step
right after each kit step. Kit step k costs its optimizer step plus everything the Trainer does until step k + 1
begins (logging, callbacks, fetching and collating the next batch), the raw step included in the gap subtracted; raw
step k costs its optimizer step plus collating its batch. Reported: the median of the per-step ratios and the ratio
of the totals, after ``--skip`` warm-up steps.

Usage: python bench/bench_overhead.py [--steps 120] [--skip 5] [--out bench/results/overhead-cpu.md]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import adapters
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, TrainerCallback, get_linear_schedule_with_warmup

from hf_adapter_kit import train
from hf_adapter_kit.commands.compare import machine
from hf_adapter_kit.data import load_task
from hf_adapter_kit.modeling import DEFAULT_MODEL, head_prefixes, load_base_model, load_tokenizer
from hf_adapter_kit.training.preprocess import tokenize_task
from hf_adapter_kit.training.strategies import classification
from hf_adapter_kit.training.trainer import EpochSeededLengthGroupedSampler, KitTrainer


SETTINGS = dict(max_train_samples=4800, max_eval_samples=32, max_length=64, per_device_train_batch_size=32, seed=42)
LR, WARMUP = 1e-3, 0.06


def raw_loader(steps: int):
    task = load_task("tweets-polarity", max_train_samples=SETTINGS["max_train_samples"], max_eval_samples=32, seed=42)
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    data = tokenize_task(task, tokenizer, SETTINGS["max_length"])["train"]
    order = list(EpochSeededLengthGroupedSampler(32, lengths=data["length"], seed=SETTINGS["seed"]))
    batches = [order[k * 32 : (k + 1) * 32] for k in range(steps)]
    rows = data.remove_columns(["length"])
    return DataLoader(rows, batch_sampler=batches, collate_fn=DataCollatorWithPadding(tokenizer)), task.label_names


class RawLoop(TrainerCallback):
    """The hand-written loop, one step per kit step, timed on its own (collating its batch included)."""

    def __init__(self, loader, labels, steps: int):
        torch.manual_seed(SETTINGS["seed"])
        self.model = load_base_model(DEFAULT_MODEL, labels)
        adapters.init(self.model)
        self.model.add_adapter("raw", config="seq_bn")
        self.model.train_adapter("raw")
        for name, param in self.model.named_parameters():
            if name.split(".")[0] in head_prefixes(self.model):
                param.requires_grad = True
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=LR, fused=True)
        self.schedule = get_linear_schedule_with_warmup(self.optimizer, int(WARMUP * steps), steps)
        self.model.train()
        self.batches = iter(loader)
        self.raw_times: list[float] = []
        self.kit_begins: list[float] = []  # when each kit step began
        self.raw_ends: list[float] = []  # when the raw step after each kit step ended

    def on_step_begin(self, args, state, control, **kwargs):
        self.kit_begins.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        start = time.perf_counter()
        batch = next(self.batches)
        self.model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.raw_ends.append(time.perf_counter())
        self.raw_times.append(self.raw_ends[-1] - start)


def lockstep(steps: int) -> tuple[list[float], list[float]]:
    """Per step: the kit's cost and the raw loop's cost."""
    loader, labels = raw_loader(steps)
    raw = RawLoop(loader, labels, steps)

    class LockstepTrainer(KitTrainer):  # the kit's own Trainer, with the raw loop riding along
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(raw)

    classification.KitTrainer = LockstepTrainer
    try:
        with tempfile.TemporaryDirectory() as out:
            result = train(
                "pfeiffer",
                "tweets-polarity",
                out,
                max_steps=steps,
                eval_strategy="no",
                save_strategy="no",
                load_best_model_at_end=False,
                disable_tqdm=True,
                learning_rate=LR,
                warmup_ratio=WARMUP,
                **SETTINGS,
            )
    finally:
        classification.KitTrainer = KitTrainer
    # kit step k: its own step + the gap from the raw step's end to kit step k + 1 (the Trainer's work between steps)
    kit = [result.step_times[k] + (raw.kit_begins[k + 1] - raw.raw_ends[k]) for k in range(steps - 1)]
    return kit, raw.raw_times[: steps - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps left out")
    parser.add_argument("--out", default="bench/results/overhead-cpu.md")
    args = parser.parse_args()
    kit, raw = (times[args.skip :] for times in lockstep(args.steps))
    per_step = statistics.median(k / r for k, r in zip(kit, raw, strict=True))
    totals = sum(kit) / sum(raw)
    text = (
        "# The kit's training overhead over a hand-written loop\n\n"
        f"Measured {time.strftime('%Y-%m-%d')} with `python bench/bench_overhead.py --steps {args.steps} --skip "
        f"{args.skip}` on {machine()}. Pfeiffer (`seq_bn`) on all-MiniLM-L6-v2, tweets-polarity, batch 32, max "
        "length 64, the same batches in the same order on both sides, each collated in the loop; the two loops in "
        f"lockstep, {len(kit)} steps compared after {args.skip} warm-up steps.\n\n"
        "| | s/step (median) | s in all |\n|---|---|---|\n"
        f"| kit (`hf_adapter_kit.train`, Trainer) | {statistics.median(kit):.3f} | {sum(kit):.1f} |\n"
        f"| raw `adapters`, hand-written loop | {statistics.median(raw):.3f} | {sum(raw):.1f} |\n\n"
        f"Kit / raw: **{per_step:.3f}x** (median of the per-step ratios), {totals:.3f}x (ratio of the totals); "
        "target <= 1.03x.\n"
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
