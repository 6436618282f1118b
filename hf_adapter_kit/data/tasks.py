"""Tasks: the embedded tasks, local files and Hub datasets, as checked train/validation/test splits.

Every source ends as a :class:`TaskData` (``taskdata.py``) whose ``splits`` is an in-memory ``datasets.DatasetDict``
with exactly the splits ``train``, ``validation`` and ``test``. Nothing is written to disk: files are read with the
standard library, pandas or pyarrow, never through ``load_dataset`` and its cache. The embedded tasks and their fixed
seeded splits are described in ``embedded.py``; how labels become classes (``label_names``) in ``labels.py``.

Local files: csv, json, jsonl and parquet files hold text classification (``text_column``, ``text_pair_column``,
``label_column``); CoNLL-style ``.conll`` / ``.txt`` files hold token classification (``conll.py``). The files of one
task must all be of one kind.

Missing splits. A file or Hub dataset without a validation or test split gets it carved from its train split: a
seeded permutation (``numpy.random.default_rng(seed)``) of the train rows in file order, test first, then validation,
train keeps the rest. By default each carved split takes 10% of the train rows (rounded down), at least 1 row and at
most 1,000 (validation) or 2,000 (test) rows: a 600-row file gives 480 / 60 / 60, a 12-row file 10 / 1 / 1. An
explicit ``validation_size`` / ``test_size`` takes that many rows instead, at most ``rows // (2 * carved splits)``.
Either way train keeps at least half of its rows, so a file needs at least 2 rows per carved split.
``max_train_samples`` and ``max_eval_samples`` cut the splits afterwards, so that the test set for a seed never
depends on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import numpy as np
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled, RepositoryNotFoundError

from ..errors import AdapterKitError, invalid
from . import conll
from .embedded import EMBEDDED_TASKS, load_embedded
from .files import READERS, Table, read_file
from .labels import check_label_names, class_list, encode, label_values
from .taskdata import SPLITS, TaskData, build_task


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
CARVE_FRACTION = 0.10  # of the train rows, per carved split (see the module docstring)
CARVE_MAX = {"validation": 1000, "test": 2000}


def list_tasks() -> list[str]:
    """The embedded tasks, available offline."""
    return sorted(EMBEDDED_TASKS)


def load_task(
    task: str,
    *,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
    validation_size: int | None = None,
    test_size: int | None = None,
) -> TaskData:
    """Load a task with fixed seeded splits; see the module docstring for the split scheme.

    Resolution: ``train_file`` given -> local files (``task`` is only the name); ``task`` an embedded task (see
    :func:`list_tasks`); ``task`` an existing local file -> as ``train_file=task``; otherwise a Hub dataset id, loaded
    with ``datasets.load_dataset(task)`` (needs network, or the local cache with ``HF_DATASETS_OFFLINE=1``).
    Local files may be csv, json (a list of records or a dict of columns), jsonl or parquet, or CoNLL-style
    ``.conll``/``.txt`` for token classification. Classes: the distinct labels of train, sorted, or ``label_names``
    in that order (``labels.py``). ``validation_size``/``test_size``: rows of a split carved from train, or of an
    embedded task's split; None for the default. A Hub split whose labels are all -1 (unlabeled, as GLUE test sets)
    counts as missing. Every bad input raises :class:`AdapterKitError` before anything is loaded further.
    """
    _check_options(task, train_file, validation_file, test_file, max_train_samples, max_eval_samples, seed)
    sizes = {"test": test_size, "validation": validation_size}
    for argument, value in (("validation_size", validation_size), ("test_size", test_size)):
        if value is not None:
            _check_positive(argument, value, "or None")
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    _check_column_arguments(columns)
    names = check_label_names(label_names)
    caps = {"train": max_train_samples, "validation": max_eval_samples, "test": max_eval_samples}
    eval_files = {"validation": validation_file, "test": test_file}
    if train_file is not None:
        return _file_task(task, ("train_file", train_file), eval_files, columns, names, seed, sizes, caps)
    if task in EMBEDDED_TASKS:
        given = [f"`{split}_file`={path!r}" for split, path in eval_files.items() if path is not None]
        given += [f"`{arg}`={value!r}" for arg, value in columns.items() if value != DEFAULT_COLUMNS[arg]]
        given += [f"`label_names`={names!r}"] if names is not None else []
        if given:
            raise AdapterKitError(
                f"{', '.join(given)} does not apply to the embedded task {task!r}, whose splits, columns and labels "
                "are fixed; these options are for local files (`train_file`) and Hub datasets."
            )
        return load_embedded(task, seed, sizes, caps)
    path = Path(task)
    if path.is_file():
        return _file_task(path.stem, ("task", task), eval_files, columns, names, seed, sizes, caps)
    if path.is_dir():
        raise invalid(
            "task", task, "a folder is not a task; pass its files as `train_file`/`validation_file`/`test_file`."
        )
    if path.suffix.lower() in (*READERS, *conll.SUFFIXES):
        raise AdapterKitError(f"`task`={task!r} looks like a local file, but it does not exist or is not a file.")
    for split, file in eval_files.items():
        if file is not None:
            raise AdapterKitError(
                f"`{split}_file`={file!r} needs local training data: pass `train_file` as well "
                f"(`task`={task!r} is not a local file)."
            )
    return _hub_task(task, columns, names, seed, sizes, caps)


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
            raise invalid(argument, value, "a path to a .csv, .json, .jsonl, .parquet, .conll or .txt file, or None.")
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


# -- local files -----------------------------------------------------------------------------------------------------


def _is_conll(path: str | Path) -> bool:
    return Path(path).suffix.lower() in conll.SUFFIXES


def _file_task(
    name: str,
    train: tuple[str, str | Path],
    eval_files: dict[str, str | Path | None],
    columns: dict[str, str | None],
    label_names: list[str] | None,
    seed: int,
    sizes: dict[str, int | None],
    caps: dict[str, int | None],
) -> TaskData:
    files = {"train": train, **{split: (f"{split}_file", path) for split, path in eval_files.items() if path}}
    origins = {split: f"`{argument}`={str(path)!r}" for split, (argument, path) in files.items()}
    kinds = {split: "token" if _is_conll(path) else "sequence" for split, (_, path) in files.items()}
    source = str(train[1])
    if kinds["train"] == "token":
        other = next((split for split, kind in kinds.items() if kind != "token"), None)
        if other is not None:
            raise AdapterKitError(
                f"{origins[other]} is not a CoNLL-style file (.conll, .txt) like {origins['train']}: the files of a "
                "token-classification task must all be CoNLL-style."
            )
        changed = [f"`{arg}`={value!r}" for arg, value in columns.items() if value != DEFAULT_COLUMNS[arg]]
        if changed:
            raise AdapterKitError(
                f"{', '.join(changed)} does not apply to the CoNLL-style file {origins['train']}: its columns are "
                "the token and, last, its tag."
            )
        tables = {split: conll.read_conll(argument, path) for split, (argument, path) in files.items()}
        splits, classes = _checked_tokens(tables, origins, label_names, seed, sizes)
        description = f"Token classification from {Path(source).name}"
        return build_task(name, splits, classes, caps, description, source, kind="token")
    other = next((split for split, kind in kinds.items() if kind == "token"), None)
    if other is not None:
        raise AdapterKitError(
            f"{origins[other]} is a CoNLL-style file, but {origins['train']} is not: the files of a task must all "
            "hold text classification (csv, json, jsonl, parquet) or all token classification (.conll, .txt)."
        )
    tables = {split: read_file(argument, path, columns) for split, (argument, path) in files.items()}
    splits, classes = _checked(tables, columns, origins, None, label_names, seed, sizes)
    return build_task(name, splits, classes, caps, f"Text classification from {Path(source).name}", source)


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
    task: str,
    columns: dict[str, str | None],
    label_names: list[str] | None,
    seed: int,
    sizes: dict[str, int | None],
    caps: dict[str, int | None],
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
    splits, classes = _checked(tables, columns, origins, names, label_names, seed, sizes, presents)
    return build_task(task, splits, classes, caps, f"Hub dataset {task}", task)


# -- checks, labels, splits ------------------------------------------------------------------------------------------


def _rows(table: Table) -> int:
    return len(next(iter(table.values()), []))


def _checked(
    tables: dict[str, Table],
    columns: dict[str, str | None],
    origins: dict[str, str],
    class_names: list[str] | None,
    label_names: list[str] | None,
    seed: int,
    sizes: dict[str, int | None],
    presents: dict[str, list[str]] | None = None,
) -> tuple[dict[str, Table], list[str]]:
    """Check and rename the columns, encode the labels, carve missing splits: one path for files and Hub data."""
    renamed = {
        split: _rename(table, columns, origins[split], (presents or {}).get(split, list(table)))
        for split, table in tables.items()
    }
    wheres = {split: _row_of(origins[split]) for split in renamed}
    values = {split: label_values(table["label"], wheres[split]) for split, table in renamed.items()}
    classes = class_list(values["train"], wheres["train"], class_names, label_names)
    for split, table in renamed.items():
        table["label"] = encode(values[split], wheres[split], classes, class_names, split, label_names is not None)
    return _carve(renamed, seed, sizes, origins["train"]), classes


def _checked_tokens(
    tables: dict[str, Table],
    origins: dict[str, str],
    label_names: list[str] | None,
    seed: int,
    sizes: dict[str, int | None],
) -> tuple[dict[str, Table], list[str]]:
    """The tags of CoNLL-style files as class ids (the classes: the train tags, sorted, or ``label_names``)."""
    for split, table in tables.items():
        if not table["tokens"]:
            raise AdapterKitError(f"The data of {origins[split]} is empty (no sentences): give at least one.")

    def flat(split: str) -> tuple[list[str], Callable[[int], str]]:
        sentences = tables[split]["tokens"]
        starts = np.cumsum([0, *(len(tokens) for tokens in sentences)])

        def where(index: int) -> str:
            sentence = int(np.searchsorted(starts, index, side="right")) - 1
            token = index - int(starts[sentence])
            return f"sentence {sentence} (0-based), token {token} ({sentences[sentence][token]!r}) of {origins[split]}"

        return [tag for tags in tables[split]["tags"] for tag in tags], where

    classes = class_list(*flat("train"), None, label_names)
    for split, table in tables.items():
        ids = iter(encode(*flat(split), classes, None, split, label_names is not None))
        table["tags"] = [[next(ids) for _ in tags] for tags in table["tags"]]
    return _carve(tables, seed, sizes, origins["train"]), classes


def _row_of(origin: str) -> Callable[[int], str]:
    return lambda index: f"`label_column`: row {index} (0-based) of {origin}"


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


def _take(table: Table, indices: Sequence[int]) -> Table:
    return {column: [values[i] for i in indices] for column, values in table.items()}


def carved_rows(rows: int, split: str, size: int | None, carved: int) -> int:
    """Rows that a carved ``split`` takes from ``rows`` train rows when ``carved`` splits are carved (see the module
    docstring): ``size`` (at most ``rows // (2 * carved)``), or by default 10%, at least 1, at most CARVE_MAX."""
    if size is not None:
        return min(size, rows // (2 * carved))
    return min(CARVE_MAX[split], max(1, int(rows * CARVE_FRACTION)))


def _carve(tables: dict[str, Table], seed: int, sizes: dict[str, int | None], origin: str) -> dict[str, Table]:
    """Take the missing test, then validation split from a seeded permutation of train; train keeps the rest."""
    missing = [split for split in ("test", "validation") if split not in tables]
    if not missing:
        return tables
    train = tables["train"]
    rows = _rows(train)
    if rows < 2 * len(missing):
        files = " / ".join(f"`{split}_file`" for split in missing)
        raise AdapterKitError(
            f"The train data of {origin} has {rows} row(s), too few to carve the missing {missing} split(s) from "
            f"(each takes at least 1 row and train keeps at least half): give at least {2 * len(missing)} rows or "
            f"pass {files}."
        )
    order = np.random.default_rng(seed).permutation(rows)
    out = dict(tables)
    start = 0
    for split in missing:
        take = carved_rows(rows, split, sizes[split], len(missing))
        out[split] = _take(train, order[start : start + take])
        start += take
    out["train"] = _take(train, order[start:])
    return out
