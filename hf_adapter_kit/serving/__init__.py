"""Serving: ``from_pretrained`` (any kit folder or repo, ready to predict: ``loading.py``), ``pipeline`` (a standard
transformers pipeline over it: ``pipeline.py``), the pipelines of multi-task models (``pipelines.py``), and
``transformers.pipeline`` taking kit adapters (``transformers_pipeline.py``)."""

from .loading import from_pretrained
from .pipeline import pipeline


__all__ = ["from_pretrained", "pipeline"]
