"""Tasks: the embedded tweet tasks, local files and Hub datasets, as checked train/validation/test splits.

Every source ends as a :class:`TaskData` whose ``splits`` is an in-memory ``datasets.DatasetDict`` with exactly the
splits ``train``, ``validation`` and ``test`` and the columns ``text`` (str), optionally ``text_pair`` (str), and
``label`` (int, an index into ``label_names``). Nothing is written to disk: files are read with the standard library,
pandas or pyarrow, never through ``load_dataset`` and its cache.

Splits are a seeded permutation (``numpy.random.default_rng(seed)``) of the rows in file order: test takes the first
``test_size`` rows, validation the next ``validation_size``, train the rest. The embedded tweet tasks share one such
split of the corpus's distinct texts (see ``_tweet_task``), so that multi-task runs never train on a test tweet of
another task. A file or Hub dataset without a
validation or test split gets it carved from its train split the same way, each carved split capped at
``rows // (2 * number of carved splits)`` so that train keeps at least half of its rows. ``max_train_samples`` and
``max_eval_samples`` cut the splits afterwards, so that the test set for a seed never depends on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import numpy as np
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled, RepositoryNotFoundError

from ..errors import AdapterKitError, invalid
from .corpus import CORPUS_SOURCE, read_tweets
from .files import READERS, Table, read_file


SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class _TweetTask:
    label_names: tuple[str, ...]
    label_of: dict[str, str]  # corpus sentiment -> label name; sentiments not listed are left out
    description: str


TWEET_TASKS = {
    "tweets-polarity": _TweetTask(
        ("negative", "positive"),
        {"negative": "negative", "positive": "positive"},
        "Tweets: negative vs positive sentiment (neutral tweets left out)",
    ),
    "tweets-subjectivity": _TweetTask(
        ("objective", "subjective"),
        {"neutral": "objective", "negative": "subjective", "positive": "subjective"},
        "Tweets: neutral (objective) vs negative or positive (subjective)",
    ),
    "tweets-3way": _TweetTask(
        ("negative", "neutral", "positive"),
        {"negative": "negative", "neutral": "neutral", "positive": "positive"},
        "Tweets: negative / neutral / positive sentiment",
    ),
}
POLAR_SENTIMENTS = ("negative", "positive")  # tweets-polarity's sentiments: the split cuts are counted on them
DEFAULT_COLUMNS: dict[str, str | None] = {"text_column": "text", "text_pair_column": None, "label_column": "label"}
_AMAZON = {"text_column": "content", "text_pair_column": "title", "label_column": "label"}
# Column names of Hub datasets, used when the caller left all three column arguments at their defaults.
HUB_PRESETS: dict[str, dict[str, str | None]] = {
    "amazon_polarity": _AMAZON,
    "fancyzhx/amazon_polarity": _AMAZON,
    "rotten_tomatoes": dict(DEFAULT_COLUMNS),
    "cornell-movie-review-data/rotten_tomatoes": dict(DEFAULT_COLUMNS),
}
HUB_PROBE_TIMEOUT_S = 10.0


@dataclass
class TaskData:
    """A classification task: splits ``train``/``validation``/``test`` and the label names (index = label id)."""

    name: str
    splits: datasets.DatasetDict
    label_names: list[str]
    description: str = ""
    source: str = ""

    @property
    def num_labels(self) -> int:
        """How many classes."""
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        """Label id -> label name, as model configs want it."""
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        """Label name -> label id."""
        return {name: i for i, name in enumerate(self.label_names)}


def list_tasks() -> list[str]:
    """The embedded tasks, available offline."""
    return sorted(TWEET_TASKS)


def load_task(
    task: str,
    *,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
    validation_size: int = 1000,
    test_size: int = 2000,
) -> TaskData:
    """Load a task with fixed seeded splits; see the module docstring for the split scheme.

    Resolution: ``train_file`` given -> local files (``task`` is only the name); ``task`` an embedded task (see
    :func:`list_tasks`); ``task`` an existing local file -> as ``train_file=task``; otherwise a Hub dataset id, loaded
    with ``datasets.load_dataset(task)`` (needs network, or the local cache with ``HF_DATASETS_OFFLINE=1``).
    Local files may be csv, json (a list of records or a dict of columns), jsonl or parquet. Labels are strings
    (names: the sorted distinct strings of train) or non-negative integers (names: the Hub dataset's ClassLabel names,
    else ``"0"`` .. ``"max"``). A Hub split whose labels are all -1 (unlabeled, as GLUE test sets) counts as missing.
    Every bad input raises :class:`AdapterKitError` before anything is loaded further.
    """
    _check_options(task, train_file, validation_file, test_file, max_train_samples, max_eval_samples, seed)
    sizes = {"test": test_size, "validation": validation_size}
    for argument, value in (("validation_size", validation_size), ("test_size", test_size)):
        _check_positive(argument, value)
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    _check_column_arguments(columns)
    caps = {"train": max_train_samples, "validation": max_eval_samples, "test": max_eval_samples}
    eval_files = {"validation": validation_file, "test": test_file}
    if train_file is not None:
        return _file_task(task, ("train_file", train_file), eval_files, columns, seed, sizes, caps)
    if task in TWEET_TASKS:
        given = [f"`{split}_file`={path!r}" for split, path in eval_files.items() if path is not None]
        given += [f"`{arg}`={value!r}" for arg, value in columns.items() if value != DEFAULT_COLUMNS[arg]]
        if given:
            raise AdapterKitError(
                f"{', '.join(given)} does not apply to the embedded task {task!r}, whose splits and columns are "
                "fixed; these options are for local files (`train_file`) and Hub datasets."
            )
        return _tweet_task(task, seed, sizes, caps)
    path = Path(task)
    if path.is_file():
        return _file_task(path.stem, ("task", task), eval_files, columns, seed, sizes, caps)
    if path.is_dir():
        raise invalid(
            "task", task, "a folder is not a task; pass its files as `train_file`/`validation_file`/`test_file`."
        )
    if path.suffix.lower() in READERS:
        raise AdapterKitError(f"`task`={task!r} looks like a local file, but it does not exist or is not a file.")
    for split, file in eval_files.items():
        if file is not None:
            raise AdapterKitError(
                f"`{split}_file`={file!r} needs local training data: pass `train_file` as well "
                f"(`task`={task!r} is not a local file)."
            )
    return _hub_task(task, columns, seed, sizes, caps)


# -- argument checks -------------------------------------------------------------------------------------------------


def _check_options(
    task: Any, train_file: Any, validation_file: Any, test_file: Any, max_train: Any, max_eval: Any, seed: Any
) -> None:
    if not isinstance(task, str) or not task.strip():
        raise invalid(
            "task", task, f"a non-empty string: an embedded task ({', '.join(list_tasks())}), a file or a Hub id."
        )
    for argument, value in (
        ("train_file", train_file),
        ("validation_file", validation_file),
        ("test_file", test_file),
    ):
        if value is not None and not (isinstance(value, str | Path) and str(value).strip()):
            raise invalid(argument, value, "a path to a .csv, .json, .jsonl or .parquet file, or None.")
    for argument, value in (("max_train_samples", max_train), ("max_eval_samples", max_eval)):
        if value is not None:
            _check_positive(argument, value, "or None")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise invalid("seed", seed, "a non-negative integer.")


def _check_positive(argument: str, value: Any, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(argument, value, f"a positive integer{' ' + extra if extra else ''}.")


def _check_column_arguments(columns: dict[str, str | None]) -> None:
    for argument, value in columns.items():
        if value is None and argument == "text_pair_column":
            continue
        if not isinstance(value, str) or not value:
            allowed = "a column name, or None." if argument == "text_pair_column" else "a column name (non-empty)."
            raise invalid(argument, value, allowed)
    if columns["text_pair_column"] in (columns["text_column"], columns["label_column"]):
        raise invalid("text_pair_column", columns["text_pair_column"], "a column other than the text and label ones.")
    if columns["text_column"] == columns["label_column"]:
        raise invalid("label_column", columns["label_column"], "a column other than `text_column`.")


# -- embedded tweets -------------------------------------------------------------------------------------------------


def _tweet_task(task: str, seed: int, sizes: dict[str, int], caps: dict[str, int | None]) -> TaskData:
    """The three tweet tasks share one split of the corpus, so no tweet is in one task's training data and in
    another's validation or test data (multi-task runs train on all three).

    Each distinct text counts once (the corpus repeats 915 texts; a repeated text keeps its first copy's sentiment)
    and gets its place in one seeded order of all distinct texts. Test takes the texts before a cut in that order,
    validation those before a second cut, train the rest; the cuts are set so that ``tweets-polarity``, the smallest
    task, has exactly ``test_size`` and ``validation_size`` rows. The other two tasks hold the same tweets plus the
    neutral ones before those cuts, so their validation and test splits are larger.
    """
    spec = TWEET_TASKS[task]
    sentiment_of: dict[str, str] = {}
    for sentiment, text in read_tweets():
        sentiment_of.setdefault(text, sentiment)
    texts = list(sentiment_of)
    position = np.empty(len(texts), dtype=np.int64)
    position[np.random.default_rng(seed).permutation(len(texts))] = np.arange(len(texts))
    polar = sorted(int(position[i]) for i, text in enumerate(texts) if sentiment_of[text] in POLAR_SENTIMENTS)
    if sizes["test"] + sizes["validation"] > len(polar) // 2:
        raise AdapterKitError(
            f"`test_size`={sizes['test']} with `validation_size`={sizes['validation']} is not valid for {task!r}: "
            f"together at most {len(polar) // 2} (half of the {len(polar)} tweets of tweets-polarity, the smallest "
            "task, which the cuts are counted on), so that train keeps at least half."
        )
    test_end, validation_end = polar[sizes["test"]], polar[sizes["test"] + sizes["validation"]]
    ids = {name: i for i, name in enumerate(spec.label_names)}
    rows = sorted(
        (int(position[i]), text, ids[spec.label_of[sentiment_of[text]]])
        for i, text in enumerate(texts)
        if sentiment_of[text] in spec.label_of
    )
    bounds = {"test": (0, test_end), "validation": (test_end, validation_end), "train": (validation_end, len(texts))}
    tables = {
        split: {
            "text": [text for at, text, _ in rows if low <= at < high],
            "label": [label for at, _, label in rows if low <= at < high],
        }
        for split, (low, high) in bounds.items()
    }
    return _task_data(task, tables, list(spec.label_names), caps, spec.description, CORPUS_SOURCE)


def _file_task(
    name: str,
    train: tuple[str, str | Path],
    eval_files: dict[str, str | Path | None],
    columns: dict[str, str | None],
    seed: int,
    sizes: dict[str, int],
    caps: dict[str, int | None],
) -> TaskData:
    files = {"train": train, **{split: (f"{split}_file", path) for split, path in eval_files.items() if path}}
    origins = {split: f"`{argument}`={str(path)!r}" for split, (argument, path) in files.items()}
    tables = {split: read_file(argument, path, columns) for split, (argument, path) in files.items()}
    splits, label_names = _checked(tables, columns, origins, None, seed, sizes)
    source = str(train[1])
    return _task_data(name, splits, label_names, caps, f"Text classification from {Path(source).name}", source)


# -- Hub datasets ----------------------------------------------------------------------------------------------------


def _hub_problem(task: str) -> str | None:
    """Ask the Hub API about ``task`` once, without retries, so that a missing id or no network fails in a moment
    rather than after ``load_dataset``'s retries; ``None`` when loading should go ahead. Skipped offline, where
    ``load_dataset`` reads the local cache."""
    if datasets.config.HF_HUB_OFFLINE:
        return None
    try:
        huggingface_hub.HfApi().dataset_info(task, timeout=HUB_PROBE_TIMEOUT_S)
    except RepositoryNotFoundError:
        return "no such dataset on the Hub (or it is private and no token was given)"
    except HFValidationError:
        return "it is not a valid Hub dataset id"
    except (HfHubHTTPError, OfflineModeIsEnabled):
        return None  # gated, rate-limited, server trouble: let load_dataset decide
    except OSError as err:  # requests' ConnectionError and Timeout
        return f"the Hub could not be reached ({err.__class__.__name__})"
    except Exception:
        return None
    return None


def _hub_error(task: str, reason: str) -> AdapterKitError:
    return AdapterKitError(
        f"`task`={task!r} is not an embedded task ({', '.join(list_tasks())}), not a local file, and could not be "
        f"loaded as a Hub dataset: {reason}. Hub datasets need network (or, with HF_DATASETS_OFFLINE=1, a copy in "
        "the local datasets cache)."
    )


def _hub_task(
    task: str, columns: dict[str, str | None], seed: int, sizes: dict[str, int], caps: dict[str, int | None]
) -> TaskData:
    if columns == DEFAULT_COLUMNS:
        columns = dict(HUB_PRESETS.get(task, columns))
    problem = _hub_problem(task)
    if problem is not None:
        raise _hub_error(task, problem)
    try:
        loaded = datasets.load_dataset(task)
    except Exception as err:  # offline, unknown id, needs a config, gated: all mean the same to the caller
        raise _hub_error(task, f"{err.__class__.__name__}: {str(err)[:300]}") from err
    if "train" not in loaded:
        raise _hub_error(task, f"it has no 'train' split (its splits: {list(loaded)})")
    wanted = [c for c in columns.values() if c is not None]
    label_column = columns["label_column"]
    tables: dict[str, Table] = {}
    presents: dict[str, list[str]] = {}
    for split in SPLITS:
        if split not in loaded:
            continue
        dataset = loaded[split]
        presents[split] = list(dataset.column_names)
        tables[split] = dataset.select_columns([c for c in wanted if c in dataset.column_names]).to_dict()
        labels = tables[split].get(label_column)
        if split != "train" and labels and all(v == -1 for v in labels):
            del tables[split], presents[split]  # unlabeled (e.g. GLUE test sets): carved from train instead
    feature = loaded["train"].features.get(label_column)
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    origins = {split: f"Hub dataset {task!r} split {split!r}" for split in tables}
    splits, label_names = _checked(tables, columns, origins, names, seed, sizes, presents)
    return _task_data(task, splits, label_names, caps, f"Hub dataset {task}", task)


# -- checks, labels, splits ------------------------------------------------------------------------------------------


def _rows(table: Table) -> int:
    return len(next(iter(table.values()), []))


def _checked(
    tables: dict[str, Table],
    columns: dict[str, str | None],
    origins: dict[str, str],
    class_names: list[str] | None,
    seed: int,
    sizes: dict[str, int],
    presents: dict[str, list[str]] | None = None,
) -> tuple[dict[str, Table], list[str]]:
    """Check and rename the columns, encode the labels, carve missing splits: one path for files and Hub data."""
    renamed = {
        split: _rename(table, columns, origins[split], (presents or {}).get(split, list(table)))
        for split, table in tables.items()
    }
    train_labels = [_label_value(v, origins["train"], i) for i, v in enumerate(renamed["train"]["label"])]
    label_names = _label_names(train_labels, origins["train"], class_names)
    for split, table in renamed.items():
        table["label"] = _encode(table["label"], origins[split], label_names, isinstance(train_labels[0], str))
    cap_each = _rows(renamed["train"]) // (2 * max(1, sum(s not in renamed for s in SPLITS)))
    return _carve(renamed, seed, sizes, cap_each, origins["train"]), label_names


def _rename(table: Table, columns: dict[str, str | None], origin: str, present: list[str]) -> Table:
    """Rename to text/text_pair/label after checking that the split has rows and the columns hold what they should."""
    if _rows(table) == 0 and (table or not present):  # a Hub split may lack every wanted column: named below
        raise AdapterKitError(f"The data of {origin} is empty (0 rows): give at least one example.")
    out: Table = {}
    for argument, target in (("text_column", "text"), ("text_pair_column", "text_pair"), ("label_column", "label")):
        column = columns[argument]
        if column is None:
            continue
        if column not in table:
            raise AdapterKitError(f"`{argument}`={column!r} is not a column of {origin}; its columns are {present}.")
        out[target] = list(table[column])
        if target != "label":
            bad = next((i for i, value in enumerate(out[target]) if not isinstance(value, str)), None)
            if bad is not None:
                value = out[target][bad]
                raise AdapterKitError(
                    f"`{argument}`={column!r} must hold strings, but row {bad} (0-based) of {origin} holds "
                    f"{value!r} ({type(value).__name__})."
                )
    return out


def _label_value(value: Any, origin: str, index: int) -> str | int:
    """A label as a string or a non-negative int; anything else is an error naming the row."""
    where = f"`label_column`: row {index} (0-based) of {origin} holds {value!r}"
    if isinstance(value, str):
        return value
    if value is None:
        raise AdapterKitError(f"{where}: a missing label; every row needs a string or integer label.")
    if isinstance(value, bool | np.bool_):
        raise AdapterKitError(f"{where}; booleans are not labels: use strings or integers 0..n-1.")
    if isinstance(value, float | np.floating):
        if math.isnan(value) or not float(value).is_integer():
            raise AdapterKitError(f"{where}; labels must be class ids or names (regression is not supported yet).")
        value = int(value)
    if not isinstance(value, int | np.integer):
        raise AdapterKitError(f"{where} ({type(value).__name__}); labels must be strings or integers 0..n-1.")
    if value < 0:
        raise AdapterKitError(f"{where}; integer labels are class ids and start at 0.")
    return int(value)


def _label_names(labels: list[str | int], origin: str, class_names: list[str] | None) -> list[str]:
    """Sorted distinct strings, or the ClassLabel names, or ``"0"`` .. ``"max"`` for integer labels."""
    kind = type(labels[0])
    mixed = next((i for i, v in enumerate(labels) if type(v) is not kind), None)
    if mixed is not None:
        raise AdapterKitError(
            f"`label_column`: {origin} mixes label types: row 0 holds {labels[0]!r}, row {mixed} holds "
            f"{labels[mixed]!r}; use all strings or all integers."
        )
    if class_names and kind is int:
        return list(class_names)
    if kind is str:
        return sorted(set(labels))
    return [str(i) for i in range(max(labels) + 1)]


def _encode(values: list[Any], origin: str, label_names: list[str], by_name: bool) -> list[int]:
    ids = {name: i for i, name in enumerate(label_names)}
    encoded = []
    for index, raw in enumerate(values):
        value = _label_value(raw, origin, index)
        label = ids.get(value) if by_name and isinstance(value, str) else None
        if not by_name and isinstance(value, int) and value < len(label_names):
            label = value
        if label is None:
            allowed = label_names if by_name else f"integers 0..{len(label_names) - 1} ({label_names})"
            raise AdapterKitError(
                f"`label_column`: row {index} (0-based) of {origin} holds the label {value!r}, which is not in the "
                f"label set of the train data: {allowed}."
            )
        encoded.append(label)
    return encoded


def _take(table: Table, indices: Sequence[int]) -> Table:
    return {column: [values[i] for i in indices] for column, values in table.items()}


def _carve(
    tables: dict[str, Table], seed: int, sizes: dict[str, int], cap_each: int | None, origin: str = ""
) -> dict[str, Table]:
    """Take the missing test, then validation split from a seeded permutation of train; train keeps the rest."""
    missing = [split for split in ("test", "validation") if split not in tables]
    if not missing:
        return tables
    train = tables["train"]
    if cap_each is not None and cap_each < 1:
        files = " / ".join(f"`{split}_file`" for split in missing)
        raise AdapterKitError(
            f"The train data of {origin} has {_rows(train)} row(s), too few to carve the missing {missing} split(s) "
            f"from (train keeps at least half): give at least {2 * len(missing)} rows or pass {files}."
        )
    order = np.random.default_rng(seed).permutation(_rows(train))
    out = dict(tables)
    start = 0
    for split in missing:
        take = sizes[split] if cap_each is None else min(sizes[split], cap_each)
        out[split] = _take(train, order[start : start + take])
        start += take
    out["train"] = _take(train, order[start:])
    return out


def _task_data(
    name: str,
    tables: dict[str, Table],
    label_names: list[str],
    caps: dict[str, int | None],
    description: str,
    source: str,
) -> TaskData:
    """Cut the splits to the caps and build the in-memory DatasetDict."""
    features = {"text": datasets.Value("string")}
    if "text_pair" in tables["train"]:
        features["text_pair"] = datasets.Value("string")
    features["label"] = datasets.ClassLabel(names=label_names)
    splits = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {column: values[: caps[split]] for column, values in tables[split].items()},
                features=datasets.Features(features),
            )
            for split in SPLITS
        }
    )
    return TaskData(name, splits, label_names, description, source)
