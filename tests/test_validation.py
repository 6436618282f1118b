"""Every bad value of a training run is an AdapterKitError raised before a model is loaded or a file is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hf_adapter_kit.training.run as run_module
import hf_adapter_kit.training.strategies.classification as classification_module
import hf_adapter_kit.training.strategies.multitask as multitask_module
from hf_adapter_kit import AdapterKitError, train
from hf_adapter_kit.folders import check_output_dir
from hf_adapter_kit.training.args import DataArguments, KitTrainingArguments, MethodArguments, ModelArguments
from hf_adapter_kit.training.validate import check_values


# (keyword arguments, what the message must name); each is one value torch or transformers refuses later, or one
# that would train nothing without a word.
BAD_VALUES = [
    ({"learning_rate": -0.001}, r"`learning_rate`=-0.001 is not valid: a number > 0"),
    ({"learning_rate": 0.0}, r"`learning_rate`=0.0"),
    ({"learning_rate": float("nan")}, r"`learning_rate`=nan"),
    ({"learning_rate": "1e-4"}, r"`learning_rate`='1e-4'"),
    ({"warmup_ratio": 1.5}, r"`warmup_ratio`=1.5 is not valid: a number from 0 to 1"),
    ({"warmup_ratio": -0.1}, r"`warmup_ratio`=-0.1"),
    ({"warmup_steps": -3}, r"`warmup_steps`=-3"),
    ({"per_device_train_batch_size": 0}, r"`per_device_train_batch_size`=0 is not valid: an integer >= 1"),
    ({"per_device_eval_batch_size": -8}, r"`per_device_eval_batch_size`=-8"),
    ({"per_device_train_batch_size": 16.0}, r"`per_device_train_batch_size`=16.0"),
    ({"num_train_epochs": -1}, r"`num_train_epochs`=-1 is not valid: a number >= 0"),
    ({"max_steps": -5}, r"`max_steps`=-5 is not valid: an integer >= 1, or -1"),
    ({"max_steps": 0, "num_train_epochs": 0}, r"`num_train_epochs`=0 .*nothing would train"),
    ({"num_train_epochs": 0}, r"`num_train_epochs`=0"),
    ({"gradient_accumulation_steps": 0}, r"`gradient_accumulation_steps`=0"),
    ({"weight_decay": -0.01}, r"`weight_decay`=-0.01 is not valid: a number >= 0"),
    ({"adam_beta2": 1.0}, r"`adam_beta2`=1.0"),
    ({"adam_epsilon": -1e-8}, r"`adam_epsilon`=-1e-08"),
    ({"label_smoothing_factor": 1.0}, r"`label_smoothing_factor`=1.0"),
    ({"max_length": 0}, r"`max_length`=0 is not valid: an integer >= 8"),
    ({"seed": -1}, r"`seed`=-1 is not valid: an integer from 0 to 4294967295"),
    ({"seed": 2**32}, r"`seed`=4294967296"),
    ({"data_seed": -2}, r"`data_seed`=-2"),
    ({"split_seed": -3}, r"`split_seed`=-3"),
    ({"dataloader_num_workers": -1}, r"`dataloader_num_workers`=-1"),
    ({"save_total_limit": -1}, r"`save_total_limit`=-1"),
    ({"logging_steps": 0}, r"`logging_steps`=0 is not valid: a number > 0 while logging_strategy='steps'"),
    ({"logging_steps": 2.5}, r"`logging_steps`=2.5"),
    ({"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": -1}, r"`eval_steps`=-1"),
    ({"eval_strategy": "steps", "save_strategy": "steps", "save_steps": 0}, r"`save_steps`=0"),
    ({"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 10, "save_steps": 15}, r"multiple of eval"),
    ({"eval_strategy": "no"}, r"`eval_strategy`='no' is not valid: the same as save_strategy='epoch'"),
    ({"eval_strategy": "sometimes"}, r"`eval_strategy`='sometimes' is not valid: expected one of 'epoch', 'no'"),
    ({"lr_scheduler_type": "cosinus"}, r"`lr_scheduler_type`='cosinus' is not valid: expected one of .*'cosine'"),
    ({"metric_for_best_model": "f1"}, r"`metric_for_best_model`='f1' is not valid: expected one of .*'f1_macro'"),
    ({"fp16": True, "bf16": True}, r"`fp16`=True is not valid: False when bf16=True"),
]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading a tokenizer or model, or tokenizing, fails the test: every refusal must come before."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model, tokenizer or task was loaded before the arguments were checked")

    for name in ("load_tokenizer", "load_base_model", "load_task", "tokenize_task"):
        monkeypatch.setattr(classification_module, name, refuse)
    for name in ("load_tokenizer", "load_task", "tokenize_task"):
        monkeypatch.setattr(multitask_module, name, refuse)
    monkeypatch.setattr(multitask_module.AutoModel, "from_pretrained", refuse)


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(("kwargs", "match"), BAD_VALUES, ids=lambda x: str(x) if isinstance(x, dict) else "")
def test_bad_training_values_are_refused_before_anything_happens(
    tiny_model_dirs, toy_files, tmp_path, no_model_loads, kwargs, match
):
    before = _snapshot(tmp_path)
    out = tmp_path / "run"
    with pytest.raises(AdapterKitError, match=match):
        train("pfeiffer", "toy", str(out), model_name_or_path=tiny_model_dirs["bert"], **toy_files, **kwargs)
    assert _snapshot(tmp_path) == before  # nothing created: no output_dir, no checkpoint, no log folder


def test_multi_task_runs_are_checked_too(tiny_model_dirs, tmp_path, no_model_loads):
    out = tmp_path / "multi"
    common = dict(tasks=["tweets-polarity", "tweets-3way"], model_name_or_path=tiny_model_dirs["bert"])
    for kwargs, match in [
        ({"learning_rate": -1.0}, r"`learning_rate`=-1.0"),
        ({"per_device_train_batch_size": 0}, r"`per_device_train_batch_size`=0"),
        ({"temperature": 0.0}, r"`temperature`=0.0"),
    ]:
        with pytest.raises(AdapterKitError, match=match):
            train("hyperformer", output_dir=str(out), **common, **kwargs)
    # Called directly with built arguments (as the command line does), the pipeline checks them as well.
    arguments = (
        ModelArguments(model_name_or_path=tiny_model_dirs["bert"]),
        DataArguments(tasks=["tweets-polarity", "tweets-3way"]),
        MethodArguments(method="hyperformer"),
        KitTrainingArguments(output_dir=str(out), learning_rate=-0.5),
    )
    with pytest.raises(AdapterKitError, match=r"`learning_rate`=-0.5"):
        run_module.run_training(*arguments)
    assert not out.exists()


def test_cli_refuses_before_anything_happens(tmp_path, capsys, no_model_loads):
    from hf_adapter_kit.commands.cli import main

    out = tmp_path / "cli"
    for flags, match in [
        (["--learning_rate", "-0.001"], "`learning_rate`=-0.001"),
        (["--per_device_train_batch_size", "0"], "`per_device_train_batch_size`=0"),
        (["--gradient_accumulation_steps", "0"], "`gradient_accumulation_steps`=0"),
        (["--seed", "-1"], "`seed`=-1"),
    ]:
        assert main(["train", "--method", "pfeiffer", "--output_dir", str(out), *flags]) == 2
        assert match in capsys.readouterr().err
    assert not out.exists()


def test_values_at_the_edges_are_accepted(tmp_path):
    out = str(tmp_path / "run")
    for kwargs in [
        {},
        {"learning_rate": None},
        {"warmup_ratio": 0.0},
        {"warmup_ratio": 1.0},
        {"max_steps": 1, "num_train_epochs": 0},
        {"max_steps": -1, "num_train_epochs": 0.5},
        {"seed": 0, "data_seed": 2**32 - 1},
        {"weight_decay": 0.0, "max_grad_norm": 0.0},
        {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 5, "save_steps": 10},
        {"eval_strategy": "steps", "save_strategy": "steps", "save_steps": 20},  # eval_steps: logging_steps (10)
        {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 0.25, "save_steps": 0.5},
        {"eval_strategy": "no", "save_strategy": "no"},
        {"eval_strategy": "no", "load_best_model_at_end": False},
        {"metric_for_best_model": "eval_f1_macro"},
        {"logging_strategy": "no", "logging_steps": 0},
        {"lr_scheduler_type": "cosine"},
    ]:
        check_values({"output_dir": out, **kwargs})
    assert not Path(out).exists()
    # The built dataclasses pass as well (transformers turns strategies into enums, fills eval_steps).
    args = KitTrainingArguments(output_dir=out, eval_strategy="steps", save_strategy="steps", save_steps=20)
    run_module.check_arguments(ModelArguments(), DataArguments(), MethodArguments(), args)


def _read_only(folder: Path, monkeypatch) -> None:
    """Make ``folder`` unwritable; as root (which writes anywhere) the kit's permission probe is told so instead."""
    import hf_adapter_kit.folders.save as saving

    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        probe = saving._writable
        monkeypatch.setattr(saving, "_writable", lambda path: path != folder and probe(path))


@pytest.mark.parametrize("where", ["parent is a file", "parent not writable", "folder not writable", "adapter file"])
def test_output_dir_problems_are_refused_before_anything_happens(
    tiny_model_dirs, toy_files, tmp_path, monkeypatch, no_model_loads, where
):
    data = tmp_path / "data"
    data.mkdir()
    if where == "parent is a file":
        (data / "notes.txt").write_text("a file")
        out, match = data / "notes.txt" / "run", r"`output_dir`=.*notes.txt/run.*notes.txt' in it is a file"
    elif where == "parent not writable":
        _read_only(data, monkeypatch)
        out, match = data / "new" / "run", r"`output_dir`=.*new/run.*data' is not writable"
    elif where == "folder not writable":
        out, match = data, r"`output_dir`=.*data' is not valid: a folder you can write to"
        _read_only(data, monkeypatch)
    else:
        (data / "adapter").write_text("not a folder")
        out, match = data, r"`output_dir`=.*adapter' is a file"
    before = _snapshot(tmp_path)
    try:
        with pytest.raises(AdapterKitError, match=match):
            train("pfeiffer", "toy", str(out), model_name_or_path=tiny_model_dirs["bert"], **toy_files)
        assert _snapshot(tmp_path) == before
    finally:
        data.chmod(0o755)


def test_output_dir_checks_cover_saving_too(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(AdapterKitError, match=r"`output_dir`=.*is a file"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(AdapterKitError, match=r"in it is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "deeper" / "adapter")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(AdapterKitError, match=r"a link to .*gone'?, which does not exist"):
        check_output_dir(tmp_path / "dangling")
    with pytest.raises(AdapterKitError, match=r"`output_dir`='' is not valid"):
        check_output_dir("")
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()


def test_the_command_line_refuses_before_transformers_does(tmp_path, capsys):
    """TrainingArguments refuses some values itself with plain ValueErrors; the kit's parser checks them first."""
    from hf_adapter_kit.commands.cli import main

    out = tmp_path / "run"
    assert main(["train", "--config", "pfeiffer", "--warmup_ratio", "2", "--output_dir", str(out)]) == 2
    assert "`warmup_ratio`=2.0" in capsys.readouterr().err and not out.exists()
