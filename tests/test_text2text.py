"""Text-to-text (``task_type="seq2seq-lm"``) on a tiny random T5 and BART: the data (prompt/target files, classification
tasks with their task prefix and labels as words), the encoding (loss on the target only), evaluation by generation
on an encoder-decoder, every method's training and reload, Hyperformer++ and parallel adapters over two tasks served
by text2text-generation pipelines with ``task_ids``, their cards, the Hub, and what is refused."""

from __future__ import annotations

import ast
import json
import math

import pytest
import torch
import transformers
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import hf_adapter_kit as kit
from hf_adapter_kit import AdapterKitError, from_pretrained, task_context, train
from hf_adapter_kit.data.text2text import load_text2text
from hf_adapter_kit.llm.generation import completion_perplexity, evaluate_generation, generate_answers
from hf_adapter_kit.methods.hyperformer.peft_backend import find_hypernet
from hf_adapter_kit.modeling.families import num_blocks
from tests.test_card_usage import run_blocks
from tests.test_sft import write_jsonl


TASKS = ["tweets-polarity", "tweets-subjectivity"]
QUICK = dict(per_device_train_batch_size=8, disable_tqdm=True, learning_rate=1e-2, max_length=64)
PAIRS = [{"prompt": "polarity: what a great flight", "target": "positive"},
         {"prompt": "polarity: lost my bag again", "target": "negative"}]  # fmt: skip


def pairs_file(folder) -> str:
    """Twenty-four prompt/target rows of two tweets and their polarity, with their own task prefix."""
    return write_jsonl(folder / "polarity.jsonl", PAIRS * 12)


@pytest.fixture(scope="module")
def tokenizers(tiny_seq2seq_dirs):
    return {name: AutoTokenizer.from_pretrained(folder) for name, folder in tiny_seq2seq_dirs.items()}


# -- the data ---------------------------------------------------------------------------------------------------------
def test_classification_data_become_text_to_text_with_a_task_prefix(toy_files):
    data = load_text2text("toy", **toy_files)
    assert data.kind == "seq2seq-lm" and data.label_names == ["negative", "positive"]
    test = data.splits["test"]
    assert all(p.startswith("toy sentence: the flight was ") for p in test["prompt"])
    assert set(test["completion"]) == {"negative", "positive"}  # the labels as words, as T5 writes them
    polarity = load_text2text("tweets-polarity", max_train_samples=4, max_eval_samples=2)
    assert polarity.splits["train"][0]["prompt"].startswith("tweets-polarity sentence: ")


def test_prompt_target_files_jsonl_and_csv(tmp_path):
    data = load_text2text("polarity", train_file=pairs_file(tmp_path))
    assert data.name == "polarity" and data.label_names == [] and sum(map(len, data.splits.values())) == 24
    assert set(zip(data.splits["test"]["prompt"], data.splits["test"]["completion"], strict=True)) <= {
        (row["prompt"], row["target"]) for row in PAIRS
    }
    csv = tmp_path / "codes.csv"
    csv.write_text("prompt,completion\n" + "".join(f"code of item {i},00{i}\n" for i in range(10)))
    codes = load_text2text(str(csv))  # TRL's `completion` name too; a target "001" stays text
    assert codes.name == "codes" and sorted(sum((list(s["completion"]) for s in codes.splits.values()), [])) == [
        f"00{i}" for i in range(10)
    ]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"prompt": "", "target": "x"}] * 4, r"row 0 \(0-based\), `prompt`='' is not valid: expected a non-empty"),
        ([{"prompt": "a", "target": 3}] * 4, r"row 0 \(0-based\), `target`=3 is not valid: expected a string"),
    ],
)
def test_bad_text_to_text_files_are_refused(tmp_path, rows, match):
    with pytest.raises(AdapterKitError, match=match):
        load_text2text("bad", train_file=write_jsonl(tmp_path / "bad.jsonl", rows))


# -- the encoding and evaluation by generation ------------------------------------------------------------------------
def test_the_labels_are_the_target_and_its_eos(tokenizers, tmp_path):
    from hf_adapter_kit.training.strategies.text2text import encode_pairs

    tokenizer = tokenizers["t5"]
    data = load_text2text("polarity", train_file=pairs_file(tmp_path))
    row = encode_pairs(data, tokenizer, max_length=8)["train"][0]
    prompt, target = data.splits["train"][0]["prompt"], data.splits["train"][0]["completion"]
    assert row["input_ids"] == tokenizer(prompt, truncation=True, max_length=8)["input_ids"] and row["length"] == 8
    assert tokenizer.convert_ids_to_tokens(row["labels"])[-2:] == [target, "[SEP]"]  # the loss ends with eos


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_generation_and_perplexity_on_an_encoder_decoder(tiny_seq2seq_dirs, tokenizers, family):
    """Batched (right-padded) generation answers as each prompt alone; the perplexity is exp of the model's own
    loss on the targets, token-weighted over the split."""
    import datasets

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_seq2seq_dirs[family]).eval()
    tokenizer = tokenizers[family]
    prompts = ["ok", "a much longer tweet about the delays at the airport", "hi"]
    alone = [generate_answers(model, tokenizer, [p], max_new_tokens=4)[0] for p in prompts]
    references = [alone[0], "zzz", alone[2]]
    encoded = datasets.Dataset.from_list(
        [{"input_ids": tokenizer(p)["input_ids"], "labels": tokenizer(text_target=r)["input_ids"]}
         for p, r in zip(prompts, references, strict=True)]
    )  # fmt: skip
    result = evaluate_generation(
        model, tokenizer=tokenizer, prompts=prompts, references=references, encoded=encoded, batch_size=3,
        max_new_tokens=4,
    )  # fmt: skip
    assert result.predictions == alone and result.accuracy == pytest.approx(2 / 3)
    nll, count = 0.0, 0
    for row in encoded:
        labels = torch.tensor([row["labels"]])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([row["input_ids"]]), labels=labels).loss
        nll, count = nll + float(loss) * labels.numel(), count + labels.numel()
    assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)


# -- every method, one task -------------------------------------------------------------------------------------------
CASES = [
    ("t5", "pfeiffer", "adapters"), ("t5", "pfeiffer", "peft"), ("t5", "houlsby", "adapters"),
    ("t5", "houlsby", "peft"), ("t5", "lora", "peft"), ("t5", "lora", "adapters"), ("t5", "parallel", "adapters"),
    ("t5", "parallel", "peft"), ("t5", "hyperformer", "adapters"), ("t5", "hyperformer", "peft"),
    ("t5", "full", "transformers"), ("bart", "houlsby", "peft"), ("bart", "lora", "adapters"),
    ("bart", "hyperformer", "peft"),
]  # fmt: skip


@pytest.mark.parametrize(("family", "method", "backend"), CASES, ids=["-".join(case) for case in CASES])
def test_each_method_trains_and_serves_text_to_text(tiny_seq2seq_dirs, tokenizers, tmp_path, family, method, backend):
    from hf_adapter_kit.training.strategies.text2text import encode_pairs

    result = train(
        method, pairs_file(tmp_path), str(tmp_path / "run"), backend=backend, task_type="seq2seq-lm",
        model_name_or_path=tiny_seq2seq_dirs[family], max_steps=2, **QUICK,
    )  # fmt: skip
    metrics = result.test_metrics
    assert set(metrics) == {"accuracy", "perplexity", "zero_shot_accuracy", "zero_shot_perplexity"}
    assert metrics["perplexity"] != metrics["zero_shot_perplexity"]  # the adapter trained
    meta = json.loads((result.adapter_dir / "hf_adapter_kit.json").read_text())
    assert meta["kind"] == "seq2seq-lm" and meta["task"] == "polarity" and meta["training"]["global_steps"] == 2
    if method != "full":  # the adapter alone: no base weights, no language-modelling head
        assert not {p.name for p in result.adapter_dir.iterdir()} & {"model.safetensors", "model_head.safetensors"}
    # the folder reloads as the trained model: the same perplexity on the test split, the same answers
    tokenizer = tokenizers[family]
    data = load_text2text("polarity", train_file=pairs_file(tmp_path))
    test = encode_pairs(data, tokenizer, QUICK["max_length"])["test"]
    reloaded = from_pretrained(result.adapter_dir)
    assert completion_perplexity(reloaded, test, tokenizer.pad_token_id) == pytest.approx(
        metrics["perplexity"], rel=1e-4
    )
    prompts = [row["prompt"] for row in PAIRS]
    expected = generate_answers(result.model, tokenizer, prompts, max_new_tokens=4)
    assert generate_answers(reloaded, tokenizer, prompts, max_new_tokens=4) == expected
    generator = kit.pipeline(model=str(result.adapter_dir))  # the adapter's own pipeline: text2text-generation
    assert isinstance(generator, transformers.Text2TextGenerationPipeline)
    greedy = dict(max_new_tokens=4, num_beams=1, do_sample=False)
    assert [out["generated_text"] for out in generator(prompts, **greedy)] == expected


def test_a_lora_adapter_learns_to_write_the_labels(tiny_seq2seq_dirs, tmp_path):
    result = train(
        "lora", pairs_file(tmp_path), str(tmp_path / "run"), backend="peft", task_type="SEQ_2_SEQ_LM",
        model_name_or_path=tiny_seq2seq_dirs["t5"], max_steps=80, eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False, **QUICK,
    )  # fmt: skip
    assert result.test_metrics["zero_shot_accuracy"] == 0.0 and result.test_metrics["accuracy"] == 1.0
    assert result.meta.training["generation_samples"][0]["generated"] in {"positive", "negative"}


# -- Hyperformer++ and parallel adapters over two tasks -----------------------------------------------------------------
RUNS = [("t5", "hyperformer", "adapters"), ("bart", "hyperformer", "adapters"), ("t5", "hyperformer", "peft"),
        ("bart", "parallel", "peft")]  # fmt: skip
RUN_IDS = ["-".join(run) for run in RUNS]
PROMPTS = [f"{task} sentence: {text}" for task in TASKS for text in ("what a lovely crew", "we land at noon")]


@pytest.fixture(scope="module")
def runs(tiny_seq2seq_dirs, tmp_path_factory):
    """Thirty steps with bottlenecks of 8 (reduction factor 4 on hidden 32): enough for each task's adapter to write
    its own tokens, so that routing to the wrong task shows."""
    folder = tmp_path_factory.mktemp("text2text-multitask")
    return {
        (family, method, backend): train(
            method,
            None,
            str(folder / f"{family}-{method}-{backend}"),
            backend=backend,
            tasks=TASKS,
            task_type="seq2seq-lm",
            model_name_or_path=tiny_seq2seq_dirs[family],
            max_train_samples=32,
            max_eval_samples=8,
            max_steps=30,
            reduction_factor=4,
            **QUICK,
        )  # fmt: skip
        for family, method, backend in RUNS
    }


def answers_per_task(model, tokenizer) -> dict[str, list[str]]:
    out = {}
    for task in TASKS:
        with task_context(task):
            out[task] = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=5)
    return out


@pytest.mark.parametrize("key", RUNS, ids=RUN_IDS)
def test_one_adapter_learns_both_tasks_and_is_measured_per_task(runs, tokenizers, key):
    from hf_adapter_kit.training.strategies.text2text import encode_pairs

    result = runs[key]
    meta = json.loads((result.adapter_dir / "hf_adapter_kit.json").read_text())
    assert meta["kind"] == "seq2seq-lm" and [t["name"] for t in meta["tasks"]] == TASKS and meta["heads"] == []
    per_task = meta["training"]["task_metrics"]
    for metric, value in meta["metrics"].items():  # the run's figures are the means over the tasks
        assert value == pytest.approx(sum(per_task[t][metric] for t in TASKS) / 2)
    for task in TASKS:
        assert per_task[task]["perplexity"] < per_task[task]["zero_shot_perplexity"]
    # each task measured through its own task's adapter: the reloaded adapter, routed to that task, agrees
    model = from_pretrained(result.adapter_dir)
    tokenizer = tokenizers[key[0]]
    for task in TASKS:
        test = encode_pairs(load_text2text(task, max_train_samples=32, max_eval_samples=8), tokenizer, 64)["test"]
        with task_context(task):
            perplexity = completion_perplexity(model, test, tokenizer.pad_token_id)
        assert perplexity == pytest.approx(per_task[task]["perplexity"], rel=1e-4)
    with pytest.raises(AdapterKitError, match=r"`task_ids`=None is not valid: this adapter serves 2 tasks"):
        model.generate(**tokenizer(PROMPTS[:1], return_tensors="pt"), max_new_tokens=2)


@pytest.mark.parametrize("key", [run for run in RUNS if run[1] == "hyperformer"], ids=lambda run: "-".join(run))
def test_the_hypernetwork_has_an_embedding_per_encoder_and_decoder_block(runs, key):
    """Hyperformer++ generates the adapters of every block of both stacks: one layer embedding each (adapters and
    PEFT number the decoder's blocks after the encoder's)."""
    model, name = runs[key].model, runs[key].meta.adapter_name
    hypernet = find_hypernet(model, "default") if key[2] == "peft" else model.base_model.shared_parameters[name]
    assert num_blocks(model.config) == 4 and hypernet.layer_embeddings.num_embeddings == 4


@pytest.mark.parametrize("key", RUNS, ids=RUN_IDS)
def test_the_saved_folder_serves_both_tasks_through_text2text_pipelines(runs, tokenizers, key):
    folder, tokenizer = str(runs[key].adapter_dir), tokenizers[key[0]]
    greedy = dict(max_new_tokens=5, num_beams=1, do_sample=False)
    model = from_pretrained(folder)
    expected = answers_per_task(model, tokenizer)
    # the tasks' adapters differ, so routing matters: read from the first step's logits, because the tiny model's
    # greedy text can come out the same for both tasks (it did in one full `make test` run, in no run of this file)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    start = torch.full((len(PROMPTS), 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        first = [None, None]
        for i, task in enumerate(TASKS):
            with task_context(task):
                first[i] = model(**batch, decoder_input_ids=start).logits
    assert not torch.allclose(first[0], first[1])
    for task in TASKS:  # generate(..., task_ids=...) routes as the task context does
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=5, do_sample=False, task_ids=task)
        assert tokenizer.batch_decode(out, skip_special_tokens=True) == expected[task]

    def texts(outputs):
        return [out["generated_text"] for out in outputs]

    ours = kit.pipeline(model=folder, task_ids=TASKS[0])
    theirs = transformers.pipeline("text2text-generation", model=folder, task_ids=TASKS[0])
    for generator in (ours, theirs):
        assert isinstance(generator, transformers.Text2TextGenerationPipeline)
        assert texts(generator(PROMPTS, **greedy)) == expected[TASKS[0]]  # the pipeline's task
        assert texts(generator(PROMPTS, task_ids=TASKS[1], **greedy)) == expected[TASKS[1]]  # per call
    unset = kit.pipeline("text2text-generation", model=folder)
    with pytest.raises(AdapterKitError, match=r"`task_ids`=None is not valid: a task for this call or for the pipe"):
        unset(PROMPTS[0], **greedy)
    assert texts(unset(PROMPTS[:1], task_ids=1, **greedy)) == expected[TASKS[1]][:1]
    tasks = [TASKS[1], 0, TASKS[1], 0]  # one task per input: generated a task at a time, answered in input order
    want = [expected[TASKS[1]][0], expected[TASKS[0]][1], expected[TASKS[1]][2], expected[TASKS[0]][3]]
    assert texts(unset(PROMPTS, task_ids=tasks, **greedy)) == want
    with pytest.raises(AdapterKitError, match=r"`task_ids`='topic' is not valid: a name or an index of"):
        kit.pipeline(model=folder, task_ids="topic")


# -- cards and the Hub -------------------------------------------------------------------------------------------------
def test_the_cards_are_text2text_cards_and_their_blocks_run(runs, tiny_seq2seq_dirs, tmp_path):
    folder = runs[("t5", "hyperformer", "adapters")].adapter_dir
    text = (folder / "README.md").read_text()
    assert "pipeline_tag: text2text-generation" in text and "AutoModelForSeq2SeqLM" in text
    assert "task_ids='tweets-polarity'" in text and "'tweets-polarity sentence: What a lovely flight" in text
    assert text.count("base model zero-shot") == 4  # accuracy and perplexity of each task
    (tmp_path / "multi").mkdir()
    kit_out, library_out = run_blocks(text, tmp_path / "multi")
    assert ast.literal_eval(kit_out)[0]["generated_text"].strip() == library_out.strip()
    one = train(
        "lora", pairs_file(tmp_path), str(tmp_path / "one"), backend="peft", task_type="seq2seq-lm",
        model_name_or_path=tiny_seq2seq_dirs["bart"], max_steps=2, **QUICK,
    )  # fmt: skip
    text = (one.adapter_dir / "README.md").read_text()
    assert "pipeline_tag: text2text-generation" in text and "task_ids" not in text
    assert "labels | none: free text, generated" in text
    (tmp_path / "one-card").mkdir()
    kit_out, library_out = run_blocks(text, tmp_path / "one-card")
    assert ast.literal_eval(kit_out)[0]["generated_text"].strip() == library_out.strip()


def test_hub_round_trip_serves_both_tasks(runs, tokenizers, hub):
    result = runs[("t5", "hyperformer", "peft")]
    repo = "kit-tests/hyperformer-t5"
    kit.push_to_hub(result.adapter_dir, repo, token=hub.token)
    assert "pipeline_tag: text2text-generation" in hub.files(repo)["README.md"].decode()
    expected = answers_per_task(from_pretrained(result.adapter_dir), tokenizers["t5"])
    greedy = dict(max_new_tokens=5, num_beams=1, do_sample=False)
    for task in TASKS:
        for generator in (kit.pipeline, transformers.pipeline):
            outputs = generator("text2text-generation", model=repo, task_ids=task)(PROMPTS, **greedy)
            assert [out["generated_text"] for out in outputs] == expected[task]


# -- refused before anything is written -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"method": "head"}, r"`method`='head' is not valid: with task_type='seq2seq-lm' one of \[.*'lora'"),
        (
            {"model_name_or_path": "BERT"},
            r"is not valid: an encoder-decoder \(T5, mT5, BART, mBART, ...\) with task_t",
        ),
        ({"task": "tweets-ner"}, r"`task`='tweets-ner' is not valid: .*token classification"),
        ({"metric_for_best_model": "accuracy"}, r"`metric_for_best_model`='accuracy' is not valid: 'loss'"),
        ({"tasks": TASKS}, r"`method`='lora' is not valid: a multi-task method for `tasks`"),
        ({"task_type": "seq2seq"}, r"`task_type`='seq2seq' is not valid: .*'seq2seq-lm' \(or 'SEQ_2_SEQ_LM'\)"),
        (
            {"model_name_or_path": None},
            r"(?s)`model_name_or_path`='google-t5/t5-base' could not be loaded .* no encoder-d",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    tiny_seq2seq_dirs, tiny_model_dirs, tmp_path, monkeypatch, changes, match
):
    out = tmp_path / "run"
    kwargs = {"task_type": "seq2seq-lm", "model_name_or_path": tiny_seq2seq_dirs["t5"], "method": "lora", **changes}
    if kwargs["model_name_or_path"] == "BERT":
        kwargs["model_name_or_path"] = tiny_model_dirs["bert"]
    if kwargs["model_name_or_path"] is None:  # the default, T5-base from the Hub, which is offline here
        del kwargs["model_name_or_path"]
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # refused at once, not after retries
    if "task" not in kwargs:
        kwargs.update(task="tweets-polarity", max_train_samples=8, max_eval_samples=4)
    with pytest.raises(AdapterKitError, match=match):
        train(output_dir=str(out), max_steps=1, **kwargs, **QUICK)
    assert not out.exists()


def test_the_t5_recipe_runs_from_the_command_line(tiny_seq2seq_dirs, tmp_path):
    """The recipe as a GPU user runs it, with the tiny T5 standing in for T5-base and a few steps."""
    from hf_adapter_kit.commands.cli import main

    out = tmp_path / "recipe"
    argv = ["train", "--config", "hyperformer-t5", "--model_name_or_path", tiny_seq2seq_dirs["t5"]]
    argv += ["--output_dir", str(out), "--max_steps", "2", "--max_train_samples", "16", "--max_eval_samples", "4"]
    assert main([*argv, "--disable_tqdm", "true"]) == 0
    meta = json.loads((out / "adapter" / "hf_adapter_kit.json").read_text())
    assert (
        meta["kind"] == "seq2seq-lm"
        and meta["method"] == "hyperformer"
        and [t["name"] for t in meta["tasks"]] == TASKS
    )
