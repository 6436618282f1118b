"""``hf-adapter-kit compare``: methods trained side by side under one budget; table, JSON and plot."""

from __future__ import annotations

import json

import pytest
import torch

from hf_adapter_kit import AdapterKitError, train
from hf_adapter_kit.commands.cli import main
from hf_adapter_kit.commands.compare import COLUMNS, STEP_ROUNDS, compare, step_time_vs_full


def test_compare_writes_table_json_and_plot(tiny_model_dirs, toy_files, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--task", "toy", "--methods", "full,pfeiffer", "--output_dir", str(out)]
    argv += ["--model_name_or_path", tiny_model_dirs["bert"], "--num_train_epochs", "1", "--max_length", "16"]
    argv += ["--disable_tqdm", "true"]
    for key, value in toy_files.items():
        argv += [f"--{key}", value]
    assert main(argv) == 0
    report = json.loads((out / "compare.json").read_text())
    rows = {row["method"]: row for row in report["methods"]}
    assert list(rows) == ["full", "pfeiffer"] and report["settings"]["num_train_epochs"] == 1.0
    for row in rows.values():
        assert {key for key, _, _ in COLUMNS} <= set(row)
        assert 0 <= row["accuracy"] <= 1 and row["steps"] == 2 and row["latency_ms"] > 0 and row["peak_memory_mb"] > 0
        assert row["adapter_bytes"] == sum(p.stat().st_size for p in (out / row["method"] / "adapter").iterdir())
    for row in rows.values():  # timed in each child against a fresh full fine-tuning model, not against the full row
        assert 0 < row["step_time_vs_full"] < 100
    for row in rows.values():  # optimizer steps alone: the run's whole time also holds evaluation and checkpoints
        assert 0 < row["step_time_s"] * row["steps"] < row["train_runtime_s"]
        assert row["train_samples_per_s"] == pytest.approx(32 / row["step_time_s"], rel=0.01)  # default batch 32
    assert rows["pfeiffer"]["trainable_parameters"] < rows["full"]["trainable_parameters"]
    table = (out / "compare.md").read_text()
    assert table.count("\n| ") == 3 and "| pfeiffer | adapters |" in table and table in capsys.readouterr().out
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"methods": ["pfeiffer", "prefix"]}, r"`method`='prefix'"),
        ({"methods": ["lora", "lora"]}, r"`methods`"),
        ({"methods": []}, r"`methods`"),
        ({"methods": ["lora"], "method": "full"}, r"`method`='full'.*set by compare"),
        ({"methods": ["lora"], "learning_rat": 0.1}, r"Unknown argument\(s\) \['learning_rat'\]"),
    ],
)
def test_bad_compare_input_is_refused_before_training(tmp_path, kwargs, match):
    with pytest.raises(AdapterKitError, match=match):
        compare("toy", output_dir=str(tmp_path / "cmp"), **kwargs)
    assert not (tmp_path / "cmp").exists()


def test_a_token_task_is_refused_before_training(tmp_path):
    """compare's table is accuracy and macro F1 of whole texts: an entity task is named and refused up front."""
    with pytest.raises(AdapterKitError, match=r"`task`='tweets-ner'.*text classification"):
        compare("tweets-ner", methods=["head"], output_dir=str(tmp_path / "cmp"))
    assert not (tmp_path / "cmp").exists()


def test_step_time_vs_full_times_real_steps_and_moves_no_weight(tiny_model_dirs, toy_files, tmp_path, monkeypatch):
    result = train(
        "pfeiffer",
        "toy",
        str(tmp_path / "run"),
        model_name_or_path=tiny_model_dirs["bert"],
        num_train_epochs=1,
        max_length=16,
        disable_tqdm=True,
        **toy_files,
    )
    trained = {name: p.detach().clone() for name, p in result.model.named_parameters() if p.requires_grad}
    steps, real_step = [], torch.optim.AdamW.step

    def counted_step(optimizer, *args, **kwargs):
        steps.append(sum(p.grad is not None for group in optimizer.param_groups for p in group["params"]))
        return real_step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted_step)
    ratio = step_time_vs_full(result, {"max_length": 16})
    assert ratio > 0
    assert len(steps) == 2 * (STEP_ROUNDS + 2) and min(steps) > 0  # every step of both models had gradients
    assert not result.model.training
    for name, param in result.model.named_parameters():
        if name in trained:
            assert torch.equal(param, trained[name]), name  # AdamW at lr 0: the saved adapter still matches the model
