"""The kit's version, on the ground floor: saved folders record it, and every room may read it."""

__version__ = "0.1.0"
