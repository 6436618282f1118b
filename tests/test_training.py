"""``train()`` and ``hf-adapter-kit train`` on tiny models and local files: what they write and what they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hf_adapter_kit import AdapterKitError, from_pretrained, train
from hf_adapter_kit.commands.cli import main
from hf_adapter_kit.commands.demo import logits


QUICK = dict(num_train_epochs=2, per_device_train_batch_size=16, disable_tqdm=True, max_length=16)


@pytest.mark.parametrize(
    ("method", "backend", "weight_files"),
    [
        ("pfeiffer", None, {"adapter.safetensors", "model_head.safetensors"}),
        ("lora", "peft", {"adapter_model.safetensors"}),
        ("head", None, {"head.safetensors"}),
    ],
)
def test_train_saves_evaluated_adapter_only(tiny_model_dirs, toy_files, tmp_path, method, backend, weight_files):
    out = tmp_path / "run"
    result = train(
        method, "toy", str(out), backend=backend, model_name_or_path=tiny_model_dirs["bert"], **toy_files, **QUICK
    )
    assert set(result.test_metrics) == {"accuracy", "f1_macro"}
    assert 0.0 <= result.test_metrics["accuracy"] <= 1.0
    files = {p.name for p in result.adapter_dir.iterdir()}
    assert weight_files <= files and "hf_adapter_kit.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    assert result.adapter_size_bytes == sum(p.stat().st_size for p in result.adapter_dir.iterdir())
    meta = json.loads((result.adapter_dir / "hf_adapter_kit.json").read_text())
    assert meta["method"] == method and meta["label_names"] == ["negative", "positive"]
    assert meta["metrics"] == result.test_metrics and meta["base_model"] == tiny_model_dirs["bert"]
    assert meta["training"]["global_steps"] == 8  # 64 examples / 16 per batch x 2 epochs
    # Checkpoints hold the adapter alone, never the frozen base model.
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints
    for checkpoint in checkpoints:
        assert "model.safetensors" not in {p.name for p in checkpoint.iterdir()}
        assert weight_files <= {p.name for p in checkpoint.iterdir()}
    # The saved adapter reproduces the trained model exactly in a fresh base model.
    texts = ["the flight was great today", "the flight was rude today"]
    reloaded = from_pretrained(result.adapter_dir)
    assert torch.equal(logits(reloaded, result.tokenizer, texts), logits(result.model, result.tokenizer, texts))


def test_learns_the_toy_task(tiny_model_dirs, toy_files, tmp_path):
    result = train(
        "lora",
        "toy",
        str(tmp_path / "run"),
        model_name_or_path=tiny_model_dirs["roberta"],
        learning_rate=1e-2,
        **toy_files,
        **{**QUICK, "num_train_epochs": 4},
    )
    assert result.test_metrics["accuracy"] >= 0.9, result.test_metrics


def test_best_checkpoint_is_restored(tiny_model_dirs, toy_files, tmp_path):
    result = train(
        "pfeiffer", "toy", str(tmp_path / "run"), model_name_or_path=tiny_model_dirs["bert"], **toy_files, **QUICK
    )
    state = json.loads(sorted((tmp_path / "run").glob("checkpoint-*"))[-1].joinpath("trainer_state.json").read_text())
    best = Path(state["best_model_checkpoint"])
    reloaded = from_pretrained(best)
    texts = ["the flight was lovely today"]
    assert torch.equal(logits(reloaded, result.tokenizer, texts), logits(result.model, result.tokenizer, texts))


@pytest.mark.parametrize("multitask", [False, True], ids=["pfeiffer", "hyperformer-multitask"])
def test_model_trained_in_mixed_precision_is_returned_plain(tiny_model_dirs, toy_files, tmp_path, multitask):
    """accelerate wraps a mixed-precision model's forward in autocast; the kit hands back the model without that
    wrapper, so its outputs are those of the saved adapter reloaded (CPU bf16 stands in for a GPU's bf16 here)."""
    kwargs = {"tasks": ["tweets-polarity", "tweets-3way"], "max_train_samples": 32, "max_eval_samples": 16}
    kwargs = (kwargs | {"method_options": '{"projected_dim": 4}'}) if multitask else toy_files
    method = "hyperformer" if multitask else "pfeiffer"
    result = train(
        method,
        "toy",
        str(tmp_path / "run"),
        model_name_or_path=tiny_model_dirs["bert"],
        bf16=True,
        use_cpu=True,
        **kwargs,
        **QUICK,
    )
    assert "_original_forward" not in vars(result.model)
    reloaded = from_pretrained(result.adapter_dir)
    batch = result.tokenizer(["the flight was lovely today", "lost bag"], padding=True, return_tensors="pt")
    batch = {key: batch[key] for key in ("input_ids", "attention_mask")}
    routed = {"task_ids": "tweets-3way"} if multitask else {}
    with torch.no_grad():
        ours, theirs = result.model(**batch, **routed).logits, reloaded(**batch, **routed).logits
    if multitask:
        ours, theirs = ours["tweets-3way"], theirs["tweets-3way"]
    assert ours.dtype == torch.float32 and torch.equal(ours, theirs)


def test_cli_mirrors_python_api(tiny_model_dirs, toy_files, tmp_path, capsys):
    argv = [
        "train",
        "--method",
        "houlsby",
        "--method_options",
        '{"reduction_factor": 4}',
        "--task",
        "toy",
        "--output_dir",
        str(tmp_path / "cli"),
        "--model_name_or_path",
        tiny_model_dirs["bert"],
        "--num_train_epochs",
        "1",
        "--disable_tqdm",
        "true",
    ]
    for key, value in toy_files.items():
        argv += [f"--{key}", value]
    assert main(argv) == 0
    assert "test metrics" in capsys.readouterr().out
    config = json.loads((tmp_path / "cli" / "adapter" / "adapter_config.json").read_text())
    assert config["config"]["reduction_factor"] == 4 and config["config"]["mh_adapter"] is True


def test_cli_reports_kit_errors(capsys, tmp_path):
    assert main(["train", "--method", "nope", "--output_dir", str(tmp_path / "x")]) == 2
    assert "`method`='nope'" in capsys.readouterr().err
    assert main(["train", "--no_such_flag", "1"]) == 2
    assert "--no_such_flag" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _bad_inputs(tmp_path: Path, files: dict, tiny: str):
    text_file = tmp_path / "occupied"
    text_file.write_text("not a folder")
    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("review\nfine\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("review,stars\n")
    odd_label = tmp_path / "odd.csv"
    odd_label.write_text("review,stars\nhello,sideways\n")
    base = dict(model_name_or_path=tiny, **files)
    return [
        ("method", dict(base, method="prefix-tuning"), r"`method`='prefix-tuning'"),
        ("task", dict(method="pfeiffer", task="no-such-task-anywhere"), r"no-such-task-anywhere"),
        ("text column", dict(base, text_column="body"), r"`text_column`='body'"),
        ("label column", dict(base, label_column="rating"), r"`label_column`='rating'"),
        ("label column missing", dict(base, train_file=str(no_label)), r"`label_column`='stars'"),
        ("empty dataset", dict(base, train_file=str(empty)), r"empty|no rows|0 rows"),
        ("label outside set", dict(base, test_file=str(odd_label)), r"sideways"),
        ("model path", dict(files, model_name_or_path="./models/missing-bert"), r"missing-bert.*does not exist"),
        ("output dir is a file", dict(base, output_dir=str(text_file)), r"`output_dir`=.*is a file"),
        ("method option", dict(base, method_options='{"reduction_factor": 0}'), r"`reduction_factor`=0"),
        ("method options json", dict(base, method_options="{r: 4"), r"`method_options`"),
        ("resume nowhere", dict(base, resume_from_checkpoint=str(tmp_path / "nothing")), r"resume_from_checkpoint"),
        ("unknown argument", dict(base, lora_rank=4), r"Unknown argument\(s\) \['lora_rank'\]"),
    ]


def test_bad_input_is_refused_before_anything_is_written(tiny_model_dirs, toy_files, tmp_path):
    cases = _bad_inputs(tmp_path, toy_files, tiny_model_dirs["bert"])
    for name, kwargs, match in cases:
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        kwargs = {"method": "pfeiffer", "task": "toy", "output_dir": str(out), **kwargs}
        with pytest.raises(AdapterKitError, match=match):
            train(**kwargs)
        if name != "output dir is a file":
            assert not out.exists(), name
    assert (tmp_path / "occupied").read_text() == "not a folder"


def test_device_defaults_pick_mixed_precision_and_workers_per_device():
    from hf_adapter_kit.training.args import device_defaults

    assert device_defaults(cuda=False, bf16_supported=False) == {
        "bf16": False,
        "fp16": False,
        "tf32": None,
        "dataloader_num_workers": 0,
    }
    assert device_defaults(cuda=True, bf16_supported=True) == {
        "bf16": True,
        "fp16": False,
        "tf32": True,
        "dataloader_num_workers": 2,
    }
    assert device_defaults(cuda=True, bf16_supported=False) == {
        "bf16": False,
        "fp16": True,
        "tf32": None,
        "dataloader_num_workers": 2,
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_explicit_values_win_and_bf16_without_a_gpu_is_refused(tmp_path):
    from hf_adapter_kit.training.args import KitTrainingArguments

    args = KitTrainingArguments(output_dir=str(tmp_path / "a"), dataloader_num_workers=1, fp16=False)
    assert (args.bf16, args.fp16, args.dataloader_num_workers) == (False, False, 1)  # this machine: CPU
    assert KitTrainingArguments(output_dir=str(tmp_path / "b"), bf16=True, use_cpu=True).bf16  # CPU bf16 if asked
    out = tmp_path / "run"
    with pytest.raises(AdapterKitError, match=r"`bf16`=True is not valid on this machine: it has no GPU"):
        train("pfeiffer", "toy", str(out), bf16=True)
    assert not out.exists()


def test_each_task_shape_has_its_strategy():
    from hf_adapter_kit.training.strategies import (
        Classification,
        InstructionTuning,
        MultiTaskClassification,
        TextToText,
        choose_strategy,
    )

    assert choose_strategy(None, None) is Classification
    assert choose_strategy(None, ["a", "b"]) is MultiTaskClassification
    assert choose_strategy("causal-lm", None) is choose_strategy("causal-lm", ["a", "b"]) is InstructionTuning
    assert choose_strategy("seq2seq-lm", None) is choose_strategy("seq2seq-lm", ["a", "b"]) is TextToText
    with pytest.raises(
        AdapterKitError, match=r"`task_type`='span' is not valid: one of \[None, 'causal-lm', 'seq2seq"
    ):
        choose_strategy("span", None)


# the steps where task shapes differ, in the order the pipeline reaches them
HOOKS = "check config_options load_data encode load_model meta_fields attach trainer evaluate".split()


def test_a_registered_strategy_runs_through_the_one_pipeline(tiny_model_dirs, toy_files, tmp_path, monkeypatch):
    """A new task shape is a strategy added to the registry: the pipeline calls each of its steps once, in order."""
    from hf_adapter_kit.training import strategies
    from hf_adapter_kit.training.args import DataArguments, KitTrainingArguments, MethodArguments, ModelArguments
    from hf_adapter_kit.training.run import run_training

    calls = []

    def recorded(name):
        original = getattr(strategies.Classification, name)

        def hook(self, *args, **kwargs):
            calls.append(name)
            return original(self, *args, **kwargs)

        return hook

    shape = type(
        "Recorded", (strategies.Classification,), {"task_type": "recorded", **{n: recorded(n) for n in HOOKS}}
    )
    monkeypatch.setattr(strategies, "STRATEGIES", (*strategies.STRATEGIES, shape))
    model_args = ModelArguments(model_name_or_path=tiny_model_dirs["bert"], max_length=16)
    model_args.task_type = "recorded"  # a task_type ModelArguments does not know yet
    training_args = KitTrainingArguments(output_dir=str(tmp_path / "run"), num_train_epochs=1, disable_tqdm=True)
    result = run_training(model_args, DataArguments(task="toy", **toy_files), MethodArguments(), training_args)
    assert calls == HOOKS
    assert set(result.test_metrics) == {"accuracy", "f1_macro"}
    assert (result.adapter_dir / "hf_adapter_kit.json").is_file()
