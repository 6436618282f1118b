"""Reading local data files (csv, json, jsonl, parquet) into columns, without writing any cache.

Text columns stay text: pandas would turn the string "0042" into the number 42, so csv text columns are read as
strings and json/jsonl go through the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import AdapterKitError, invalid


Table = dict[str, list[Any]]  # column name -> values, one list per column


def _read_csv(file: Path, text_columns: Sequence[str]) -> Table:
    # Text columns stay strings ("0042" is text, not 42); an empty cell becomes NaN, which the checks name.
    frame = pd.read_csv(file, dtype=dict.fromkeys(text_columns, str), keep_default_na=False, na_values=[""])
    return {str(column): frame[column].tolist() for column in frame.columns}


def _records(rows: Sequence[Any]) -> Table:
    names: dict[str, None] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"record {index} is a {type(row).__name__}, not an object")
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in rows] for name in names}


def _read_json(file: Path, text_columns: Sequence[str]) -> Table:
    data = json.loads(file.read_text(encoding="utf-8"))
    if isinstance(data, list):
        return _records(data)
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        if len({len(v) for v in data.values()}) > 1:
            raise ValueError("the columns have different lengths")
        return {str(k): v for k, v in data.items()}
    raise ValueError("expected a list of records or an object of equally long column lists")


def _read_jsonl(file: Path, text_columns: Sequence[str]) -> Table:
    rows = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"line {number}: {err}") from err
    return _records(rows)


def _read_parquet(file: Path, text_columns: Sequence[str]) -> Table:
    return pq.read_table(file).to_pydict()


READERS: dict[str, Callable[[Path, Sequence[str]], Table]] = {
    ".csv": _read_csv,
    ".json": _read_json,
    ".jsonl": _read_jsonl,
    ".parquet": _read_parquet,
}


def read_file(argument: str, path: str | Path, columns: dict[str, str | None]) -> Table:
    """The columns of a local file; ``argument`` names the option in errors."""
    file = Path(path)
    if not file.is_file():
        raise AdapterKitError(f"`{argument}`={str(path)!r} does not exist or is not a file.")
    suffix = file.suffix.lower()
    if suffix not in READERS:
        raise invalid(argument, str(path), f"unsupported extension {suffix!r}; use one of {', '.join(READERS)}.")
    text_columns = [c for c in (columns["text_column"], columns["text_pair_column"]) if c is not None]
    try:
        return READERS[suffix](file, text_columns)
    except pd.errors.EmptyDataError:
        return {}
    except (ValueError, OSError, pa.ArrowException) as err:
        raise AdapterKitError(f"`{argument}`={str(path)!r} could not be read as {suffix[1:]}: {err}.") from err
