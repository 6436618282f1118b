"""Where the kit's PEFT adapters go in each architecture it supports.

Every adapter wraps a sub-block's output projection (attention or feed-forward), the place of the original Houlsby
adapter: ``h -> h + adapter(h)`` before the model adds its residual (and, for post-LN models, its layer norm). A
parallel adapter reads the sub-block's input instead, taken from the module named second below.

The ``adapters`` backend needs no table: ``adapters`` places bottleneck layers itself for every model it supports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...errors import choices


# model_type -> (the layers' container, {position: (output projection, sub-block input module)}), relative to a layer
_BERT = (
    "encoder.layer",
    {"attention": ("attention.output.dense", "attention.self"), "ffn": ("output.dense", "intermediate")},
)
PLACEMENTS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "bert": _BERT,
    "roberta": _BERT,
    "gpt2": ("h", {"attention": ("attn.c_proj", "attn"), "ffn": ("mlp.c_proj", "mlp")}),
    "llama": ("layers", {"attention": ("self_attn.o_proj", "self_attn"), "ffn": ("mlp.down_proj", "mlp")}),
}


def check_model_type(model_type: str | None, method: str) -> None:
    if model_type not in PLACEMENTS:
        raise choices(f"model_type (the architecture {method!r} attaches to on PEFT)", model_type, PLACEMENTS)


def target_pattern(model_type: str, positions: Sequence[str]) -> str:
    """A regex that PEFT full-matches against module names: the output projections of ``positions``."""
    layers, places = PLACEMENTS[model_type]
    outputs = "|".join(re.escape(places[p][0]) for p in positions)
    return rf"(?:.*\.)?{re.escape(layers)}\.\d+\.(?:{outputs})"


def locate(model_type: str, key: str) -> tuple[int, str, str]:
    """For a matched module name: (layer index, position, name of the sub-block's input module)."""
    layers, places = PLACEMENTS[model_type]
    for position, (output, block_input) in places.items():
        match = re.fullmatch(rf"((?:.*\.)?{re.escape(layers)}\.(\d+))\.{re.escape(output)}", key)
        if match:
            return int(match.group(2)), position, f"{match.group(1)}.{block_input}"
    raise KeyError(key)
