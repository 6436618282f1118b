"""Tasks: the embedded corpus and its fixed splits, local files, and every data error."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from hf_adapter_kit import AdapterKitError, list_tasks, load_task
from hf_adapter_kit.data.corpus import read_tweets


def test_corpus_is_the_documented_one():
    rows = read_tweets()
    assert len(rows) == 38_158
    assert Counter(sentiment for sentiment, _ in rows) == {"negative": 16_186, "neutral": 15_018, "positive": 6_954}


@pytest.mark.parametrize(
    ("task", "labels", "train"),
    [
        ("tweets-polarity", ["negative", "positive"], 20_140),
        ("tweets-subjectivity", ["objective", "subjective"], 35_158),
        ("tweets-3way", ["negative", "neutral", "positive"], 35_158),
    ],
)
def test_embedded_tasks(task, labels, train):
    assert task in list_tasks()
    data = load_task(task)
    assert data.label_names == labels and data.num_labels == len(labels)
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": train, "validation": 1000, "test": 2000}
    for split in data.splits.values():
        assert set(split["label"]) == set(range(len(labels)))
        assert all(isinstance(t, str) and t for t in split["text"][:50])


def test_splits_are_fixed_disjoint_and_seeded():
    first, again = load_task("tweets-polarity"), load_task("tweets-polarity")
    assert first.splits["test"]["text"] == again.splits["test"]["text"]
    # The splits partition the task's rows: together they are exactly the corpus rows, each once.
    expected = Counter(text for sentiment, text in read_tweets() if sentiment in {"negative", "positive"})
    together = Counter(text for split in first.splits.values() for text in split["text"])
    assert together == expected and sum(together.values()) == 23_140
    other = load_task("tweets-polarity", seed=7)
    assert other.splits["test"]["text"] != first.splits["test"]["text"]


def test_caps_do_not_move_the_test_split():
    full = load_task("tweets-3way")
    capped = load_task("tweets-3way", max_train_samples=100, max_eval_samples=50)
    assert capped.splits["train"].num_rows == 100 and capped.splits["test"].num_rows == 50
    assert capped.splits["test"]["text"] == full.splits["test"]["text"][:50]


def _frame(n=12, **extra):
    return pd.DataFrame(
        {"body": [f"text {i}" for i in range(n)], "stars": ["good" if i % 2 else "bad" for i in range(n)], **extra}
    )


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "json", "parquet"])
def test_local_files_with_string_labels_and_pairs(tmp_path, suffix):
    frame = _frame(title=[f"title {i}" for i in range(12)])
    path = tmp_path / f"data.{suffix}"
    {
        "csv": lambda: frame.to_csv(path, index=False),
        "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        "json": lambda: path.write_text(json.dumps(frame.to_dict(orient="records"))),
        "parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    data = load_task("mine", train_file=str(path), text_column="body", text_pair_column="title", label_column="stars")
    assert data.label_names == ["bad", "good"]
    assert {k: v.num_rows for k, v in data.splits.items()} == {"train": 6, "validation": 3, "test": 3}
    row = data.splits["train"][0]
    assert set(row) == {"text", "text_pair", "label"} and row["text_pair"].startswith("title")
    # Every row survives the carving exactly once.
    texts = sorted(t for split in data.splits.values() for t in split["text"])
    assert texts == sorted(frame["body"])


def test_task_may_be_a_file_and_integer_labels(tmp_path):
    path = tmp_path / "ints.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": [i % 3 for i in range(20)]}).to_csv(path, index=False)
    data = load_task(str(path))
    assert data.label_names == ["0", "1", "2"]


def _bad(tmp_path, name, frame=None, text=None):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    else:
        frame.to_csv(path, index=False) if name.endswith(".csv") else frame.to_json(path, orient="records", lines=True)
    return str(path)


def test_data_errors(tmp_path):
    good = _bad(tmp_path, "good.csv", _frame())
    cases = [
        (dict(task="nope-not-a-task"), r"`task`='nope-not-a-task'.*tweets-polarity"),
        (dict(train_file=str(tmp_path / "missing.csv")), r"`train_file`=.*missing.csv.*does not exist"),
        (dict(train_file=_bad(tmp_path, "data.xlsx", text="x")), r"unsupported extension '.xlsx'"),
        (dict(train_file=good), r"`text_column`='text'.*\['body', 'stars'\]"),
        (dict(train_file=good, text_column="body"), r"`label_column`='label'"),
        (
            dict(train_file=good, text_column="body", label_column="stars", text_pair_column="t2"),
            r"`text_pair_column`",
        ),
        (
            dict(
                train_file=_bad(tmp_path, "empty.csv", text="body,stars\n"), text_column="body", label_column="stars"
            ),
            r"empty \(0 rows\)",
        ),
        (
            dict(
                train_file=_bad(tmp_path, "nums.jsonl", pd.DataFrame({"body": [1, 2], "stars": ["a", "b"]})),
                text_column="body",
                label_column="stars",
            ),
            r"must hold strings.*row 0",
        ),
        (
            dict(
                train_file=good,
                test_file=_bad(tmp_path, "odd.csv", pd.DataFrame({"body": ["x"], "stars": ["meh"]})),
                text_column="body",
                label_column="stars",
            ),
            r"'meh'.*not in the label set.*\['bad', 'good'\]",
        ),
        (
            dict(
                train_file=_bad(tmp_path, "nan.csv", pd.DataFrame({"text": ["a", "b"], "label": [0.0, float("nan")]}))
            ),
            r"nan.*regression is not supported",
        ),
        (
            dict(train_file=_bad(tmp_path, "neg.csv", pd.DataFrame({"text": ["a", "b"], "label": [0, -1]}))),
            r"-1.*ids start at 0",
        ),
        (
            dict(train_file=_bad(tmp_path, "tiny.csv", pd.DataFrame({"text": ["a"], "label": [0]}))),
            r"too few to carve",
        ),
        (dict(task="tweets-polarity", max_train_samples=0), r"`max_train_samples`=0"),
        (dict(task="tweets-polarity", max_eval_samples=-5), r"`max_eval_samples`=-5"),
    ]
    for kwargs, match in cases:
        kwargs = {"task": "mine", **kwargs}
        with pytest.raises(AdapterKitError, match=match) as info:
            load_task(kwargs.pop("task"), **kwargs)
        assert isinstance(info.value, ValueError)
