"""Reliability: saves killed at random moments, training killed mid-epoch and resumed, unsafe or broken files."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_adapter_kit import AdapterKitError, atomic, from_pretrained, get_config, train
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.folders import KIT_FILE, AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.modeling import load_base_model
from tests.conftest import write_csv


LABELS = ["neg", "pos"]


def _adapter_model(folder, method="pfeiffer", backend="adapters", **options):
    base = load_base_model(folder, LABELS)
    model = get_backend(backend).attach(base, get_config(method, backend=backend, **options), "toy")
    meta = AdapterMeta.for_model(
        base, method=method, backend=backend, adapter_name="toy", base_model=folder, label_names=LABELS
    )
    attach_meta(model, meta)
    return model.eval()


def _set_version(model, version: float) -> None:
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.fill_(version)


def _version_of(model) -> set[float]:
    return {float(p.flatten()[0]) for n, p in model.named_parameters() if "adapters.toy" in n or "classifier" in n}


@pytest.mark.parametrize(("fallback", "kills"), [(False, 20), (True, 10)], ids=["exchange", "two-renames"])
def test_killed_saves_leave_a_whole_adapter(tiny_model_dirs, tmp_path, monkeypatch, fallback, kills):
    """A saver child is SIGKILLed at random moments; each time the folder loads, all of one version."""
    if fallback:
        monkeypatch.setattr(atomic, "_renameat2", None)
    model = _adapter_model(tiny_model_dirs["bert"])
    target = tmp_path / "adapter"
    _set_version(model, 0.0)
    save_adapter(model, target)
    rng = random.Random(20261122)
    previous, progressed = 0.0, 0
    for kill in range(kills):
        base = float((kill + 1) * 1000)
        pid = os.fork()
        if pid == 0:  # the child saves new versions as fast as it can until it is killed
            try:
                step = 0
                while True:
                    step += 1
                    _set_version(model, base + step)
                    save_adapter(model, target)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        versions = _version_of(from_pretrained(target))
        assert len(versions) == 1, f"kill {kill}: files of different saves mixed: {versions}"
        version = versions.pop()
        assert version == previous or base < version < base + 1000, (kill, version, previous)
        progressed += version != previous
        previous = version
    assert progressed >= kills * 0.8  # the kills landed while saves were going on, not before the first one
    save_adapter(model, target)  # the next save clears what the killed ones left beside the folder
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


RESUME_ARGS = dict(
    num_train_epochs=3,
    per_device_train_batch_size=16,
    save_strategy="steps",
    save_steps=5,  # 4 steps per epoch: checkpoint-5 falls in the middle of the second epoch
    eval_strategy="no",
    load_best_model_at_end=False,
    save_total_limit=None,
    disable_tqdm=True,
    max_length=16,
    seed=7,
)


def test_killed_training_resumes_to_the_same_result(tiny_model_dirs, tmp_path):
    files = {
        "train_file": str(write_csv(tmp_path / "train.csv", 64)),
        "test_file": str(write_csv(tmp_path / "test.csv", 16, seed=2)),
        "validation_file": str(write_csv(tmp_path / "val.csv", 16, seed=1)),
    }
    common = dict(model_name_or_path=tiny_model_dirs["bert"], text_column="review", label_column="stars", **files)
    reference = train("pfeiffer", "toy", str(tmp_path / "reference"), **common, **RESUME_ARGS)

    killed_dir = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from hf_adapter_kit import train
        from hf_adapter_kit.training.trainer import KitTrainer
        step = KitTrainer.training_step
        def slow_step(self, *args, **kwargs):
            time.sleep(0.3)  # slow enough for the parent to kill it right after checkpoint-5
            return step(self, *args, **kwargs)
        KitTrainer.training_step = slow_step
        train("pfeiffer", "toy", {str(killed_dir)!r}, **json.loads(sys.argv[1]))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script, json.dumps({**common, **RESUME_ARGS})])
    state = killed_dir / "checkpoint-5" / "trainer_state.json"
    deadline = time.monotonic() + 180
    while not state.is_file() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert state.is_file(), "the child never wrote checkpoint-5"
    assert not (killed_dir / "adapter").exists() and not (killed_dir / "checkpoint-12").exists(), "killed too late"

    resumed = train("pfeiffer", "toy", str(killed_dir), resume_from_checkpoint="last", **common, **RESUME_ARGS)
    assert resumed.test_metrics == reference.test_metrics
    expected = load_file(str(reference.adapter_dir / "adapter.safetensors"))
    got = load_file(str(resumed.adapter_dir / "adapter.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_incomplete_checkpoint_is_refused(tiny_model_dirs, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    with pytest.raises(AdapterKitError, match=r"incomplete \(no trainer_state.json"):
        train("pfeiffer", "tweets-polarity", str(tmp_path / "run"), resume_from_checkpoint=str(checkpoint))
    with pytest.raises(AdapterKitError, match=r"'last' found no complete checkpoint"):
        train("pfeiffer", "tweets-polarity", str(tmp_path / "run"), resume_from_checkpoint="last")


@pytest.fixture
def saved(tiny_model_dirs, tmp_path):
    model = _adapter_model(tiny_model_dirs["bert"])
    _set_version(model, 0.5)
    return save_adapter(model, tmp_path / "adapter")


def test_pickled_weights_need_an_explicit_opt_in(saved):
    for name, pickled in (("adapter", "pytorch_adapter"), ("model_head", "pytorch_model_head")):
        torch.save(load_file(str(saved / f"{name}.safetensors")), saved / f"{pickled}.bin")
        (saved / f"{name}.safetensors").unlink()
    with pytest.raises(AdapterKitError, match=r"can execute code.*allow_pickle=True"):
        from_pretrained(saved)
    assert _version_of(from_pretrained(saved, allow_pickle=True)) == {0.5}


def test_pickle_opt_in_still_refuses_code(saved):
    marker = saved.parent / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x": Payload()}, saved / "pytorch_adapter.bin")
    (saved / "adapter.safetensors").unlink()
    with pytest.raises(AdapterKitError, match="Unable to load weights"):
        from_pretrained(saved, allow_pickle=True)
    assert not marker.exists(), "the pickle's code ran"


def test_truncated_safetensors_is_refused(saved):
    path = saved / "adapter.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AdapterKitError, match=r"adapter.safetensors is not a valid safetensors file"):
        from_pretrained(saved)


def test_safetensors_with_wrong_shapes_is_refused(saved):
    path = saved / "adapter.safetensors"
    tensors = load_file(str(path))
    save_file({k: torch.zeros(*v.shape[:-1], v.shape[-1] + 1) for k, v in tensors.items()}, str(path))
    with pytest.raises(AdapterKitError, match=r"does not fit the base model"):
        from_pretrained(saved)


def test_unparsable_and_incomplete_kit_file(saved):
    (saved / KIT_FILE).write_text("{not json")
    with pytest.raises(AdapterKitError, match=r"is not valid JSON"):
        from_pretrained(saved)
    (saved / KIT_FILE).write_text(json.dumps({"method": "pfeiffer"}))
    with pytest.raises(AdapterKitError, match=r"lacks the keys \['backend', 'adapter_name'"):
        from_pretrained(saved)


def test_newer_kit_keys_load_with_a_warning(saved):
    meta = json.loads((saved / KIT_FILE).read_text())
    (saved / KIT_FILE).write_text(json.dumps({**meta, "routing": "v2", "future_option": 1}))
    with pytest.warns(UserWarning, match=r"\['future_option', 'routing'\].*newer"):
        model = from_pretrained(saved)
    assert _version_of(model) == {0.5}


def test_another_depth_is_refused(saved):
    meta = json.loads((saved / KIT_FILE).read_text())
    (saved / KIT_FILE).write_text(json.dumps({**meta, "num_hidden_layers": 12}))
    with pytest.raises(AdapterKitError, match=r"num_hidden_layers=12.*num_hidden_layers=2"):
        from_pretrained(saved)


@pytest.mark.parametrize(
    ("method", "backend", "options", "match"),
    [
        ("lora", "peft", {"r": 64}, r"`r`=64 is larger than the model's hidden size 32"),
        ("lora", "adapters", {"r": 33}, r"`r`=33 is larger"),
        (
            "pfeiffer",
            "adapters",
            {"reduction_factor": 64},
            r"`reduction_factor`=64 is not valid: at most the hidden size 32",
        ),
    ],
)
def test_rank_or_bottleneck_larger_than_the_model(tiny_model_dirs, method, backend, options, match):
    base = load_base_model(tiny_model_dirs["bert"], LABELS)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(AdapterKitError, match=match):
        get_backend(backend).attach(base, get_config(method, backend=backend, **options), "toy")
    assert base.state_dict().keys() == before.keys()  # nothing was added to the model
    assert not hasattr(base, "adapters_config") and not any(p.requires_grad is False for p in base.parameters())


@pytest.mark.parametrize(("method", "backend"), [("pfeiffer", "adapters"), ("lora", "peft"), ("head", "transformers")])
def test_head_for_another_label_count_is_refused(tiny_model_dirs, tmp_path, method, backend):
    save_adapter(_adapter_model(tiny_model_dirs["bert"], method, backend), tmp_path / "a")
    meta = json.loads((tmp_path / "a" / KIT_FILE).read_text())
    (tmp_path / "a" / KIT_FILE).write_text(json.dumps({**meta, "label_names": ["x", "y", "z"]}))
    with pytest.raises(AdapterKitError, match=r"shape.*\b2\b.*\b3\b|\b3\b.*\b2\b"):
        from_pretrained(tmp_path / "a")


@pytest.mark.parametrize("model_type", ["bert", "custom-bert"])
def test_model_code_runs_only_when_asked(tiny_model_dirs, tmp_path, model_type):
    """A model folder that ships its own modeling code: its code never runs unless trust_remote_code=True."""
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model_dirs["bert"], folder)
    marker = tmp_path / "code-ran"
    (folder / "custom_config.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        f"from transformers import BertConfig\n\nclass CustomConfig(BertConfig):\n    model_type = {model_type!r}\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "custom_config.CustomConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    if model_type == "bert":  # a type transformers knows: its own class is used, the folder's code is ignored
        assert type(load_base_model(str(folder), LABELS)).__name__ == "BertForSequenceClassification"
    else:
        with pytest.raises(AdapterKitError, match=r"trust_remote_code"):
            load_base_model(str(folder), LABELS)
    assert not marker.exists(), "the folder's code ran without trust_remote_code"
    with pytest.raises(Exception):  # noqa: B017 - only whether the code ran matters here
        load_base_model(str(folder), LABELS, trust_remote_code=True)  # no custom model class: fails after
    assert marker.exists(), "with trust_remote_code=True the code is the caller's choice and runs"


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_saved_folders_get_the_modes_makedirs_and_open_give(tiny_model_dirs, tmp_path, umask):
    """Folders 0755 and files 0644 under umask 022 (0750 / 0640 under 027), like os.makedirs and open; not
    mkdtemp's 0700 nor safetensors' 0600. The same after a save that replaces the folder, and in checkpoints."""
    import stat

    def modes(folder):
        return {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")]}

    previous = os.umask(umask)
    try:
        os.makedirs(tmp_path / "reference")
        (tmp_path / "reference" / "file").write_text("x")
        dir_mode, file_mode = (stat.S_IMODE((tmp_path / p).stat().st_mode) for p in ("reference", "reference/file"))
        assert (dir_mode, file_mode) == (0o777 & ~umask, 0o666 & ~umask)
        for method, backend in [("pfeiffer", "adapters"), ("lora", "peft"), ("head", "transformers")]:
            model = _adapter_model(tiny_model_dirs["bert"], method, backend)
            folder = tmp_path / f"{method}-{backend}"
            for _ in range(2):  # a new folder, then one replacing it
                save_adapter(model, folder)
                got = modes(folder)
                assert got.pop(folder.name) == dir_mode, method
                assert got and set(got.values()) == {file_mode}, (method, {k: oct(v) for k, v in got.items()})
            checkpoint = tmp_path / "run" / f"checkpoint-{method}"
            os.makedirs(checkpoint)  # as the Trainer does
            save_adapter(model, checkpoint, merge=True)
            assert set(modes(checkpoint).values()) - {dir_mode} == {file_mode}
    finally:
        os.umask(previous)
