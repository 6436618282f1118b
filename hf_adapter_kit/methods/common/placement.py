"""Where the kit's PEFT adapters go in a model, found before anything is changed.

Every adapter wraps a sub-block's output projection (attention or feed-forward), the place of the original Houlsby
adapter: ``h -> h + adapter(h)`` before the model adds its residual (and, for post-LN models, its layer norm); a
mixture-of-experts feed-forward block is wrapped whole, so one adapter follows it rather than one per expert. A
parallel adapter reads the sub-block's input instead, taken from the module the place names as the block input.

The places come from, in this order:

1. the places a user names (``places={"attention": "self_attn.o_proj", "ffn": "mlp.down_proj"}``: module names
   relative to a block, each a name or a list of names, as PEFT's ``target_modules``; ``block_inputs`` likewise);
2. the family's row in :mod:`hf_adapter_kit.modeling.families`;
3. the model's own module tree: its list(s) of blocks, and in a block the one attention output projection and the one
   feed-forward output projection that their names and shapes single out.

When none decides, :func:`resolve` raises the kit's error naming the candidates, before the model is touched.
Blocks are numbered in the model's module order, an encoder's before its decoder's (``families.block_offsets``), as
``adapters`` numbers them.

The ``adapters`` backend needs no table for the families ``adapters`` supports: it places its own layers there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from ...errors import AdapterKitError, invalid
from ...modeling import families
from ...modeling.families import Place
from ...registry import list_specs
from .checks import POSITIONS


# what output projections are called, in the families the kit has seen (a family without a row is searched for them)
ATTENTION_OUTPUTS = set("o_proj out_proj dense c_proj out_lin o wo Wo proj".split())
FFN_OUTPUTS = set("down_proj fc2 c_proj dense_4h_to_h w2 wo Wo lin2 dense ffn_output fc_out".split())


@dataclass(frozen=True)
class Placement:
    """Where one config's adapters go in one model."""

    pattern: str  # a regex that PEFT full-matches against module names (the config's ``target_modules``)
    targets: Mapping[str, tuple[int, str, str | None]]  # module -> (block index, position, block input module)
    num_blocks: int

    def locate(self, key: str) -> tuple[int, str, str | None]:
        """For a matched module name: (block index, position, name of the sub-block's input module or ``None``: the
        module's own input)."""
        return self.targets[key]


def check_places(argument: str, value: Any) -> dict[str, Any] | None:
    """``places`` / ``block_inputs`` as given by a user: ``None``, or position -> a module name or a list of them."""
    if value is None:
        return None
    allowed = f"a mapping from positions {list(POSITIONS)} to a module name relative to a block (or a list of names)."
    if not isinstance(value, Mapping) or not value or any(key not in POSITIONS for key in value):
        raise invalid(argument, value, allowed)
    names = {key: [names] if isinstance(names, str) else names for key, names in value.items()}
    for listed in names.values():
        if not isinstance(listed, list | tuple) or not listed or not all(isinstance(n, str) and n for n in listed):
            raise invalid(argument, value, allowed)
    return dict(value)


def resolve(model: nn.Module, config: Any, needs_input: bool = False) -> Placement:
    """Where ``config``'s adapters (its ``positions``, ``places``, ``block_inputs``) go in ``model``; ``needs_input``:
    the method reads each sub-block's input (parallel adapters). Raises :class:`AdapterKitError` naming the
    candidates when the places cannot be decided or do not exist."""
    model_config = model.config
    model_type = getattr(model_config, "model_type", None)
    modules = dict(model.named_modules())
    hidden = getattr(model_config, "hidden_size", None)
    positions = list(config.positions)
    named = check_places("places", getattr(config, "places", None))
    inputs = check_places("block_inputs", getattr(config, "block_inputs", None)) or {}
    row = families.get_family(model_type)
    if named:
        stacks = _named(modules, hidden, named, inputs, positions)
    elif row is not None:
        stacks = [(c, s.places) for s in row.stacks for c in _containers(modules, s.layers)]
    else:
        stacks = _discovered(modules, hidden, model_type, positions)
    if inputs and not named:  # block inputs named for the table's or the found places
        stacks = [(c, _with_inputs(places, inputs, modules, f"{c}.0")) for c, places in stacks]
    if not stacks:
        raise _no_place(model_type, modules, hidden, "its blocks were not found")
    order = list(modules)
    stacks = sorted(stacks, key=lambda stack: order.index(stack[0]))
    return _targets(modules, hidden, stacks, positions, needs_input, model_type)


def _targets(modules, hidden, stacks, positions, needs_input, model_type) -> Placement:
    targets: dict[str, tuple[int, str, str | None]] = {}
    patterns = []
    index = 0
    for container, places in stacks:
        outputs = []
        for i in range(len(modules[container])):
            block = f"{container}.{i}"
            for position in positions:
                place = places.get(position)
                if place is None:
                    raise _no_place(model_type, modules, hidden, f"{container} has no {position} place")
                name = f"{block}.{place.output}"
                if name not in modules:
                    raise _no_place(model_type, modules, hidden, f"{block} has no {place.output!r}")
                source = f"{block}.{place.block_input}" if place.block_input else None
                if needs_input and source is not None and source not in modules:
                    raise invalid(
                        "block_inputs",
                        {position: place.block_input},
                        f"a module of {block} whose input is the {position} sub-block's input; "
                        f"candidates: {_input_candidates(modules, block)}.",
                    )
                targets[name] = (index, position, source)
                outputs.append(place.output)
            index += 1
        alternatives = "|".join(re.escape(o) for o in dict.fromkeys(outputs))
        patterns.append(rf"{re.escape(container)}\.\d+\.(?:{alternatives})")
    return Placement("|".join(patterns), targets, index)


def _containers(modules: Mapping[str, nn.Module], layers: str) -> list[str]:
    """The module lists whose names end with ``layers`` (``*``: any index)."""
    pattern = re.compile(r"(?:.*\.)?" + re.escape(layers).replace(r"\*", r"\d+"))
    return [name for name, m in modules.items() if isinstance(m, nn.ModuleList) and pattern.fullmatch(name)]


def _with_inputs(places: Mapping[str, Place], inputs: Mapping[str, Any], modules, block: str) -> dict[str, Place]:
    """``places`` with the block inputs a user names (the first of a list that ``block`` has)."""
    out = dict(places)
    for position, names in inputs.items():
        if position in out:
            out[position] = Place(out[position].output, _pick(names, modules, block))
    return out


# -- places a user names ---------------------------------------------------------------------------------------------
def _named(modules, hidden, named, inputs, positions) -> list[tuple[str, dict[str, Place]]]:
    """Blocks are the modules that hold a named place and sit in a list (their name ends with an index)."""
    by_container: dict[str, dict[str, Place]] = {}
    for position, names in named.items():
        listed = [names] if isinstance(names, str) else list(names)
        found = False
        for key in modules:
            for suffix in listed:
                block = key[: -len(suffix) - 1] if key.endswith(f".{suffix}") else None
                if block is None or not re.search(r"\.\d+$", block):
                    continue
                container = block.rsplit(".", 1)[0]
                if not isinstance(modules.get(container), nn.ModuleList):
                    continue
                found = True
                if position not in by_container.setdefault(container, {}):
                    source = _pick(inputs.get(position), modules, block) if position in inputs else None
                    if source is None:
                        source = _block_input(modules, block, suffix, hidden, position)
                    by_container[container][position] = Place(suffix, source or "")
        if not found:
            raise invalid(
                "places",
                {position: names},
                f"module names relative to a block, found in every block of the model; candidates: "
                f"{_output_candidates(modules, hidden)}.",
            )
    missing = [p for p in positions if not any(p in places for places in by_container.values())]
    if missing:
        raise invalid("places", named, f"a place for every position of the adapter ({positions}); missing: {missing}.")
    return list(by_container.items())


def _pick(names, modules, block: str) -> str:
    """The first of ``names`` that ``block`` has (else the first, which the caller then refuses)."""
    listed = [names] if isinstance(names, str) else list(names)
    return next((name for name in listed if f"{block}.{name}" in modules), listed[0])


# -- places found in the module tree ---------------------------------------------------------------------------------
def _is_attention(part: str) -> bool:
    lowered = part.lower()
    return "attn" in lowered or "attention" in lowered


def _is_cross(part: str) -> bool:
    lowered = part.lower()
    return "cross" in lowered or "encoder_attn" in lowered or "encdec" in lowered


def _projection(module: nn.Module) -> nn.Module:
    """The layer itself, under a PEFT adapter that wraps it (a model that has an adapter already)."""
    return module.get_base_layer() if isinstance(module, BaseTunerLayer) else module


def _out_features(module: nn.Module) -> int | None:
    module = _projection(module)
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.weight.shape[1] if isinstance(module, Conv1D) else None


def _in_features(module: nn.Module) -> int | None:
    module = _projection(module)
    if isinstance(module, nn.Linear):
        return module.in_features
    return module.weight.shape[0] if isinstance(module, Conv1D) else None


def _is_block(module: nn.Module) -> bool:
    names = [name for name, _ in module.named_modules()]
    linears = sum(1 for m in module.modules() if _out_features(m))
    return linears >= 2 and any(_is_attention(part) for name in names for part in name.split("."))


def _block_lists(modules: Mapping[str, nn.Module]) -> list[str]:
    """The outermost module lists whose every item looks like a transformer block (attention and projections)."""
    lists = [n for n, m in modules.items() if isinstance(m, nn.ModuleList) and len(m) and all(map(_is_block, m))]
    return [n for n in lists if not any(n.startswith(f"{other}.") for other in lists)]


def _discovered(modules, hidden, model_type, positions) -> list[tuple[str, dict[str, Place]]]:
    """Each list of blocks, with the places its first block singles out: an output projection back to the hidden
    size, named as output projections are, inside the attention (or outside it, for the feed-forward block); a
    mixture of experts is placed whole."""
    stacks = []
    for container in _block_lists(modules):
        block = f"{container}.0"
        sub = {name[len(block) + 1 :]: m for name, m in modules.items() if name.startswith(f"{block}.")}
        attention, cross, ffn = [], [], []
        for rel, module in sub.items():
            parts = rel.split(".")
            if parts[-1] == "experts" and isinstance(module, nn.ModuleList) and "." in rel:
                ffn.append(rel.rsplit(".", 1)[0])  # a mixture of experts: one adapter after the whole block
            elif _out_features(module) != hidden:
                continue
            elif any(_is_attention(p) for p in parts[:-1]):
                if parts[-1] in ATTENTION_OUTPUTS:
                    (cross if any(_is_cross(p) for p in parts) else attention).append(rel)
            elif parts[-1] in FFN_OUTPUTS and not any("experts" == p for p in parts):
                ffn.append(rel)
        found = {"attention": attention, "ffn": sorted(set(ffn), key=ffn.index)}
        if len(cross) == 1:
            found["cross_attention"] = cross
        for position in positions:
            if len(found[position]) != 1:
                why = f"{len(found[position])} {position} output candidates in {block}: {found[position]}"
                raise _no_place(model_type, modules, hidden, why)
        places = {}
        for position, (output, *_) in found.items():
            if position in positions or position == "cross_attention":
                places[position] = Place(output, _block_input(modules, block, output, hidden, position) or "")
        stacks.append((container, places))
    return stacks


def _block_input(modules, block: str, output: str, hidden: int, position: str) -> str | None:
    """The sub-block's input module beside ``output``: a projection from the hidden size in the output's nearest
    enclosing module that has one (for a feed-forward block, the block itself: BERT's sits beside the attention),
    inside the attention for an attention position and outside it for the feed-forward; a query projection first
    (a cross-attention's keys and values read the encoder). ``None`` for a whole sub-block (a mixture of experts),
    whose own input is the sub-block's."""
    if _out_features(modules[f"{block}.{output}"]) is None:
        return None
    parts = output.split(".")
    scopes = [".".join(parts[:depth]) for depth in range(len(parts) - 1, -1, -1)]
    for scope in scopes:
        prefix = f"{block}.{scope}." if scope else f"{block}."
        found = []
        for name, module in modules.items():
            rel = name[len(block) + 1 :]
            if name.startswith(prefix) and rel != output and _in_features(module) == hidden:
                in_attention = any(_is_attention(p) for p in rel.split("."))
                if in_attention == (position != "ffn"):
                    found.append(rel)
        if found:
            queries = [rel for rel in found if rel.rsplit(".", 1)[-1].lower().startswith(("q", "query", "wq"))]
            return (queries or found)[0]
    return None


# -- errors ----------------------------------------------------------------------------------------------------------
def _output_candidates(modules, hidden) -> list[str]:
    """Block-relative names of the projections back to the hidden size (and mixture-of-experts blocks): what a
    place can name."""
    found = []
    for name, module in modules.items():
        if re.search(r"\.experts\.\d+\.", name):
            continue  # inside a mixture of experts: the block is the candidate
        match = re.match(r"^(?:.*?\.)?\d+\.(.+)$", name)
        if match and _out_features(module) == hidden:
            found.append(match.group(1))
        elif match and name.endswith(".experts") and isinstance(module, nn.ModuleList):
            found.append(match.group(1).rsplit(".", 1)[0])
    return sorted(set(found))


def _input_candidates(modules, block: str) -> list[str]:
    return sorted({n[len(block) + 1 :] for n, m in modules.items() if n.startswith(f"{block}.") and _in_features(m)})


def _no_place(model_type, modules, hidden, why: str) -> AdapterKitError:
    return AdapterKitError(
        f"`model_type`={model_type!r}: the kit cannot decide where its adapters go ({why}). Name the places, as "
        "PEFT's target_modules, with `places={'attention': ..., 'ffn': ...}` (module names relative to a block); "
        f"candidates: {_output_candidates(modules, hidden)}. Families with a placement table: "
        f"{', '.join(sorted(families.FAMILIES))}."
    )


# -- the families table of docs/methods.md ---------------------------------------------------------------------------
ADAPTERS_SUPPORT = {
    families.MODELING: "its model classes",
    families.ADAPTERS_INTERFACE: "its interface",
    families.KIT_INTERFACE: "the kit's interface",
}


def families_table() -> str:
    """docs/methods.md's table of families and backends, rendered from the family rows and the registry."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_LORA_TARGETS

    kit = sorted(spec.name for spec in list_specs() if spec.peft is not None and "adapters" in spec.configs)
    lines = [
        f"The kit's methods, on both backends in every family below: {', '.join(f'`{name}`' for name in kit)}.",
        "",
        "| family | kind | blocks | attention output | feed-forward output | cross-attention output | PEFT | adapters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in families.FAMILIES.items():
        lora = "`lora`" if name in PEFT_LORA_TARGETS else "`lora` with `target_modules`"
        fields = families.interface_fields(row)
        adapters_lora = ", `lora`" if fields is None or "lora" in fields["adapter_methods"] else ""
        cells = [
            f"`{name}`",
            row.kind,
            " / ".join(f"`{stack.layers}`" for stack in row.stacks),
            _cell(row, "attention"),
            _cell(row, "ffn"),
            _cell(row, "cross_attention"),
            f"kit's, {lora}",
            f"kit's{adapters_lora} ({ADAPTERS_SUPPORT[row.adapters]})",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _cell(row: families.Family, position: str) -> str:
    outputs = dict.fromkeys(stack.places[position].output for stack in row.stacks if position in stack.places)
    return " / ".join(f"`{output}`" for output in outputs) or "-"
