"""Decoder LLMs: the embedded SmolLM2 (``embedded.py``) and evaluation by generation (``generation.py``).

Training them by instruction tuning lives with the other training code (``training/strategies/instructions.py``),
their data with the other data (``data/instructions.py``).
"""
