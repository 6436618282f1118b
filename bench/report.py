"""What the benchmark scripts share: the machine sentence of a results page, and writing its .json and .md files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def machine_sentence(report: dict) -> str:
    """``Measured <date> on <cpu>, <cores> cores (...), torch ..., adapters ..., GPU; load average; wall time.``"""
    m = report["machine"]
    return (
        f"Measured {report['date']} on {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch "
        f"{m['torch']}, adapters {m['adapters']}, {'GPU ' + m['gpu'] if m['gpu'] else 'no GPU'}; load average at the "
        f"end {report['load_average_end'][0]:.2f}; wall time {report['wall_seconds'] / 60:.1f} min."
    )


def save(report: dict, output: str, markdown: Callable[[dict], str]) -> Path:
    """Write ``report`` as ``<output>.json`` and its page as ``<output>`` (markdown); print the page."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.write_text(markdown(report))
    print(out.read_text())
    return out
