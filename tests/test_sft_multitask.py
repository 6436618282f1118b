"""Multi-task instruction tuning (``task_type="causal-lm"``, ``tasks=[...]``) on a tiny random Llama: one multi-task
adapter (Hyperformer++, parallel) learns several instruction tasks, is measured per task by generation, and is served
by text-generation pipelines that take ``task_ids``; its card's usage code names a task and runs."""

from __future__ import annotations

import ast
import json

import pytest
import torch
import transformers

import hf_adapter_kit as kit
from hf_adapter_kit import AdapterKitError, from_pretrained, task_context, train
from hf_adapter_kit.data.instructions import load_instructions
from hf_adapter_kit.llm.generation import completion_perplexity, generate_answers
from hf_adapter_kit.training.chat import chat_tokenizer, encode_splits
from tests.test_card_usage import run_blocks
from tests.test_sft import QUICK


TASKS = ["tweets-polarity", "tweets-subjectivity"]
SIZES = dict(max_train_samples=32, max_eval_samples=8)


@pytest.fixture(scope="module")
def runs(tiny_llm_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft-multitask")
    return {
        (method, backend): train(
            method,
            None,
            str(folder / f"{method}-{backend}"),
            backend=backend,
            tasks=TASKS,
            task_type="causal-lm",
            model_name_or_path=tiny_llm_dir,
            **SIZES,
            **{**QUICK, "max_steps": 4},
        )  # fmt: skip
        for method, backend in (("hyperformer", "peft"), ("parallel", "adapters"))
    }


def prompt(task: str) -> list[dict[str, str]]:
    return load_instructions(task, max_eval_samples=1).splits["test"]["prompt"][0]


@pytest.mark.parametrize("key", [("hyperformer", "peft"), ("parallel", "adapters")], ids="-".join)
def test_one_adapter_learns_every_task_and_is_measured_per_task(runs, tiny_llm_dir, key):
    result = runs[key]
    meta = json.loads((result.adapter_dir / "hf_adapter_kit.json").read_text())
    assert [t["name"] for t in meta["tasks"]] == TASKS and meta["heads"] == [] and meta["kind"] == "causal-lm"
    assert meta["tasks"][1]["label_names"] == ["objective", "subjective"]
    per_task = meta["training"]["task_metrics"]
    assert list(per_task) == TASKS and meta["training"]["train_examples"] == dict.fromkeys(TASKS, 32)
    for metric, value in meta["metrics"].items():  # the run's figures are the means over the tasks
        assert value == pytest.approx(sum(per_task[t][metric] for t in TASKS) / 2)
    # each task measured through its own task's adapter: the reloaded adapter, routed to that task, agrees
    model = from_pretrained(result.adapter_dir)
    tokenizer = chat_tokenizer(tiny_llm_dir)
    for task in TASKS:
        test = encode_splits(load_instructions(task, **SIZES), tokenizer, QUICK["max_length"])["test"]
        with task_context(task):
            perplexity = completion_perplexity(model, test, tokenizer.pad_token_id)
        assert perplexity == pytest.approx(per_task[task]["perplexity"], rel=1e-4)
    with pytest.raises(AdapterKitError, match=r"`task_ids`=None is not valid: this adapter serves 2 tasks"):
        model(input_ids=torch.tensor([[5, 6, 7]]))


@pytest.mark.parametrize("key", [("hyperformer", "peft"), ("parallel", "adapters")], ids="-".join)
def test_text_generation_pipelines_take_task_ids(runs, key):
    result = runs[key]
    folder = str(result.adapter_dir)
    model = from_pretrained(folder)
    expected = {}
    for task in TASKS:
        with task_context(task):
            expected[task] = generate_answers(model, result.tokenizer, [prompt(task)], max_new_tokens=5)[0].strip()
    with torch.no_grad():  # the tasks' adapters differ: the pipelines must route to pass
        ids = torch.tensor([[5, 6, 7, 8]])
        assert not torch.allclose(model(input_ids=ids, task_ids=[TASKS[0]]).logits,
                                  model(input_ids=ids, task_ids=[TASKS[1]]).logits)  # fmt: skip
    settings = dict(max_new_tokens=5, do_sample=False, return_full_text=False)
    ours = kit.pipeline(model=folder, task_ids=TASKS[0])
    theirs = transformers.pipeline("text-generation", model=folder, task_ids=TASKS[0])
    for generator in (ours, theirs):
        assert generator(prompt(TASKS[0]), **settings)[0]["generated_text"].strip() == expected[TASKS[0]]
        out = generator(prompt(TASKS[1]), task_ids=TASKS[1], **settings)  # per call
        assert out[0]["generated_text"].strip() == expected[TASKS[1]]
    unset = kit.pipeline(model=folder)
    with pytest.raises(AdapterKitError, match=r"`task_ids`=None is not valid: a task for this call or for the pipe"):
        unset(prompt(TASKS[0]), **settings)
    assert unset(prompt(TASKS[1]), task_ids=1, **settings)[0]["generated_text"].strip() == expected[TASKS[1]]
    # one task per input: generated a task at a time, answered in the inputs' order
    inputs, tasks = [prompt(TASKS[1]), prompt(TASKS[0]), prompt(TASKS[1])], [TASKS[1], 0, TASKS[1]]
    for generator in (unset, theirs):
        answers = [out[0]["generated_text"].strip() for out in generator(inputs, task_ids=tasks, **settings)]
        assert answers == [expected[TASKS[1]], expected[TASKS[0]], expected[TASKS[1]]]
    with pytest.raises(AdapterKitError, match=r"`task_ids`=\['tweets-polarity'\] is not valid: one task per input"):
        unset(prompt(TASKS[0]), task_ids=[TASKS[0]], **settings)  # one chat, not a list of inputs
    with pytest.raises(AdapterKitError, match=r"one task per input: a list as long as the 3 inputs"):
        unset(inputs, task_ids=tasks[:2], **settings)
    with pytest.raises(AdapterKitError, match=r"`task_ids`='topic' is not valid: a name or an index of"):
        unset(inputs, task_ids=[TASKS[0], "topic", 1], **settings)
    with pytest.raises(AdapterKitError, match=r"`task_ids`='topic' is not valid: a name or an index of"):
        kit.pipeline(model=folder, task_ids="topic")


def test_the_card_names_a_task_and_its_blocks_run(runs, tmp_path):
    folder = runs[("hyperformer", "peft")].adapter_dir
    text = (folder / "README.md").read_text()
    assert "task_ids='tweets-polarity'" in text and "tweets-subjectivity: `objective`, `subjective`" in text
    assert text.count("base model zero-shot") == 4  # accuracy and perplexity of each task
    kit_out, library_out = run_blocks(text, tmp_path)
    generated = ast.literal_eval(kit_out)[0]["generated_text"]
    assert generated.strip().splitlines()[-1].strip() == library_out.strip()


def test_multitask_instruction_tuning_refuses_bad_input_first(tiny_llm_dir, tmp_path, toy_files):
    common = dict(task_type="causal-lm", model_name_or_path=tiny_llm_dir, **QUICK)
    with pytest.raises(AdapterKitError, match=r"`method`='lora' is not valid: a multi-task method for `tasks`"):
        train("lora", None, str(tmp_path / "a"), tasks=TASKS, **common)
    with pytest.raises(AdapterKitError, match=r"`tasks`=.* is not valid: embedded or Hub task names"):
        train("parallel", None, str(tmp_path / "b"), tasks=TASKS, train_file=toy_files["train_file"], **common)
    with pytest.raises(AdapterKitError, match=r"`method_options.tasks`=\['a', 'b'\] is not valid"):
        train("hyperformer", None, str(tmp_path / "c"), tasks=TASKS, method_options={"tasks": ["a", "b"]}, **common)
    assert not any((tmp_path / name).exists() for name in "abc")
