"""Multi-task training (``tasks=[...]``): temperature sampling, per-task evaluation, saving and reloading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_adapter_kit import AdapterKitError, from_pretrained, train
from hf_adapter_kit.multitask import MultiTaskModel
from hf_adapter_kit.training.sampling import TemperatureBatchSampler, task_probabilities


TASKS = ["tweets-polarity", "tweets-3way"]
QUICK = dict(
    max_train_samples=64,
    max_eval_samples=16,
    num_train_epochs=2,
    per_device_train_batch_size=16,
    max_length=16,
    disable_tqdm=True,
)


def test_temperature_sets_the_task_probabilities():
    sizes = [100, 1000, 10000]
    np.testing.assert_allclose(task_probabilities(sizes, 1.0), np.array(sizes) / sum(sizes))
    expected = np.array(sizes) ** 0.1 / sum(n**0.1 for n in sizes)
    np.testing.assert_allclose(task_probabilities(sizes, 10.0), expected)
    assert task_probabilities(sizes, 1e6).std() < 1e-4  # a very high temperature is uniform


def test_sampler_draws_whole_batches_from_one_task_at_a_time():
    sizes, batch = [40, 400], 8
    sampler = TemperatureBatchSampler(sizes, batch, temperature=2.0, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == (5 + 50) * batch
    tasks = []
    for start in range(0, len(first), batch):
        chunk = np.array(first[start : start + batch])
        in_first = chunk < sizes[0]
        assert in_first.all() or not in_first.any()  # one task per batch
        tasks.append(0 if in_first.all() else 1)
    assert list(sampler) == first  # the order depends on (seed, epoch) only
    sampler.set_epoch(1)
    assert list(sampler) != first
    draws = np.concatenate([TemperatureBatchSampler(sizes, batch, 2.0, seed).batch_tasks() for seed in range(200)])
    assert abs(draws.mean() - task_probabilities(sizes, 2.0)[1]) < 0.02  # sqrt(400)/(sqrt(40)+sqrt(400)) = 0.76


@pytest.mark.parametrize("backend", ["adapters", "peft"])
@pytest.mark.parametrize("method", ["hyperformer", "parallel"])
def test_multitask_run_evaluates_each_task_and_reloads_exactly(tiny_model_dirs, tmp_path, method, backend):
    options = {"reduction_factor": 4} | ({"projected_dim": 8} if method == "hyperformer" else {})
    result = train(
        method,
        "unused",
        str(tmp_path / "run"),
        backend=backend,
        tasks=TASKS,
        model_name_or_path=tiny_model_dirs["bert"],
        method_options=json.dumps(options),
        **QUICK,
    )
    per_task = result.meta.training["task_metrics"]
    assert list(per_task) == TASKS and all(set(m) == {"accuracy", "f1_macro"} for m in per_task.values())
    assert result.test_metrics["accuracy"] == pytest.approx(np.mean([m["accuracy"] for m in per_task.values()]))
    assert result.meta.training["global_steps"] == 2 * (64 // 16 * 2)  # an epoch: as many batches as both tasks
    files = {p.name for p in result.adapter_dir.iterdir()}
    assert {"heads.safetensors", "hf_adapter_kit.json", "README.md"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    reloaded = from_pretrained(result.adapter_dir)
    assert isinstance(reloaded, MultiTaskModel) and reloaded.tasks == TASKS
    batch = result.tokenizer(["good flight", "lost my bag", "ok"], padding=True, return_tensors="pt")
    with torch.no_grad():
        for task_ids in (TASKS[0], [TASKS[1], TASKS[0], TASKS[1]]):
            ours = reloaded(batch["input_ids"], batch["attention_mask"], task_ids=task_ids).logits
            trained = result.model(batch["input_ids"], batch["attention_mask"], task_ids=task_ids).logits
            assert ours.keys() == trained.keys() and all(torch.equal(ours[k], trained[k]) for k in ours)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"method": "pfeiffer"}, r"`method`='pfeiffer'.*multi-task"),
        ({"tasks": ["tweets-polarity", "tweets-polarity"]}, r"`tasks`.*unique"),
        ({"tasks": []}, r"`tasks`"),
        ({"temperature": 0.0}, r"`temperature`=0.0"),
        ({"method_options": '{"tasks": ["a", "b"]}'}, r"`method_options.tasks`"),
        ({"train_file": "x.csv"}, r"`tasks`.*local files"),
    ],
)
def test_bad_multitask_input_is_refused_before_anything_is_written(tiny_model_dirs, tmp_path, overrides, match):
    arguments = {"method": "hyperformer", "tasks": TASKS, "model_name_or_path": tiny_model_dirs["bert"]} | QUICK
    out = tmp_path / "run"
    with pytest.raises(AdapterKitError, match=match):
        train(task="unused", output_dir=str(out), **(arguments | overrides))
    assert not out.exists()
