"""Bad input a new user meets, each refused by name before anything is loaded or written (beside the cases of
tests/test_validation.py, test_data.py and test_recipes.py)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModel, AutoModelForSequenceClassification

from hf_adapter_kit import AdapterKitError, from_pretrained, get_config, train
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.commands.cli import main
from hf_adapter_kit.folders import KIT_FILE, AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.multitask import MultiTaskModel, TaskHead, attach_encoder
from hf_adapter_kit.training.checkpoints import TrainingInterrupted
from hf_adapter_kit.training.validate import check_values
from tests.test_reliability import _adapter_model


def test_a_folder_naming_an_unknown_method_is_refused(tiny_model_dirs, tmp_path):
    folder = save_adapter(_adapter_model(tiny_model_dirs["bert"]), tmp_path / "a")
    meta = json.loads((folder / KIT_FILE).read_text())
    (folder / KIT_FILE).write_text(json.dumps({**meta, "method": "compacter"}))
    with pytest.raises(AdapterKitError, match=r"`method`='compacter' is not a method hf_adapter_kit .* knows \(full,"):
        from_pretrained(folder)


@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_adding_a_task_to_a_model_whose_tasks_are_fixed_names_the_method(tiny_model_dirs, backend):
    encoder = AutoModel.from_pretrained(tiny_model_dirs["bert"])
    config = get_config("parallel", backend=backend, tasks=["a", "b"], reduction_factor=4)
    model = MultiTaskModel(attach_encoder(encoder, config, backend, "mt"), {"a": TaskHead("sequence", 2),
                                                                          "b": TaskHead("sequence", 2)})  # fmt: skip
    meta = AdapterMeta.for_model(encoder, method="parallel", backend=backend, adapter_name="mt",
                                 base_model=tiny_model_dirs["bert"], label_names=[],
                                 heads=[{"name": t, "kind": "sequence", "label_names": ["x", "y"]} for t in "ab"])  # fmt: skip
    attach_meta(model, meta)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(AdapterKitError, match=r"`add_task`='c' is not valid: .*\(hyperformer\); .*'parallel' adapter"):
        model.add_task("c", TaskHead("sequence", 2))
    assert model.tasks == ["a", "b"] and {n: p.requires_grad for n, p in model.named_parameters()} == before


# -- training arguments refused before anything is loaded or written ---------------------------------------------
def _nothing_may_load(monkeypatch) -> None:
    """A run that gets past its checks would reach these first: loading here fails the test."""
    from hf_adapter_kit.training import run

    def loaded(*args, **kwargs):
        raise AssertionError("the run went on to load the model or data before refusing the bad input")

    monkeypatch.setattr(run, "load_config", loaded)
    monkeypatch.setattr(run, "choose_strategy", loaded)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"max_steps": 0}, r"`max_steps`=0 is not valid: an integer >= 1, or -1 to train for num_train_epochs\."),
        (
            {"adapter_name": "sentiment.v2"},
            r"`adapter_name`='sentiment.v2' is not valid: a name without '\.' .*ModuleDict.*e\.g\. 'sentiment_v2'\.",
        ),
        ({"adapter_name": "forward"}, r"`adapter_name`='forward' is not valid: .*e\.g\. 'forward_adapter'\."),
        ({"adapter_name": "lora.v2", "method": "lora", "backend": "adapters"}, r"`adapter_name`='lora.v2'"),
        ({"adapter_name": 3}, r"`adapter_name`=3 is not valid: a name \(a string\)"),
    ],
)
def test_bad_training_input_is_refused_by_name_before_anything_happens(tmp_path, monkeypatch, changes, match):
    _nothing_may_load(monkeypatch)
    out = tmp_path / "run"
    kwargs = {"method": "pfeiffer", **changes}
    with pytest.raises(AdapterKitError, match=match):
        train(output_dir=str(out), **kwargs)
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--max_steps", "0"], r"`max_steps`=0 is not valid"),
        (["--adapter_name", "sentiment.v2"], r"`adapter_name`='sentiment.v2' is not valid"),
    ],
)
def test_the_command_line_refuses_them_in_one_line(tmp_path, monkeypatch, capsys, argv, match):
    _nothing_may_load(monkeypatch)
    out = tmp_path / "run"
    assert main(["train", "--method", "pfeiffer", "--output_dir", str(out), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-adapter-kit: error: ") and re.search(match, lines[0]), lines
    assert not out.exists()


def test_a_dotted_name_is_fine_where_the_library_does_not_use_it(tmp_path):
    """PEFT knows every adapter as ``default``: the kit's name is only recorded, dots and all."""
    check_values({"method": "lora", "backend": "peft", "adapter_name": "sentiment.v2", "output_dir": str(tmp_path)})


NAMES = st.text(max_size=12) | st.sampled_from(sorted(dir(torch.nn.ModuleDict()))) | st.from_regex(r"\A\w+\.\w+\Z")


@pytest.mark.parametrize("method", ["pfeiffer", "lora"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_an_adapters_name_is_refused_by_name_exactly_when_the_library_would_crash(
    tiny_model_dirs, tmp_path, method, name
):
    """Any name: the kit refuses it by name before anything loads, or the adapters library takes it (attached, it
    runs a forward pass); every name the kit refuses, the library would have refused with a raw KeyError."""
    try:
        check_values({"method": method, "backend": "adapters", "adapter_name": name, "output_dir": str(tmp_path)})
        refused = None
    except AdapterKitError as err:
        refused = err
    if name == "":
        assert refused is None  # unset: the run names the adapter after its task
        return
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dirs["bert"], num_labels=2)
    config = get_config(method, backend="adapters")
    if refused is not None:
        assert str(refused).startswith(f"`adapter_name`={name!r} is not valid"), refused
        with pytest.raises(KeyError):
            get_backend("adapters").attach(base, config, name)
        return
    model = get_backend("adapters").attach(base, config, name)
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[101, 2023, 102]])).logits.shape == (1, 2)


# -- Ctrl-C: one line naming the checkpoint to resume from, not a traceback ----------------------------------------
RUN = dict(max_steps=12, save_strategy="steps", save_steps=5, eval_strategy="no", load_best_model_at_end=False,
           max_length=16, per_device_train_batch_size=16, disable_tqdm=True)  # fmt: skip


def _ctrl_c_at(monkeypatch, step: int, inside_checkpoint: bool = False) -> None:
    """Ctrl-C as Python delivers it (a KeyboardInterrupt) at ``step``: in the training step, or while that step's
    checkpoint is written (inside the RNG state, after the adapter and optimizer)."""
    from transformers import Trainer

    from hf_adapter_kit.training.trainer import KitTrainer

    if inside_checkpoint:
        real = Trainer._save_rng_state

        def save_rng_state(self, output_dir):
            if self.state.global_step == step:
                raise KeyboardInterrupt
            return real(self, output_dir)

        monkeypatch.setattr(Trainer, "_save_rng_state", save_rng_state)
        return
    real_step = KitTrainer.training_step

    def training_step(self, *args, **kwargs):
        if self.state.global_step == step:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(KitTrainer, "training_step", training_step)


@pytest.mark.parametrize(
    ("step", "inside_checkpoint", "match"),
    [
        (
            7,
            False,
            r"at step 7 of 12; the last checkpoint is .*checkpoint-5: resume with resume_from_checkpoint='last'",
        ),
        (10, True, r"at step 10 of 12; the last checkpoint is .*checkpoint-5: resume with"),
        (3, False, r"at step 3 of 12, before its first checkpoint: nothing to resume from; run it again"),
    ],
    ids=["mid-epoch", "inside-a-checkpoint-write", "before-any-checkpoint"],
)
def test_ctrl_c_during_training_says_where_to_resume_from(
    tiny_model_dirs, toy_files, tmp_path, monkeypatch, step, inside_checkpoint, match
):
    _ctrl_c_at(monkeypatch, step, inside_checkpoint)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=match) as caught:
        train("pfeiffer", "toy", str(out), model_name_or_path=tiny_model_dirs["bert"], **toy_files, **RUN)
    assert isinstance(caught.value, KeyboardInterrupt)  # what stops a notebook or a script on Ctrl-C still does
    assert caught.value.__suppress_context__  # the one line, not a chain of library frames
    assert sorted(p.name for p in out.iterdir()) == (["checkpoint-5"] if step > 5 else [])  # nothing half-written


def test_ctrl_c_on_the_command_line_is_one_line(tiny_model_dirs, toy_files, tmp_path, monkeypatch, capsys):
    _ctrl_c_at(monkeypatch, 7)
    out = tmp_path / "run"
    argv = ["train", "--method", "pfeiffer", "--task", "toy", "--output_dir", str(out)]
    argv += ["--model_name_or_path", tiny_model_dirs["bert"]]
    for key, value in {**toy_files, **RUN}.items():
        argv += [f"--{key}", str(value)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"hf-adapter-kit: training stopped by Ctrl-C at step 7 of 12; the last checkpoint is {out / 'checkpoint-5'}: "
        "resume with resume_from_checkpoint='last' (command line: --resume_from_checkpoint last) and the same "
        "arguments."
    )
