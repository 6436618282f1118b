"""Instruction tuning (``task_type="causal-lm"``) on a tiny random Llama with a ChatML template: the data, the labels,
every method's training and reload, evaluation by generation, and what is refused."""

from __future__ import annotations

import json
import math

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_adapter_kit import AdapterKitError, from_pretrained, train
from hf_adapter_kit.data.instructions import load_instructions
from hf_adapter_kit.llm.generation import (
    completion_perplexity,
    evaluate_generation,
    exact_match_accuracy,
    generate_answers,
    normalize,
)
from hf_adapter_kit.metrics import IGNORED
from hf_adapter_kit.registry import list_specs
from hf_adapter_kit.training.chat import encode_chat


PROMPT = [{"role": "user", "content": "Is this tweet positive or negative? great flight"}]
QUICK = dict(max_steps=3, per_device_train_batch_size=8, disable_tqdm=True, learning_rate=1e-2, max_length=64)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def toy_instructions(folder) -> str:
    """Sixteen prompt/completion rows of two tweets and their polarity, as TRL's jsonl."""
    rows = [{"prompt": "what a great flight", "completion": "positive"},
            {"prompt": "lost my bag again", "completion": "negative"}] * 8  # fmt: skip
    return write_jsonl(folder / "train.jsonl", rows)


@pytest.fixture(scope="module")
def tokenizer(tiny_llm_dir):
    return AutoTokenizer.from_pretrained(tiny_llm_dir)


# -- the data and the labels ----------------------------------------------------------------------------------------
def test_labels_cover_the_completion_only_through_the_chat_template(tokenizer):
    row = encode_chat(tokenizer, PROMPT, "positive", max_length=64)
    prompt_ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template([*PROMPT, {"role": "assistant", "content": "positive"}], tokenize=True)
    assert row["input_ids"] == full and row["length"] == len(full) and row["attention_mask"] == [1] * len(full)
    assert row["labels"][: len(prompt_ids)] == [IGNORED] * len(prompt_ids)
    answer = row["labels"][len(prompt_ids) :]
    assert answer == full[len(prompt_ids) :] and IGNORED not in answer
    # the answer and the end of its turn, which teaches the model to stop
    assert tokenizer.convert_ids_to_tokens(answer)[:2] == ["positive", "<|im_end|>"]
    text = tokenizer.decode(row["input_ids"])
    assert text.startswith("<|im_start|> user") and "<|im_start|> assistant" in text  # ChatML from the template


def test_a_long_prompt_loses_its_start_and_the_answer_stays_whole(tokenizer):
    long = [{"role": "user", "content": "word " * 100 + "final question"}]
    row = encode_chat(tokenizer, long, "negative", max_length=32)
    assert len(row["input_ids"]) == 32
    kept = [t for t in row["labels"] if t != IGNORED]
    assert tokenizer.convert_ids_to_tokens(kept)[0] == "negative"
    assert row["input_ids"][-len(kept) :] == kept


def test_classification_data_become_instructions(toy_files):
    data = load_instructions("toy", **toy_files)
    assert data.label_names == ["negative", "positive"] and set(data.splits) == {"train", "validation", "test"}
    first = data.splits["test"][0]
    content = first["prompt"][0]["content"]
    assert first["prompt"][0]["role"] == "user" and "Answer with one of: negative, positive." in content
    assert content.endswith(first["prompt"][0]["content"].split("Text: ", 1)[1]) and "Text: the flight was" in content
    assert first["completion"] in {"negative", "positive"}
    # the same rows and labels as the classification task
    from hf_adapter_kit import load_task

    task = load_task("toy", **toy_files)
    assert [task.label_names[i] for i in task.splits["test"]["label"]] == data.splits["test"]["completion"]


def test_embedded_tweets_as_instructions():
    data = load_instructions("tweets-polarity", max_train_samples=8, max_eval_samples=4)
    prompt = data.splits["test"][0]["prompt"][0]["content"]
    assert prompt.startswith("Is this tweet positive or negative? Answer with one of: negative, positive.\n\nTweet: ")
    assert set(data.splits["train"]["completion"]) <= {"negative", "positive"} and len(data.splits["test"]) == 4


def test_jsonl_prompt_completion_and_messages(tmp_path):
    rows = [
        {"prompt": "Say hi", "completion": "hi"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say no"}],
         "completion": [{"role": "assistant", "content": "no"}]},
    ] * 4  # fmt: skip
    data = load_instructions("mine", train_file=write_jsonl(tmp_path / "pc.jsonl", rows))
    assert sum(len(s) for s in data.splits.values()) == 8 and len(data.splits["test"]) == 1
    pairs = {(tuple(m["role"] for m in r["prompt"]), r["completion"]) for s in data.splits.values() for r in s}
    assert pairs == {(("user",), "hi"), (("system", "user"), "no")}
    chat = [{"role": "user", "content": f"q{i}"} for i in range(2)]
    messages = [{"messages": [*chat, {"role": "assistant", "content": f"a{i}"}]} for i in range(6)]
    data = load_instructions(
        "chat",
        train_file=write_jsonl(tmp_path / "m.jsonl", messages),
        test_file=write_jsonl(tmp_path / "t.jsonl", messages[:2]),
    )
    assert data.name == "chat" and data.splits["test"]["completion"] == ["a0", "a1"]
    assert data.splits["test"][0]["prompt"] == chat  # every message before the last answer is the prompt
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 6


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"messages": [{"role": "user", "content": "q"}]}] * 4, r"row 0 .*`messages` must end with the assistant"),
        ([{"messages": [{"role": "bot", "content": "q"}]}] * 4, r"row 0 .*'bot'.*'system', 'user', 'assistant'"),
        ([{"prompt": "q", "completion": 3}] * 4, r"row 0 .*`completion`=3 is not valid: expected a string"),
        ([{"prompt": [], "completion": "a"}] * 4, r"row 0 .*`prompt`=\[\] is not valid: expected a list of messages"),
    ],
)
def test_bad_instruction_files_are_refused(tmp_path, rows, match):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(AdapterKitError, match=rf"`train_file`='{path}'"):
        load_instructions("bad", train_file=path)
    with pytest.raises(AdapterKitError, match=match):
        load_instructions("bad", train_file=path)


# -- training, saving, reloading -------------------------------------------------------------------------------------
# every adapter method on every library it runs on (head and full fine-tuning are the transformers backend's)
CASES = [(spec.name, backend) for spec in list_specs() for backend in spec.backends if backend != "transformers"]


def logits_of(model, tokenizer) -> torch.Tensor:
    ids = torch.tensor([tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True)])
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize(("method", "backend"), CASES, ids=[f"{m}-{b}" for m, b in CASES])
def test_each_method_trains_and_its_adapter_reloads(tiny_llm_dir, toy_files, tmp_path, tokenizer, method, backend):
    out = tmp_path / "run"
    result = train(
        method, "toy", str(out), backend=backend, task_type="causal-lm", model_name_or_path=tiny_llm_dir,
        **toy_files, **QUICK,
    )  # fmt: skip
    metrics = result.test_metrics
    assert set(metrics) == {"accuracy", "perplexity", "zero_shot_accuracy", "zero_shot_perplexity"}
    assert 0 <= metrics["accuracy"] <= 1 and metrics["perplexity"] > 1 and math.isfinite(metrics["perplexity"])
    assert metrics["perplexity"] != metrics["zero_shot_perplexity"]  # the adapter trained
    meta = json.loads((result.adapter_dir / "hf_adapter_kit.json").read_text())
    assert meta["kind"] == "causal-lm" and meta["label_names"] == ["negative", "positive"]
    assert meta["training"]["global_steps"] == 3 and meta["metrics"] == metrics
    files = {p.name for p in result.adapter_dir.iterdir()}
    # the adapter only: no language-modelling head (tied to the 30k x 32 embeddings: 3.9 MB), no base weights
    assert not files & {"model_head.safetensors", "model.safetensors", "head_config.json"}
    assert result.adapter_size_bytes < 1_000_000, files
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).eval()
    assert not torch.allclose(logits_of(result.model, tokenizer), logits_of(base, tokenizer))
    reloaded = from_pretrained(result.adapter_dir)
    assert torch.equal(logits_of(reloaded, tokenizer), logits_of(result.model, tokenizer))
    prompts = [PROMPT, [{"role": "user", "content": "the flight was awful today"}]]
    assert generate_answers(reloaded, tokenizer, prompts, max_new_tokens=6) == generate_answers(
        result.model, tokenizer, prompts, max_new_tokens=6
    )


def test_the_zero_shot_baseline_is_the_base_model(tiny_llm_dir, toy_files, tmp_path, tokenizer):
    result = train(
        "lora", "toy", str(tmp_path / "run"), task_type="CAUSAL_LM", model_name_or_path=tiny_llm_dir,
        **toy_files, **QUICK,
    )  # fmt: skip
    from hf_adapter_kit.training.chat import encode_splits

    data = load_instructions("toy", **toy_files)
    encoded = encode_splits(data, tokenizer, QUICK["max_length"])["test"]
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    expected = completion_perplexity(base, encoded, tokenizer.pad_token_id)
    assert result.test_metrics["zero_shot_perplexity"] == pytest.approx(expected, rel=1e-5)
    assert result.test_metrics["perplexity"] == pytest.approx(
        completion_perplexity(result.model, encoded, tokenizer.pad_token_id), rel=1e-5
    )
    assert result.meta.training["test_examples"] == len(data.splits["test"])


# -- evaluation by generation ----------------------------------------------------------------------------------------
def test_normalize_and_exact_match():
    assert normalize("  Positive.\nBecause the tweet...") == "positive"
    assert normalize("'Negative'!") == "negative" and normalize("") == "" and normalize("\n\nno") == "no"
    assert normalize("New   York ") == "new york"
    predictions = ["Positive.", "negative\nbecause it is rude", "The tweet is positive", "neutral"]
    assert exact_match_accuracy(predictions, ["positive", "negative", "positive", "negative"]) == 0.5
    with pytest.raises(AdapterKitError, match=r"`predictions`='2 answers' is not valid: one per reference \(1\)"):
        exact_match_accuracy(["a", "b"], ["a"])


def test_generation_accuracy_on_a_hand_made_case(tiny_llm_dir, tokenizer):
    """References = the model's own greedy answers, each generated alone, for two prompts and a wrong answer for the
    two others: batched (left-padded) generation must find exactly the first two."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).eval()
    prompts = [[{"role": "user", "content": text}] for text in ("ok", "a much longer tweet about delays", "hi", "x")]
    alone = [generate_answers(model, tokenizer, [p], max_new_tokens=4)[0] for p in prompts]
    assert all(normalize(a) for a in alone)
    references = [alone[0], alone[1], "zzz", "zzz"]
    rows = [encode_chat(tokenizer, p, r, 64) for p, r in zip(prompts, references, strict=True)]
    encoded = datasets.Dataset.from_list(rows)
    result = evaluate_generation(
        model, tokenizer=tokenizer, prompts=prompts, references=references, encoded=encoded, batch_size=4,
        max_new_tokens=4,
    )  # fmt: skip
    assert result.accuracy == 0.5 and result.predictions == alone
    # perplexity: exp of the mean NLL over every answer token of the split, as the model's own loss gives per row
    nll, count = 0.0, 0
    for row in rows:
        labels = torch.tensor([row["labels"]])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([row["input_ids"]]), labels=labels).loss
        tokens = int((labels[:, 1:] != IGNORED).sum())
        nll, count = nll + float(loss) * tokens, count + tokens
    assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)


# -- refused before anything is written ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"task_type": "causal"},
            r"`task_type`='causal' is not valid: 'causal-lm' \(or PEFT's name 'CAUSAL_LM'\) .* or None",
        ),
        ({"method": "head"}, r"`method`='head' is not valid: with task_type='causal-lm' one of \[.*'lora'"),
        ({"model_name_or_path": "BERT"}, r"`model_name_or_path`=.* has a chat template"),
        ({"tasks": ["tweets-polarity", "tweets-3way"]}, r"`method`='lora' is not valid: a multi-task method for `tas"),
        ({"metric_for_best_model": "accuracy"}, r"`metric_for_best_model`='accuracy' is not valid: 'loss'"),
        ({"max_new_tokens": 0}, r"`max_new_tokens`=0 is not valid: expected an integer >= 1"),
        ({"task": "tweets-ner"}, r"`task`='tweets-ner' is not valid: .*token classification"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tiny_llm_dir, tiny_model_dirs, tmp_path, changes, match):
    out = tmp_path / "run"
    kwargs = {"task_type": "causal-lm", "model_name_or_path": tiny_llm_dir, "method": "lora", **changes}
    if kwargs["model_name_or_path"] == "BERT":
        kwargs["model_name_or_path"] = tiny_model_dirs["bert"]
    if "task" not in kwargs:
        kwargs.update(task="tweets-polarity", max_train_samples=8, max_eval_samples=4)
    with pytest.raises(AdapterKitError, match=match):
        train(output_dir=str(out), **kwargs, **QUICK)
    assert not out.exists()


def test_cli_trains_an_sft_adapter(tiny_llm_dir, toy_files, tmp_path):
    from hf_adapter_kit.commands.cli import main

    out = tmp_path / "cli"
    argv = ["train", "--method", "pfeiffer", "--task_type", "causal-lm", "--model_name_or_path", tiny_llm_dir]
    argv += ["--task", "toy", "--output_dir", str(out), "--max_steps", "2", "--disable_tqdm", "true"]
    argv += [f"--{k}={v}" for k, v in toy_files.items()]
    assert main(argv) == 0
    meta = json.loads((out / "adapter" / "hf_adapter_kit.json").read_text())
    assert meta["kind"] == "causal-lm" and meta["method"] == "pfeiffer" and "zero_shot_accuracy" in meta["metrics"]
