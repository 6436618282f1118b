"""Reading local data files (csv, json, jsonl, parquet) into columns, without writing any cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import AdapterKitError


READERS = {
    ".csv": lambda path: pd.read_csv(path, keep_default_na=False, na_values=[""]),
    ".tsv": lambda path: pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]),
    ".json": lambda path: pd.read_json(path),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".parquet": lambda path: pd.read_parquet(path),
}


def read_table(argument: str, path: str | Path) -> dict[str, list]:
    """Columns of a local file as lists of Python values; ``argument`` names the option in errors."""
    file = Path(path)
    if not file.is_file():
        raise AdapterKitError(f"`{argument}`={str(path)!r} does not exist or is not a file.")
    suffix = file.suffix.lower()
    if suffix not in READERS:
        raise AdapterKitError(
            f"`{argument}`={str(path)!r} has an unsupported extension {suffix!r}: use one of {', '.join(READERS)}."
        )
    try:
        frame = READERS[suffix](file)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise AdapterKitError(f"`{argument}`={str(path)!r} could not be read as {suffix[1:]}: {err}.") from err
    # NaN (an empty cell) stays NaN, so that the column checks can name the row.
    return {str(column): frame[column].tolist() for column in frame.columns}
