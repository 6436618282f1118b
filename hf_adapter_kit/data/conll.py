"""CoNLL-style files for token classification: one token per line, its tag in the last column, a blank line between
sentences.

Columns are separated by tabs when the line has one (so a token may hold spaces), else by runs of whitespace; the
first column is the token and the last one the tag (CoNLL-2003's ``word POS chunk NER`` lines work as they are).
A line that holds only whitespace ends a sentence, and ``-DOCSTART-`` lines (CoNLL-2003's document markers) are
skipped. Files are UTF-8.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AdapterKitError


SUFFIXES = (".conll", ".txt")
DOCUMENT_MARKER = "-DOCSTART-"


def parse_conll(text: str, origin: str) -> list[tuple[list[str], list[str]]]:
    """The ``(tokens, tags)`` of each sentence, in order; a line with fewer than two columns is an error naming it."""
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if line.startswith(DOCUMENT_MARKER):
            continue
        if "\t" in line:
            columns = [column.strip() for column in line.split("\t") if column.strip()]
        else:
            columns = line.split()
        if len(columns) < 2:
            raise AdapterKitError(
                f"Line {number} of {origin} is {line!r}: a CoNLL-style line holds a token and its tag (the last "
                "column), separated by a tab or spaces; a blank line ends a sentence."
            )
        tokens.append(columns[0])
        tags.append(columns[-1])
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def read_conll(argument: str, path: str | Path) -> dict[str, list]:
    """A CoNLL-style file as the columns ``tokens`` and ``tags`` (one list per sentence); ``argument`` names the
    option in errors."""
    file = Path(path)
    if not file.is_file():
        raise AdapterKitError(f"`{argument}`={str(path)!r} does not exist or is not a file.")
    origin = f"`{argument}`={str(path)!r}"
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise AdapterKitError(f"{origin} is not UTF-8 text: {err}.") from err
    sentences = parse_conll(text, origin)
    return {"tokens": [tokens for tokens, _ in sentences], "tags": [tags for _, tags in sentences]}
