"""Serving multi-task adapters: pipelines per task, per call and per input, token classification, one shared model,
``MultiTaskModel`` as a ``PreTrainedModel`` (inputs, device, dtype, save / push / load), and new Hyperformer++ tasks
served without a reload. Both multi-task methods, both backends, on a tiny random BERT."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

import hf_adapter_kit as kit
from hf_adapter_kit import AdapterKitError, get_config
from hf_adapter_kit.folders import AdapterMeta, attach_meta
from hf_adapter_kit.multitask import MultiTaskModel, TaskHead, TaskModel, attach_encoder
from hf_adapter_kit.serving.pipelines import MultiTaskTextClassificationPipeline
from tests.conftest import perturb
from tests.test_token_classification import write_conll


HEADS = {
    "sentiment": TaskHead("sequence", 2, ("negative", "positive")),
    "topic": TaskHead("sequence", 3, ("sport", "politics", "travel")),
    "ner": TaskHead("token", 3, ("O", "B-LOC", "I-LOC")),
}
CASES = [("parallel", "adapters"), ("parallel", "peft"), ("hyperformer", "adapters"), ("hyperformer", "peft")]
SPLITS = [("train", 96, 0), ("validation", 16, 1), ("test", 32, 2)]  # toy CoNLL files (test_token_classification)
TEXTS = ["fly to paris today", "the crew was awful", "rome beat milan", "ok"]


def _model(folder: str, method: str, backend: str) -> MultiTaskModel:
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(folder)
    options = {"reduction_factor": 4} | ({"projected_dim": 4} if method == "hyperformer" else {})
    config = get_config(method, backend=backend, tasks=list(HEADS), **options)
    meta = AdapterMeta.for_model(
        encoder,
        method=method,
        backend=backend,
        adapter_name="mt",
        base_model=folder,
        label_names=[],
        task=", ".join(HEADS),
        heads=[{"name": n, "kind": h.kind, "label_names": list(h.label_names)} for n, h in HEADS.items()],
    )
    model = MultiTaskModel(attach_encoder(encoder, config, backend, "mt"), HEADS)
    perturb(model, 0.3)  # adapters start as the identity: move them so that the tasks differ
    with torch.no_grad():
        model.heads["ner"].bias[0] -= 2.0  # random heads say "O" to every token; make entities likely
    attach_meta(model, meta)
    return model.eval()


@pytest.fixture(params=CASES, ids=[f"{m}-{b}" for m, b in CASES])
def served(request, tiny_model_dirs, tmp_path):
    folder = tiny_model_dirs["bert"]
    model = _model(folder, *request.param)
    saved = model.save_pretrained(tmp_path / "adapter")
    return model, saved, AutoTokenizer.from_pretrained(folder)


def _expected(model, tokenizer, text, task):
    """The label and score a pipeline should give: softmax over the task head's logits, computed by hand."""
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch, task_ids=task).logits[task][0]
    probs = logits.softmax(-1)
    return model.labels_of(task)[int(probs.argmax())], float(probs.max())


def _same(predictions, expected):
    assert [p["label"] for p in predictions] == [label for label, _ in expected]
    assert [p["score"] for p in predictions] == pytest.approx([score for _, score in expected], abs=1e-5)


def test_text_pipeline_routes_by_pipeline_by_call_and_by_input(served):
    model, folder, tokenizer = served
    clf = kit.pipeline("text-classification", model=str(folder), task_ids="sentiment")
    assert isinstance(clf, MultiTaskTextClassificationPipeline)
    loaded = clf.model
    _same(clf(TEXTS), [_expected(loaded, tokenizer, t, "sentiment") for t in TEXTS])
    _same(clf(TEXTS, task_ids="topic"), [_expected(loaded, tokenizer, t, "topic") for t in TEXTS])
    tasks = ["topic", "sentiment", "sentiment", "topic"]
    for batch_size in (1, 3):  # a batch of 3 mixes tasks of different label counts
        _same(
            clf(TEXTS, task_ids=tasks, batch_size=batch_size),
            [_expected(loaded, tokenizer, t, k) for t, k in zip(TEXTS, tasks, strict=True)],
        )
    everything = clf(TEXTS[:1], task_ids=["topic"], top_k=None)[0]
    assert sorted(p["label"] for p in everything) == ["politics", "sport", "travel"]
    assert sum(p["score"] for p in everything) == pytest.approx(1.0)
    # the loaded model is the saved one: same answers from the model in memory
    _same(clf(TEXTS[:2]), [_expected(model, tokenizer, t, "sentiment") for t in TEXTS[:2]])


def test_transformers_pipeline_serves_the_folder_and_the_model(served):
    model, folder, _ = served
    tasks = ["sentiment", "topic", "topic", "sentiment"]
    ours = kit.pipeline("text-classification", model=str(folder))(TEXTS, task_ids=tasks)
    assert transformers.pipeline("text-classification", model=str(folder))(TEXTS, task_ids=tasks) == ours
    assert transformers.pipeline("text-classification", model=model, task_ids="topic")(TEXTS[:1])[0]["label"] in (
        HEADS["topic"].label_names
    )


def test_token_pipeline_gives_entities_with_the_task_labels(served):
    model, folder, tokenizer = served
    ner = kit.pipeline("token-classification", model=str(folder))  # the one token task is picked
    tokens = ner(TEXTS[0])
    assert tokens and {t["entity"] for t in tokens} <= {"B-LOC", "I-LOC"}
    batch = tokenizer([TEXTS[0]], return_tensors="pt")
    with torch.no_grad():
        probs = ner.model(**batch).logits[0].softmax(-1)
    by_index = {t["index"]: t for t in tokens}
    for index, row in enumerate(probs):
        label = HEADS["ner"].label_names[int(row.argmax())]
        if label != "O" and 0 < index < len(row) - 1:  # the pipeline drops O and the special tokens
            assert by_index[index]["entity"] == label and by_index[index]["score"] == pytest.approx(float(row.max()))
    assert len(tokens) == sum(
        HEADS["ner"].label_names[int(r.argmax())] != "O" for r in probs[1:-1]
    )  # every non-O token, nothing else
    grouped = transformers.pipeline("ner", model=str(folder), aggregation_strategy="simple")(TEXTS[0])
    assert grouped == kit.pipeline("ner", model=model, task_ids="ner", aggregation_strategy="simple")(TEXTS[0])
    assert grouped and all(
        g["entity_group"] == "LOC" and TEXTS[0][g["start"] : g["end"]] == g["word"] for g in grouped
    )


def test_pipelines_for_several_tasks_share_one_loaded_model(served):
    model, _, _ = served
    before = {id(p) for p in model.parameters()}
    sentiment = kit.pipeline("text-classification", model=model, task_ids="sentiment")
    topic = kit.pipeline("text-classification", model=model, task_ids="topic")
    ner = kit.pipeline("token-classification", model=model, task_ids="ner")
    assert sentiment.model is model and topic.model is model and ner.model.model is model
    assert {id(p) for p in model.parameters()} == before  # nothing copied, nothing added
    assert sentiment("ok")[0]["label"] in HEADS["sentiment"].label_names
    assert topic("ok")[0]["label"] in HEADS["topic"].label_names


def test_multitask_model_takes_every_input_of_the_base_model(served):
    model, _, tokenizer = served
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert "token_type_ids" in batch
    tasks = ["sentiment", "ner", "topic", "sentiment"]
    with torch.no_grad():
        plain = model(**batch, task_ids=tasks)
        positions = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"])
        explicit = model(**batch, position_ids=positions, task_ids=tasks)
        embeds = model.encoder.get_input_embeddings()(batch["input_ids"])
        by_embeds = model(
            inputs_embeds=embeds,
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            task_ids=tasks,
        )
        other_segments = model(
            **(batch | {"token_type_ids": torch.ones_like(batch["token_type_ids"])}), task_ids=tasks
        )
        with_hidden = model(**batch, task_ids=tasks, output_hidden_states=True)
    for out in (explicit, by_embeds):
        for task in plain.logits:
            torch.testing.assert_close(out.logits[task], plain.logits[task], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(other_segments.logits["sentiment"], plain.logits["sentiment"])  # token_type_ids used
    assert len(with_hidden.hidden_states) == model.config.num_hidden_layers + 1
    assert model.device == torch.device("cpu") and model.dtype == torch.float32 and model.config.hidden_size == 32


def test_task_model_is_a_standard_classification_model(served):
    model, _, tokenizer = served
    batch = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    topic = model.task_model("topic")
    assert isinstance(topic, TaskModel) and topic.config.id2label == dict(enumerate(HEADS["topic"].label_names))
    assert model.config.id2label != topic.config.id2label  # the shared config is left alone
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        out = topic(**batch, labels=labels)
        direct = model(**batch, task_ids="topic").logits["topic"]
    torch.testing.assert_close(out.logits, direct)
    assert out.loss is not None and float(out.loss) == pytest.approx(
        float(torch.nn.functional.cross_entropy(direct, labels)), rel=1e-5
    )
    assert model.task_model("ner")(**batch).logits.shape == (*batch["input_ids"].shape, 3)


def test_save_push_and_load_like_a_pretrained_model(served, hub, tmp_path):
    model, folder, tokenizer = served
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    tasks = ["ner", "topic", "sentiment", "ner"]
    with torch.no_grad():
        expected = model(**batch, task_ids=tasks).logits
    loaded = MultiTaskModel.from_pretrained(folder)
    model.push_to_hub("kit-tests/multitask", token=hub.token)
    pulled = MultiTaskModel.from_pretrained("kit-tests/multitask", token=hub.token)
    for other in (loaded, pulled):
        assert other.tasks == model.tasks and other.labels_of("topic") == HEADS["topic"].label_names
        with torch.no_grad():
            got = other(**batch, task_ids=tasks).logits
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_one_task_folders_are_refused_by_multitask_from_pretrained(tiny_model_dirs, toy_files, tmp_path):
    result = kit.train(
        "pfeiffer",
        "mine",
        str(tmp_path / "run"),
        model_name_or_path=tiny_model_dirs["bert"],
        **toy_files,
        max_steps=1,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        report_to="none",
    )
    with pytest.raises(AdapterKitError, match=r"`repo_id_or_path`=.*multi-task"):
        MultiTaskModel.from_pretrained(result.adapter_dir)
    with pytest.raises(AdapterKitError, match=r"`task_ids`='a'.*only a multi-task"):
        kit.pipeline("text-classification", model=result.adapter_dir, task_ids="a")
    with pytest.raises(AdapterKitError, match=r"`task`='token-classification'.*'text-classification'"):
        kit.pipeline("token-classification", model=result.adapter_dir)


@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_a_token_adapter_is_served_by_both_token_pipelines(tiny_model_dirs, tmp_path, backend):
    ner_files = {f"{split}_file": write_conll(tmp_path / f"{split}.conll", n, seed) for split, n, seed in SPLITS}
    result = kit.train(
        "pfeiffer",
        "toy-ner",
        str(tmp_path / "run"),
        backend=backend,
        model_name_or_path=tiny_model_dirs["bert"],
        num_train_epochs=1,
        per_device_train_batch_size=16,
        report_to="none",
        disable_tqdm=True,
        **ner_files,
    )
    folder = str(result.adapter_dir)
    sentence = "delta lost my bag in los angeles"
    with torch.no_grad():
        head = result.model.eval()(**result.tokenizer([sentence], return_tensors="pt")).logits[0]
    tags = result.meta.label_names
    predicted = [tags[i] for i in head.argmax(-1)[1:-1].tolist()]  # the pipeline drops the special tokens
    ours = kit.pipeline("token-classification", model=folder)(sentence)
    assert [t["entity"] for t in ours] == [tag for tag in predicted if tag != "O"]
    assert transformers.pipeline("ner", model=folder)(sentence) == ours
    words = kit.pipeline("ner", model=folder, aggregation_strategy="first")(sentence)
    assert words == transformers.pipeline("ner", model=folder, aggregation_strategy="first")(sentence)
    assert all(sentence[w["start"] : w["end"]] == w["word"] for w in words)
    with pytest.raises(AdapterKitError, match=r"`task`='text-classification'.*'token-classification'"):
        kit.pipeline("text-classification", model=folder)


def test_bad_task_ids_are_refused_before_anything_runs(served):
    model, _, _ = served
    clf = kit.pipeline("text-classification", model=model)  # two sequence tasks: none picked by default
    with pytest.raises(AdapterKitError, match=r"`task_ids`=None.*\['sentiment', 'topic'\]"):
        clf("ok")
    with pytest.raises(AdapterKitError, match=r"`task_ids`='ner'.*sequence tasks"):
        clf("ok", task_ids="ner")  # a token task has no place in text classification
    with pytest.raises(AdapterKitError, match=r"`task_ids`='weather'"):
        kit.pipeline("text-classification", model=model, task_ids="weather")
    with pytest.raises(AdapterKitError, match=r"`task_ids`=\['topic'\].*2 inputs"):
        clf(["a", "b"], task_ids=["topic"])
    with pytest.raises(AdapterKitError, match=r"`task_ids`='sentiment'.*token tasks"):
        kit.pipeline("token-classification", model=model, task_ids="sentiment")


@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_a_task_added_to_hyperformer_is_served_without_reloading(tiny_model_dirs, tmp_path, backend):
    model = _model(tiny_model_dirs["bert"], "hyperformer", backend)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["bert"])
    clf = kit.pipeline("text-classification", model=model, task_ids="sentiment")
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch, task_ids=["sentiment", "topic", "ner", "topic"]).logits
    trainable = model.add_task("spam", TaskHead("sequence", 2, ("ham", "spam")))
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in trainable}
    assert len(trainable) == 3  # the task embedding, the head's weight and bias
    answer = clf(TEXTS, task_ids=["spam", "sentiment", "spam", "topic"])
    assert [a["label"] in ("ham", "spam") for a in answer] == [True, False, True, False]
    with torch.no_grad():
        after = model(**batch, task_ids=["sentiment", "topic", "ner", "topic"]).logits
        spam = model(**batch, task_ids="spam").logits["spam"]
    for k in before:  # the other tasks are untouched (their weights may come from another fill of the serving bank,
        torch.testing.assert_close(after[k], before[k], rtol=1e-5, atol=1e-5)  # generated with other rows: ulps)
    reloaded = MultiTaskModel.from_pretrained(model.save_pretrained(tmp_path / "grown"))
    assert reloaded.tasks == [*HEADS, "spam"] and reloaded.labels_of("spam") == ("ham", "spam")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch, task_ids="spam").logits["spam"], spam)
    with pytest.raises(AdapterKitError, match=r"`name`|`task`"):
        model.add_task("spam", TaskHead("sequence", 2))  # the name is taken: refused, nothing changed
    assert model.tasks == [*HEADS, "spam"]


@pytest.mark.slow
def test_real_multitask_adapter_is_served_by_both_pipelines(tmp_path):
    """On the embedded MiniLM and the real tweets: one two-task adapter, served per input by both pipelines."""
    tasks = ["tweets-polarity", "tweets-subjectivity"]
    result = kit.train(
        "parallel",
        "unused",
        str(tmp_path / "run"),
        tasks=tasks,
        max_train_samples=2400,
        max_eval_samples=200,
        max_steps=150,
        max_length=64,
        lr_scheduler_type="constant_with_warmup",
        report_to="none",
        disable_tqdm=True,
    )
    data = {task: kit.load_task(task) for task in tasks}
    test = {task: data[task].splits["test"].select(range(96)) for task in tasks}
    pairs = [(task, row) for i in range(96) for task in tasks for row in [test[task][i]]]  # the tasks alternate
    texts, routed = [row["text"] for _, row in pairs], [task for task, _ in pairs]
    expected = [data[task].label_names[row["label"]] for task, row in pairs]
    clf = kit.pipeline("text-classification", model=str(result.adapter_dir))
    answers = clf(texts, task_ids=routed, batch_size=32)  # every batch mixes the two tasks
    assert answers == transformers.pipeline("text-classification", model=str(result.adapter_dir))(
        texts, task_ids=routed, batch_size=32
    )
    for task in tasks:
        rows = [i for i, t in enumerate(routed) if t == task]
        assert {answers[i]["label"] for i in rows} <= set(data[task].label_names)
        accuracy = sum(answers[i]["label"] == expected[i] for i in rows) / len(rows)
        majority = max(sum(expected[i] == name for i in rows) for name in data[task].label_names) / len(rows)
        # measured 0.896 (majority 0.69) and 0.677 (majority 0.57) with this budget on 2026-12-01
        assert accuracy >= majority + 0.05, (task, accuracy, majority)
