"""Reliability: every writer of the kit killed at points the test picks, training killed inside a checkpoint write
and resumed to the uninterrupted result, Ctrl-C, unsafe or broken files.

Kills land where the test decides, never where the clock happens to be: the writer runs in a child process that
stops at the chosen point (a file it writes is cut to half its length when written, what a kill in the middle of
writing it leaves; or a rename is about to happen), tells the parent through a file and waits there, and the parent
kills it. A training child also copies its run folder at each point of a checkpoint write that it passes: nothing
runs in the child between the cut and the copy, so the copy is what a kill there leaves on disk; then it is killed
for real inside a later checkpoint.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors.torch import load_file, save_file

from hf_adapter_kit import AdapterKitError, atomic, from_pretrained, get_config, push_to_hub, train
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.commands import compare as compare_module
from hf_adapter_kit.folders import KIT_FILE, AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.folders import save as save_module
from hf_adapter_kit.modeling import load_base_model
from hf_adapter_kit.multitask import MultiTaskModel, TaskHead, attach_encoder
from hf_adapter_kit.training.checkpoints import (
    MANIFEST,
    checkpoint_problem,
    checkpoints_newest_first,
    resolve_checkpoint,
)
from tests.conftest import write_csv


REPO = Path(__file__).resolve().parent.parent
LABELS = ["neg", "pos"]
CHILD_TIMEOUT = 300  # seconds for a child to reach its kill point, on a machine busy with other jobs


def _adapter_model(folder, method="pfeiffer", backend="adapters", **options):
    base = load_base_model(folder, LABELS)
    model = get_backend(backend).attach(base, get_config(method, backend=backend, **options), "toy")
    meta = AdapterMeta.for_model(
        base, method=method, backend=backend, adapter_name="toy", base_model=folder, label_names=LABELS
    )
    attach_meta(model, meta)
    return model.eval()


def _multitask_model(folder, backend="adapters"):
    encoder = load_base_model(folder, LABELS).base_model
    config = get_config("parallel", backend=backend, tasks=["a", "b"], reduction_factor=4)
    heads = {task: TaskHead("sequence", 2) for task in ("a", "b")}
    model = MultiTaskModel(attach_encoder(encoder, config, backend, "mt"), heads)
    meta = AdapterMeta.for_model(encoder, method="parallel", backend=backend, adapter_name="mt", base_model=folder,
                                 label_names=[], heads=[{"name": t, "kind": "sequence", "label_names": LABELS}
                                                        for t in ("a", "b")])  # fmt: skip
    attach_meta(model, meta)
    return model.eval()


def _set_version(model, version: float) -> None:
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.fill_(version)


def _version_of(model) -> set[float]:
    return {
        float(p.detach().flatten()[0]) for n, p in model.named_parameters() if "adapters.toy" in n or "classifier" in n
    }


def _saved_versions(folder: Path) -> set[float]:
    """The versions the weight files of a saved folder hold (each save fills every trainable tensor with one)."""
    return {float(t.flatten()[0]) for f in sorted(folder.glob("*.safetensors")) for t in load_file(str(f)).values()}


# -- the kill harness ---------------------------------------------------------------------------------------------
_REAL_OPEN, _REAL_REPLACE = builtins.open, os.replace  # what a child's kill points wrap


def stop_here(signal_file: Path, label: str = "") -> None:
    """In a child: tell the parent that the kill point is reached, and wait there to be killed. The signal file
    appears whole, by a rename: the parent reads it as soon as it exists."""
    ready = signal_file.with_name(f".{signal_file.name}.{os.getpid()}")
    with _REAL_OPEN(ready, "w") as handle:
        handle.write(label or str(os.getpid()))
    _REAL_REPLACE(ready, signal_file)
    while True:
        time.sleep(60)


class _CutOnClose:
    """A file being written; once closed, the file is cut and ``then`` called (see :func:`install_cuts`)."""

    def __init__(self, handle, path: Path, then):
        self._handle, self._path, self._then = handle, path, then

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __iter__(self):
        return iter(self._handle)

    def close(self):
        if not self._handle.closed:
            self._handle.close()
            _cut(self._path, self._then)


def _cut(path: Path, then) -> None:
    """Cut ``path`` to half its length, call ``then(path)`` (a snapshot, or a stop), and put the file back whole."""
    with _REAL_OPEN(path, "rb") as handle:
        data = handle.read()
    os.truncate(path, len(data) // 2)
    then(path)
    with _REAL_OPEN(path, "wb") as handle:
        handle.write(data)


def install_cuts(match, then) -> None:
    """In a child process: every file that ``match(path)`` accepts is cut to half its length once written, and
    ``then(path)`` is called, whoever writes it: Python's ``open`` (JSON, cards, the trainer state), ``torch.save``
    (optimizer, scheduler, RNG states) or safetensors (every weights file, whichever library saves it)."""

    def open_(file, mode="r", *args, **kwargs):
        handle = _REAL_OPEN(file, mode, *args, **kwargs)
        if isinstance(file, str | os.PathLike) and set(mode) & set("wax") and match(Path(file)):
            return _CutOnClose(handle, Path(file), then)
        return handle

    builtins.open = io.open = open_
    real_save, real_serialize = torch.save, safetensors.torch.serialize_file

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if isinstance(f, str | os.PathLike) and match(Path(f)):
            _cut(Path(f), then)

    def serialize_file(tensors, filename, *args, **kwargs):
        real_serialize(tensors, filename, *args, **kwargs)
        if match(Path(filename)):
            _cut(Path(filename), then)

    torch.save, safetensors.torch.serialize_file = save, serialize_file


def _wait_for_stop(signal_file: Path, exited) -> str:
    """Wait until the child stops at its kill point (it writes ``signal_file``); the label it wrote there."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not signal_file.is_file():
        code = exited()
        assert code is None, f"the child ended (status {code}) without reaching its kill point"
        assert time.monotonic() < deadline, "the child did not reach its kill point in time"
        time.sleep(0.02)
    return signal_file.read_text()


def kill_forked_at(work, signal_file: Path) -> str:
    """Run ``work()`` (which sets up its kill point and writes) in a forked child; SIGKILL it at its kill point."""
    pid = os.fork()
    if pid == 0:
        try:
            work()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(3)  # only when the kill point was never reached

    def exited():
        done, status = os.waitpid(pid, os.WNOHANG)
        return None if done == 0 else status

    try:
        label = _wait_for_stop(signal_file, exited)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    return label


# -- adapter folders, multi-task folders, cards: killed inside each file and around each rename -------------------
def _inside(name: str):
    """Inside the file ``name`` of the folder being saved (it is written in the staging folder)."""

    def install(target: Path, signal_file: Path) -> None:
        def match(path: Path) -> bool:
            return path.name == name and path.parent.name.startswith(f".{target.name}.saving-")

        install_cuts(match, lambda path: stop_here(signal_file))

    return install


def _before_the_swap(target: Path, signal_file: Path) -> None:
    """The staging folder whole, the folder not yet replaced."""
    save_module.replace_dir = lambda new, old: stop_here(signal_file)


def _after_the_exchange(target: Path, signal_file: Path) -> None:
    """Swapped in one step: the new folder in place, the previous one (now in the staging folder) not yet removed."""
    real = atomic._exchange

    def exchange(a, b):
        real(a, b)
        stop_here(signal_file)

    atomic._exchange = exchange


def _between_the_renames(target: Path, signal_file: Path) -> None:
    """Where renameat2 is missing: the previous folder renamed aside, the new one not yet renamed in."""
    atomic._renameat2 = None
    real = os.replace

    def replace(src, dst):
        if Path(dst) == target and Path(src).name.startswith(f".{target.name}.saving-"):
            stop_here(signal_file)
        return real(src, dst)

    os.replace = replace


# kill point -> (where it stops, whether the folder then holds the new version)
FOLDER_KILLS = {
    "inside-weights": (_inside("adapter.safetensors"), False),
    "inside-config": (_inside("adapter_config.json"), False),
    "inside-kit-file": (_inside(KIT_FILE), False),
    "inside-card": (_inside("README.md"), False),
    "before-the-swap": (_before_the_swap, False),
    "after-the-exchange": (_after_the_exchange, True),
    "between-the-renames": (_between_the_renames, False),
}
MULTITASK_KILLS = {
    "inside-task-heads": (_inside("heads.safetensors"), False),
    "inside-weights": (_inside("adapter.safetensors"), False),
    "after-the-exchange": (_after_the_exchange, True),
}


def _kill_a_save_and_check(model, target: Path, tmp_path: Path, install, new: bool, load) -> None:
    _set_version(model, 1.0)
    save_adapter(model, target)
    _set_version(model, 2.0)
    signal_file = tmp_path / "stopped"

    def work():
        install(target, signal_file)
        save_adapter(model, target)

    kill_forked_at(work, signal_file)
    expected = {2.0 if new else 1.0}
    loaded = load(target)  # loads whole (a cut file would be refused)
    assert _saved_versions(target) == expected and loaded is not None
    assert sorted(p.name for p in target.parent.iterdir()) != [target.name], "the kill left nothing to clean up"
    save_adapter(model, target)  # the next save removes what the killed one left beside the folder
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert _saved_versions(target) == {2.0}


@pytest.mark.parametrize("point", FOLDER_KILLS)
def test_a_killed_adapter_save_leaves_the_previous_adapter_or_the_new_one(tiny_model_dirs, tmp_path, point):
    install, new = FOLDER_KILLS[point]
    model = _adapter_model(tiny_model_dirs["bert"])
    target = tmp_path / "folder" / "adapter"

    def load(folder):
        loaded = from_pretrained(folder)
        assert _version_of(loaded) == _saved_versions(folder)
        return loaded

    _kill_a_save_and_check(model, target, tmp_path, install, new, load)


@pytest.mark.parametrize("point", MULTITASK_KILLS)
def test_a_killed_multitask_save_leaves_the_previous_folder_or_the_new_one(tiny_model_dirs, tmp_path, point):
    install, new = MULTITASK_KILLS[point]
    model = _multitask_model(tiny_model_dirs["bert"])
    target = tmp_path / "folder" / "multitask"

    def load(folder):
        loaded = from_pretrained(folder)
        assert isinstance(loaded, MultiTaskModel) and loaded.tasks == ["a", "b"]
        return loaded

    _kill_a_save_and_check(model, target, tmp_path, install, new, load)


# -- training: a kill inside every file of a checkpoint write, then resume_from_checkpoint='last' ------------------
TRAIN_CHILD = """
import json, re, shutil, sys
from pathlib import Path
from tests.test_reliability import install_cuts, stop_here
import hf_adapter_kit.training.checkpoints as checkpoints
from hf_adapter_kit import train

job = json.loads(sys.argv[1])
out, snapshots, signal_file = (Path(job[key]).absolute() for key in ("output_dir", "snapshots", "signal"))
taken = []

def step_of(path):  # the checkpoint a file of the run folder belongs to, wherever it is written first
    match = re.match(r"^\\.?checkpoint-(\\d+)", path.absolute().relative_to(out).parts[0])
    return int(match.group(1)) if match else None

def snapshot(label):  # what a kill at this instant leaves on disk
    taken.append(label)
    shutil.copytree(out, snapshots / f"{len(taken):02d}-{label}", symlinks=True)

def at_cut(path):
    step = step_of(path)
    if step == job["kill_step"] and path.name == job["kill_in"]:
        stop_here(signal_file, f"checkpoint-{step}/{path.name}")  # the real kill
    if step == job["snapshot_step"]:
        snapshot(path.name)

install_cuts(lambda path: out in path.absolute().parents and step_of(path) is not None, at_cut)
publish = checkpoints.replace_dir

def replace_dir(new, final):
    watched = final.name == f"checkpoint-{job['snapshot_step']}"
    if watched:
        snapshot("before-the-rename")
    publish(new, final)
    if watched:
        snapshot("after-the-rename")

checkpoints.replace_dir = replace_dir
train(output_dir=str(out), **job["train"])
"""
CHECKPOINTS = dict(
    max_steps=12,
    save_strategy="steps",
    save_steps=5,  # checkpoint-5, checkpoint-10 and checkpoint-12 (the last step)
    save_total_limit=3,
    eval_strategy="no",
    load_best_model_at_end=False,  # the adapter of the last step: what a resume must reproduce
    disable_tqdm=True,
    seed=7,
)


def _run_kwargs(shape: str, tiny_model_dirs, tiny_llm_dir, files) -> dict:
    if shape == "one-task":
        return dict(method="pfeiffer", task="toy", model_name_or_path=tiny_model_dirs["bert"], max_length=16,
                    per_device_train_batch_size=16, **files, **CHECKPOINTS)  # fmt: skip
    if shape == "multi-task":
        return dict(method="parallel", task="unused", tasks=["tweets-polarity", "tweets-3way"],
                    model_name_or_path=tiny_model_dirs["bert"], method_options=json.dumps({"reduction_factor": 4}),
                    max_train_samples=64, max_eval_samples=16, max_length=16, per_device_train_batch_size=16,
                    **CHECKPOINTS)  # fmt: skip
    return dict(method="lora", task="toy", task_type="causal-lm", model_name_or_path=tiny_llm_dir, max_length=64,
                per_device_train_batch_size=8, max_eval_samples=8, learning_rate=1e-2, **files,
                **CHECKPOINTS)  # fmt: skip


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "train_file": str(write_csv(folder / "train.csv", 64)),
        "validation_file": str(write_csv(folder / "val.csv", 16, seed=1)),
        "test_file": str(write_csv(folder / "test.csv", 16, seed=2)),
        "text_column": "review",
        "label_column": "stars",
    }


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The uninterrupted run of each shape, trained once for the module (``reference(shape, kwargs)``)."""
    runs = {}

    def reference(shape: str, kwargs: dict):
        if shape not in runs:
            runs[shape] = train(output_dir=str(tmp_path_factory.mktemp(f"reference-{shape}")), **kwargs)
        return runs[shape]

    return reference


def _resume_and_compare(run_dir: Path, kwargs: dict, reference) -> None:
    """``resume_from_checkpoint='last'`` in ``run_dir`` ends with the reference's adapter, and nothing was skipped
    (a checkpoint a kill cut short is never in sight) nor left behind."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = train(output_dir=str(run_dir), resume_from_checkpoint="last", **kwargs)
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert not skipped, skipped
    assert resumed.test_metrics == reference.test_metrics
    expected_files = sorted(p.name for p in reference.adapter_dir.glob("*.safetensors"))
    assert sorted(p.name for p in resumed.adapter_dir.glob("*.safetensors")) == expected_files
    for name in expected_files:
        expected, got = load_file(str(reference.adapter_dir / name)), load_file(str(resumed.adapter_dir / name))
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)
    left = [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    assert not left, f"staging left after a successful resume: {left}"


@pytest.mark.parametrize("shape", ["one-task", "multi-task", "sft"])
def test_a_kill_inside_any_checkpoint_file_resumes_to_the_same_result(
    shape, tiny_model_dirs, tiny_llm_dir, data_files, references, tmp_path
):
    kwargs = _run_kwargs(shape, tiny_model_dirs, tiny_llm_dir, data_files)
    reference = references(shape, kwargs)
    out, snapshots, signal_file = tmp_path / "killed", tmp_path / "snapshots", tmp_path / "stopped"
    snapshots.mkdir()
    job = {"train": kwargs, "output_dir": str(out), "snapshots": str(snapshots), "signal": str(signal_file),
           "snapshot_step": 10, "kill_step": 12, "kill_in": "trainer_state.json"}  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, json.dumps(job)], cwd=REPO, env=env)
    try:
        label = _wait_for_stop(signal_file, child.poll)
    finally:
        child.kill()
        child.wait()
    assert label == "checkpoint-12/trainer_state.json"

    taken = sorted(snapshots.iterdir())
    cut = {p.name.split("-", 1)[1] for p in taken} - {"before-the-rename", "after-the-rename"}
    written = {p.name for p in (Path(reference.adapter_dir).parent / "checkpoint-10").iterdir()}
    assert cut == written, "a kill point inside every file of the checkpoint"
    for snap in taken:
        visible = {c.name: checkpoint_problem(c) for c in checkpoints_newest_first(snap)}
        assert all(problem is None for problem in visible.values()), (snap.name, visible)  # never a cut checkpoint
        expected = ["checkpoint-10", "checkpoint-5"] if snap.name.endswith("after-the-rename") else ["checkpoint-5"]
        assert list(visible) == expected, snap.name
        _resume_and_compare(snap, kwargs, reference)
    assert [c.name for c in checkpoints_newest_first(out)] == ["checkpoint-10", "checkpoint-5"]
    _resume_and_compare(out, kwargs, reference)  # the real kill, inside checkpoint-12's trainer_state.json


def _checkpoints_of(reference, tmp_path: Path) -> Path:
    """A run folder holding the reference's checkpoint-5 and checkpoint-10, as a run killed at step 12 leaves it."""
    run = tmp_path / "run"
    for name in ("checkpoint-5", "checkpoint-10"):
        shutil.copytree(Path(reference.adapter_dir).parent / name, run / name)
    return run


def _cut_file(name: str):
    def damage(folder: Path) -> str:
        path = folder / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return name

    return damage


def _empty_state_without_manifest(folder: Path) -> str:
    """The race of the issue, in a checkpoint with no manifest (plain transformers, or an older kit)."""
    (folder / MANIFEST).unlink()
    (folder / "trainer_state.json").write_text("")
    return "trainer_state.json"


def _deleted(name: str):  # transformers deletes old checkpoints file by file: a kill then leaves some
    def damage(folder: Path) -> str:
        (folder / name).unlink()
        return name

    return damage


def _index_naming_a_missing_tensor(folder: Path) -> str:
    (folder / MANIFEST).unlink()
    index = {"weight_map": {"not.in.the.shard": "adapter.safetensors"}}
    (folder / "adapter.safetensors.index.json").write_text(json.dumps(index))
    return "adapter.safetensors.index.json"


DAMAGE = {
    "empty-trainer-state": _cut_file("trainer_state.json"),
    "empty-trainer-state-no-manifest": _empty_state_without_manifest,
    "cut-optimizer": _cut_file("optimizer.pt"),
    "cut-scheduler": _cut_file("scheduler.pt"),
    "cut-rng-state": _cut_file("rng_state.pth"),
    "cut-weights": _cut_file("adapter.safetensors"),
    "deleted-scheduler": _deleted("scheduler.pt"),
    "index-naming-a-missing-tensor": _index_naming_a_missing_tensor,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_last_skips_a_checkpoint_that_is_not_whole_and_an_explicit_one_is_refused(
    damage, tiny_model_dirs, tiny_llm_dir, data_files, references, tmp_path
):
    reference = references("one-task", _run_kwargs("one-task", tiny_model_dirs, tiny_llm_dir, data_files))
    run = _checkpoints_of(reference, tmp_path)
    bad = DAMAGE[damage](run / "checkpoint-10")
    with pytest.warns(UserWarning, match=rf"'last' skipped .*checkpoint-10, which is not whole: {re.escape(bad)}"):
        assert resolve_checkpoint("last", run) == str(run / "checkpoint-5")
    with pytest.raises(AdapterKitError, match=rf"checkpoint-10' is incomplete: {re.escape(bad)}"):
        resolve_checkpoint(str(run / "checkpoint-10"), run)
    assert resolve_checkpoint(str(run / "checkpoint-5"), run) == str(run / "checkpoint-5")


def test_a_checkpoint_of_plain_transformers_is_judged_by_its_files(
    tiny_model_dirs, tiny_llm_dir, data_files, references, tmp_path
):
    """No manifest, and a pickle the Trainer never reads back on resume (transformers' training_args.bin, which
    does not load with weights_only): still whole."""
    reference = references("one-task", _run_kwargs("one-task", tiny_model_dirs, tiny_llm_dir, data_files))
    run = _checkpoints_of(reference, tmp_path)
    (run / "checkpoint-10" / MANIFEST).unlink()
    torch.save({"output_dir": Path("anywhere")}, run / "checkpoint-10" / "training_args.bin")
    assert checkpoint_problem(run / "checkpoint-10") is None
    assert resolve_checkpoint("last", run) == str(run / "checkpoint-10")


def test_the_issues_empty_trainer_state_resumes_from_the_checkpoint_before(
    tiny_model_dirs, tiny_llm_dir, data_files, references, tmp_path
):
    """The newest checkpoint's trainer_state.json emptied (what the busy machine showed), then 'last': the run warns,
    resumes from checkpoint-5 and reaches the uninterrupted result (it once failed with a JSONDecodeError)."""
    kwargs = _run_kwargs("one-task", tiny_model_dirs, tiny_llm_dir, data_files)
    reference = references("one-task", kwargs)
    run = _checkpoints_of(reference, tmp_path)
    _empty_state_without_manifest(run / "checkpoint-10")
    with pytest.warns(UserWarning, match=r"skipped .*checkpoint-10, which is not whole: trainer_state.json is not"):
        resumed = train(output_dir=str(run), resume_from_checkpoint="last", **kwargs)
    assert resumed.test_metrics == reference.test_metrics
    expected = load_file(str(reference.adapter_dir / "adapter.safetensors"))
    got = load_file(str(resumed.adapter_dir / "adapter.safetensors"))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)


def test_incomplete_checkpoint_is_refused(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    with pytest.raises(AdapterKitError, match=r"incomplete: it has no trainer_state.json"):
        train("pfeiffer", "tweets-polarity", str(tmp_path / "run"), resume_from_checkpoint=str(checkpoint))
    with pytest.raises(AdapterKitError, match=r"'last' found no complete checkpoint .*checkpoint-3: it has no"):
        train("pfeiffer", "tweets-polarity", str(tmp_path / "run"), resume_from_checkpoint="last")
    (tmp_path / "run" / "checkpoint-3").rmdir()
    (tmp_path / "run" / ".checkpoint-4.saving-trainer" / "checkpoint-4").mkdir(parents=True)  # never a checkpoint
    with pytest.raises(AdapterKitError, match=r"'last' found no complete checkpoint .*holds no checkpoint-N folder"):
        train("pfeiffer", "tweets-polarity", str(tmp_path / "run"), resume_from_checkpoint="last")


def test_every_checkpoint_names_its_real_folder_as_the_best(tiny_model_dirs, data_files, tmp_path):
    """The Trainer writes a checkpoint in its staging folder, where it finds it the best; the state it saves and
    keeps names the folder the checkpoint becomes."""
    result = train("pfeiffer", "toy", str(tmp_path / "run"), model_name_or_path=tiny_model_dirs["bert"],
                   max_length=16, per_device_train_batch_size=16, num_train_epochs=2, disable_tqdm=True,
                   **data_files)  # fmt: skip
    run = tmp_path / "run"
    bests = {
        json.loads((c / "trainer_state.json").read_text())["best_model_checkpoint"] for c in run.glob("checkpoint-*")
    }
    assert bests and all(Path(best).parent == run and Path(best).is_dir() for best in bests), bests
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    card = (Path(bests.pop()) / "README.md").read_text()
    assert ".saving-" not in card and str(run / "checkpoint-") in card  # the card names the real folder
    assert result.adapter_dir.is_dir()


# -- Ctrl-C: one line that says where to resume from; the resume is exact -----------------------------------------
CTRL_C_CHILD = """
import signal
import sys
from pathlib import Path

# Python raises KeyboardInterrupt on SIGINT only if SIGINT was not ignored when it started, and a shell ignores it
# for the jobs it starts in the background (`nohup make test &`): the child takes the terminal's disposition back.
signal.signal(signal.SIGINT, signal.default_int_handler)
from tests.test_reliability import stop_here
from hf_adapter_kit.training.trainer import KitTrainer
from hf_adapter_kit.commands.cli import main

step = KitTrainer.training_step

def training_step(self, *args, **kwargs):
    if self.state.global_step == 7:
        stop_here(Path(sys.argv[1]), "step 7")  # Ctrl-C lands here: two steps after checkpoint-5
    return step(self, *args, **kwargs)

KitTrainer.training_step = training_step
sys.exit(main(sys.argv[2:]))
"""


def test_ctrl_c_prints_one_line_naming_the_checkpoint_and_the_resume_is_exact(
    tiny_model_dirs, tiny_llm_dir, data_files, references, tmp_path
):
    kwargs = _run_kwargs("one-task", tiny_model_dirs, tiny_llm_dir, data_files)
    reference = references("one-task", kwargs)
    out, signal_file = tmp_path / "run", tmp_path / "stopped"
    argv = ["train", "--output_dir", str(out)]
    for key, value in kwargs.items():
        argv += [f"--{key}", str(value)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CTRL_C_CHILD, str(signal_file), *argv]
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for_stop(signal_file, child.poll) == "step 7"
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT)
    finally:
        child.kill()
    assert child.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"hf-adapter-kit: training stopped by Ctrl-C at step 7 of 12; the last checkpoint is "
        rf"{re.escape(str(out / 'checkpoint-5'))}: resume with resume_from_checkpoint='last' \(command line: "
        r"--resume_from_checkpoint last\) and the same arguments\.",
        last,
    ), last
    _resume_and_compare(out, kwargs, reference)


# -- Hub pushes: a kill inside the card or while the commit is in flight -------------------------------------------
def _push_in_child(folder: Path, repo: str, token: str, install, signal_file: Path):
    """What a push's child does: its own connections, its kill point, the push."""

    def work():
        from huggingface_hub.utils import _http

        _http.reset_sessions()  # never the parent's open connections
        install(signal_file)
        push_to_hub(folder, repo, token=token)

    return work


def test_a_killed_push_leaves_the_repo_whole_and_the_next_push_cleans_up(hub, tiny_model_dirs, tmp_path, monkeypatch):
    from tests import hub_server

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    model, repo = _adapter_model(tiny_model_dirs["bert"]), "kit-tests/killed-push"
    folders = {}
    for version in (1.0, 2.0):
        _set_version(model, version)
        folders[version] = save_adapter(model, tmp_path / f"v{version:g}")
    push_to_hub(folders[1.0], repo, token=hub.token)
    commits = len(hub.commits(repo))

    def pushed_versions() -> set[float]:
        return _version_of(from_pretrained(repo, token=hub.token))

    # 1. inside the card, written in the push's scratch folder: nothing reached the Hub
    def inside_the_card(signal_file):
        inside = lambda path: path.name == "README.md" and scratch in path.parents  # noqa: E731
        install_cuts(inside, lambda path: stop_here(signal_file))

    kill_forked_at(_push_in_child(folders[2.0], repo, hub.token, inside_the_card, tmp_path / "s1"), tmp_path / "s1")
    assert len(hub.commits(repo)) == commits and pushed_versions() == {1.0}
    assert any(scratch.iterdir()), "the killed push left its scratch folder"

    # 2. while the commit request is in flight: the Hub takes it whole or not at all (one commit)
    import threading

    arrived, release = threading.Event(), threading.Event()
    real_commit = hub_server._Handler._commit

    def held_commit(self, *args, **kwargs):
        arrived.set()
        release.wait(CHILD_TIMEOUT)
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(hub_server._Handler, "_commit", held_commit)
    pid = os.fork()
    if pid == 0:
        try:
            _push_in_child(folders[2.0], repo, hub.token, lambda signal_file: None, tmp_path / "s2")()
        finally:
            os._exit(3)
    try:
        assert arrived.wait(CHILD_TIMEOUT), "the push never sent its commit"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        release.set()
    deadline = time.monotonic() + 30
    while len(hub.commits(repo)) == commits and time.monotonic() < deadline:
        time.sleep(0.05)
    monkeypatch.setattr(hub_server._Handler, "_commit", real_commit)
    assert len(hub.commits(repo)) == commits + 1 and pushed_versions() == {2.0}

    push_to_hub(folders[1.0], repo, token=hub.token)  # the next push removes what the killed ones left
    assert list(scratch.iterdir()) == []
    assert pushed_versions() == {1.0}


# -- compare's results: compare.json, .md and .png each whole, the old or the new ---------------------------------
ROWS = {
    version: [{"method": "pfeiffer", "backend": "adapters", "accuracy": version, "trainable_parameters": 1000}]
    for version in (0.25, 0.75)
}
RESULT_FILES = ("compare.json", "compare.md", "compare.png")


def _canned_compare(out: Path, version: float, monkeypatch=None) -> None:
    """compare() with each method's child replaced by a canned row: the writing of the results alone."""
    if monkeypatch is not None:
        monkeypatch.setattr(compare_module, "_run_child", lambda method, *args: dict(ROWS[version][0]))
    else:
        compare_module._run_child = lambda method, *args: dict(ROWS[version][0])
    compare_module.compare("toy", ["pfeiffer"], str(out))


@pytest.mark.parametrize("inside", RESULT_FILES)
def test_a_killed_compare_leaves_whole_results(inside, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    _canned_compare(out, 0.25, monkeypatch)
    old = {name: (out / name).read_bytes() for name in RESULT_FILES}
    signal_file = tmp_path / "stopped"

    def work():
        install_cuts(lambda path: path.name.startswith(f".{inside}.saving-"), lambda path: stop_here(signal_file))
        _canned_compare(out, 0.75)

    kill_forked_at(work, signal_file)
    written_before = RESULT_FILES[: RESULT_FILES.index(inside)]
    for name in RESULT_FILES:
        if name in written_before:
            assert (out / name).read_bytes() != old[name], name  # the new results, whole
        else:
            assert (out / name).read_bytes() == old[name], name  # the previous results, untouched
    assert json.loads((out / "compare.json").read_text())["methods"][0]["accuracy"] in (0.25, 0.75)
    assert any(p.name.startswith(".") for p in out.iterdir()), "the kill left nothing to clean up"
    _canned_compare(out, 0.75, monkeypatch)  # the next compare removes what the killed one left
    assert sorted(p.name for p in out.iterdir()) == sorted(RESULT_FILES)
    assert json.loads((out / "compare.json").read_text())["methods"][0]["accuracy"] == 0.75


def test_a_result_a_killed_compare_left_is_never_read_as_a_new_one(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / ".pfeiffer.result.json").write_text(json.dumps(ROWS[0.25][0]))  # from a compare killed before it read
    ran = []

    def child_that_writes_nothing(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(compare_module.subprocess, "run", child_that_writes_nothing)
    with pytest.raises(AdapterKitError, match=r"training 'pfeiffer' failed"):
        compare_module.compare("toy", ["pfeiffer"], str(out))
    assert ran and not (out / "compare.json").exists()


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
    with pytest.raises(
        AdapterKitError, match=r"`allow_pickle`=True is not valid: True only reads pickles of plain tensors"
    ):
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
