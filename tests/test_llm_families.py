"""Instruction tuning and serving on every decoder family, not only Llama: tiny random Qwen3, Gemma 3, Mistral and
Phi-3 with a ChatML template (``chat_llm_dir`` in conftest.py), each through the kit's ``train(...,
task_type="causal-lm")`` with LoRA, a kit method on a bf16 base and two-task adapters on both backends; then the
adapter reloaded, LoRA merged, ``generate(..., task_ids=...)`` and the text-generation pipelines routed by task.
``tests/test_sft.py`` and ``tests/test_sft_multitask.py`` go deeper on the tiny Llama."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM

import hf_adapter_kit as kit
from hf_adapter_kit import AdapterKitError, from_pretrained, task_context, train
from hf_adapter_kit.llm.generation import generate_answers
from tests.conftest import CHAT_FAMILIES
from tests.test_sft import PROMPT, QUICK, toy_instructions
from tests.test_sft_multitask import SIZES, TASKS, prompt


# PEFT 0.21 has no default LoRA targets for Phi-3 (its query, key and value share one projection): named here
LORA_TARGETS = {"phi3": ["qkv_proj", "o_proj"]}
# run name -> (method, backend, train() arguments beyond the common ones)
RUNS = {
    "lora": ("lora", "peft", {}),
    "pfeiffer-bf16": ("pfeiffer", "adapters", {"torch_dtype": "bfloat16"}),
    "hyperformer": ("hyperformer", "peft", {"tasks": TASKS, **SIZES, "max_steps": 4}),
    "parallel": ("parallel", "adapters", {"tasks": TASKS, **SIZES, "max_steps": 4}),
}
MULTITASK = ["hyperformer", "parallel"]  # the two-task adapters: one per backend


@pytest.fixture(scope="module")
def run(chat_llm_dir, tmp_path_factory):
    """``run(family, name)``: the :data:`RUNS` entry trained on that family's tiny model, once per module."""
    folder = tmp_path_factory.mktemp("llm-families")
    data = toy_instructions(folder)
    done: dict = {}

    def get(family: str, name: str):
        if (family, name) not in done:
            method, backend, extra = RUNS[name]
            options = {"task": None} if "tasks" in extra else {"task": "toy", "train_file": data}
            if method == "lora" and family in LORA_TARGETS:
                options["method_options"] = {"target_modules": LORA_TARGETS[family]}
            done[family, name] = train(
                method, output_dir=str(folder / f"{family}-{name}"), backend=backend, task_type="causal-lm",
                model_name_or_path=chat_llm_dir(family), **options, **{**QUICK, **extra},
            )  # fmt: skip
        return done[family, name]

    return get


def chat_ids(tokenizer, messages=PROMPT) -> torch.Tensor:
    return torch.tensor([tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)])


def logits(model, ids, task=None) -> torch.Tensor:
    with torch.no_grad(), task_context(task):
        return model(input_ids=ids).logits


@pytest.mark.parametrize("name", list(RUNS))
@pytest.mark.parametrize("family", CHAT_FAMILIES)
def test_sft_trains_and_the_adapter_reloads(run, chat_llm_dir, family, name):
    result = run(family, name)
    metrics = result.test_metrics
    assert set(metrics) == {"accuracy", "perplexity", "zero_shot_accuracy", "zero_shot_perplexity"}
    assert metrics["perplexity"] != metrics["zero_shot_perplexity"]  # the adapter trained
    meta = json.loads((result.adapter_dir / "hf_adapter_kit.json").read_text())
    assert meta["kind"] == "causal-lm" and meta["method"] == RUNS[name][0] and meta["backend"] == RUNS[name][1]
    task = TASKS[1] if name in MULTITASK else None
    ids = chat_ids(result.tokenizer)
    dtype = torch.bfloat16 if "bf16" in name else None
    base = AutoModelForCausalLM.from_pretrained(chat_llm_dir(family), dtype=dtype).eval()
    trained = logits(result.model.eval(), ids, task)
    assert not torch.allclose(trained, logits(base, ids))
    reloaded = from_pretrained(result.adapter_dir, dtype=dtype)
    assert reloaded.config.model_type == family
    assert torch.equal(logits(reloaded, ids, task), trained)
    prompts = [PROMPT, [{"role": "user", "content": "lost my bag again"}]]
    with task_context(task):
        answers = generate_answers(result.model, result.tokenizer, prompts, max_new_tokens=5)
        assert generate_answers(reloaded, result.tokenizer, prompts, max_new_tokens=5) == answers


@pytest.mark.parametrize("family", CHAT_FAMILIES)
def test_a_bf16_base_keeps_its_dtype_and_adapters_weights_take_it(run, family):
    """``adapters``' own bottleneck computes in its weights' dtype: on a bf16 base it takes bf16 (docs/llm.md)."""
    model = run(family, "pfeiffer-bf16").model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert any(p.requires_grad for p in model.parameters())
    out = logits(model.eval(), torch.tensor([[5, 6, 7, 8]]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


@pytest.mark.parametrize("family", CHAT_FAMILIES)
def test_merged_lora_answers_as_the_adapter(run, chat_llm_dir, family):
    result = run(family, "lora")
    folder = str(result.adapter_dir)
    adapter, merged = from_pretrained(folder), from_pretrained(folder, merge=True)
    base = AutoModelForCausalLM.from_pretrained(chat_llm_dir(family))
    assert type(merged) is type(base) and merged.state_dict().keys() == base.state_dict().keys()
    ids = chat_ids(result.tokenizer)
    torch.testing.assert_close(logits(merged, ids), logits(adapter, ids), rtol=1e-4, atol=1e-5)
    answer = generate_answers(adapter, result.tokenizer, [PROMPT], max_new_tokens=5)[0]
    assert generate_answers(merged, result.tokenizer, [PROMPT], max_new_tokens=5)[0] == answer
    served = kit.pipeline(model=folder, merge=True)
    assert type(served.model) is type(base)
    out = served(PROMPT, max_new_tokens=5, do_sample=False, return_full_text=False)
    assert out[0]["generated_text"].strip() == answer.strip()


@pytest.mark.parametrize("name", MULTITASK)
@pytest.mark.parametrize("family", CHAT_FAMILIES)
def test_generate_takes_one_task_per_prompt(run, family, name):
    """One batch, the same prompt for both tasks: each row is what the prompt's task alone generates, with the KV
    cache and without it (adapters issue #824 broke the cache on its own Llama and Mistral layers)."""
    result = run(family, name)
    model = from_pretrained(result.adapter_dir)
    ids = chat_ids(result.tokenizer, prompt(TASKS[0]))
    settings = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    with torch.no_grad():
        alone = [model.generate(input_ids=ids, task_ids=task, **settings) for task in TASKS]
        both = model.generate(input_ids=ids.repeat(2, 1), task_ids=TASKS, **settings)
        uncached = model.generate(input_ids=ids.repeat(2, 1), task_ids=[0, 1], use_cache=False, **settings)
    assert torch.equal(both, torch.cat(alone)) and torch.equal(uncached, both)
    assert not torch.equal(logits(model, ids, TASKS[0]), logits(model, ids, TASKS[1]))  # the tasks' adapters differ
    with pytest.raises(AdapterKitError, match=r"`task_ids`=None is not valid: this adapter serves 2 tasks"):
        model.generate(input_ids=ids, **settings)


@pytest.mark.parametrize("name", MULTITASK)
@pytest.mark.parametrize("family", CHAT_FAMILIES)
def test_text_generation_pipelines_take_task_ids(run, family, name):
    """The kit's pipeline and transformers' own over the adapter's folder generate each chat's tokens as
    ``generate`` does for its task (compared as token ids: the test tokenizer's WordPiece pieces decode differently
    alone and after the prompt)."""
    result = run(family, name)
    folder = str(result.adapter_dir)
    model = from_pretrained(folder)
    chats = [prompt(task) for task in TASKS]
    expected = {}
    for task, chat in zip(TASKS, chats, strict=True):
        with torch.no_grad():
            ids = model.generate(input_ids=chat_ids(result.tokenizer, chat), task_ids=task, max_new_tokens=5)
        expected[task] = ids[0].tolist()
    settings = dict(max_new_tokens=5, do_sample=False, return_tensors=True)
    ours = kit.pipeline(model=folder, task_ids=TASKS[0])
    theirs = transformers.pipeline("text-generation", model=folder)
    assert isinstance(ours, transformers.TextGenerationPipeline) and ours.model.config.model_type == family
    assert ours(chats[0], **settings)[0]["generated_token_ids"] == expected[TASKS[0]]  # the pipeline's task
    assert ours(chats[1], task_ids=TASKS[1], **settings)[0]["generated_token_ids"] == expected[TASKS[1]]  # per call
    answers = theirs([chats[1], chats[0]], task_ids=[TASKS[1], 0], **settings)  # one task per input
    assert [a[0]["generated_token_ids"] for a in answers] == [expected[TASKS[1]], expected[TASKS[0]]]


# -- refused by name before the model loads -------------------------------------------------------------------------
def test_lora_without_targets_on_phi3_is_refused_first(chat_llm_dir, tmp_path, monkeypatch):
    """PEFT 0.21 has no LoRA targets for phi3: the kit says so, naming the option, before loading anything."""
    import hf_adapter_kit.training.strategies.instructions as instructions

    monkeypatch.setattr(instructions, "load_base_model", _never_loaded)
    with pytest.raises(AdapterKitError, match=r"`target_modules`=None is not valid: .*model_type 'phi3'.*all-linear"):
        train("lora", "tweets-polarity", str(tmp_path / "run"), task_type="causal-lm", max_train_samples=8,
              max_eval_samples=4, model_name_or_path=chat_llm_dir("phi3"), **QUICK)  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_lora_on_adapters_for_phi3_is_refused_first(chat_llm_dir, tmp_path, monkeypatch):
    """The kit's Phi-3 interface for adapters takes bottleneck adapters only: LoRA is refused, naming the backend."""
    import hf_adapter_kit.training.strategies.instructions as instructions

    monkeypatch.setattr(instructions, "load_base_model", _never_loaded)
    with pytest.raises(AdapterKitError, match=r"`backend`='adapters' is not valid: 'peft' for this method .*'lora'"):
        train("lora", "tweets-polarity", str(tmp_path / "run"), backend="adapters", task_type="causal-lm",
              max_train_samples=8, max_eval_samples=4, model_name_or_path=chat_llm_dir("phi3"), **QUICK)  # fmt: skip
    assert not (tmp_path / "run").exists()


def _never_loaded(*args, **kwargs):
    raise AssertionError("the base model was loaded before the check")
