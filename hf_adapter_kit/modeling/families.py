"""The model families the kit knows, one row per transformers ``model_type``: where a family's transformer blocks are
and where, in each block, an adapter goes.

A block has up to three sub-blocks, each a *position*: ``attention`` (self-attention), ``cross_attention`` (a
decoder's attention over the encoder, in encoder-decoders) and ``ffn`` (the feed-forward block). For each the row
names, relative to a block, the module whose output the adapter changes (the sub-block's output projection; for a
mixture-of-experts feed-forward block the whole block, so that one adapter follows it rather than one per expert) and
the module whose input is the sub-block's input, which a parallel adapter reads.

Blocks are numbered in the model's module order, an encoder's before its decoder's, as ``adapters`` numbers them:
:func:`block_offsets` gives each stack's first index and :func:`num_blocks` their count, which a method with one
embedding per block (Hyperformer++) needs.

The same rows tell the ``adapters`` backend how that library supports a family: with its own model classes, with an
``AdapterModelInterface`` it ships, or with the kit's (``interface``: the fields the places do not give).
``methods/common/placement.py`` reads the rows for PEFT (and finds a family that has no row in its module tree);
``docs/methods.md``'s table of families is rendered from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES


ENCODER, DECODER, ENCODER_DECODER = "encoder", "decoder", "encoder-decoder"
# how `adapters` 1.3.0 supports a family
MODELING = "modeling"  # its own model classes (`adapters.init(model)`)
ADAPTERS_INTERFACE = "adapters-interface"  # an AdapterModelInterface it ships
KIT_INTERFACE = "kit-interface"  # the kit's AdapterModelInterface (the row's `interface`)


@dataclass(frozen=True)
class Place:
    """Where one position's adapter goes in a block (names relative to the block)."""

    output: str  # the module whose output the adapter changes
    block_input: str = ""  # the module whose input is the sub-block's input; "" : the output module's own input


@dataclass(frozen=True)
class Stack:
    """A list of blocks (a decoder-only model has one, an encoder-decoder two) and the places in each block."""

    layers: str  # the blocks' ModuleList, relative to the pretrained body; "*" stands for an index (ALBERT's groups)
    places: Mapping[str, Place]
    count: tuple[str, ...] = ("num_hidden_layers",)  # the config attributes whose product is the number of blocks


@dataclass(frozen=True)
class Family:
    model_type: str
    kind: str  # ENCODER, DECODER (causal: a sequence head reads the last token) or ENCODER_DECODER
    stacks: tuple[Stack, ...]
    adapters: str  # MODELING, ADAPTERS_INTERFACE or KIT_INTERFACE
    # KIT_INTERFACE: the AdapterModelInterface fields that the places do not give (embeddings, the projections
    # LoRA wraps, the modules whose input is the residual stream, the layer norms after each sub-block)
    interface: Mapping[str, Any] = field(default_factory=dict)


def _llama_like(ffn: Place = Place("mlp.down_proj", "mlp")) -> tuple[Stack, ...]:
    return (Stack("layers", {"attention": Place("self_attn.o_proj", "self_attn"), "ffn": ffn}),)


def _seq2seq(encoder: str, decoder: str, attention: Place, cross: Place, ffn: Place, decoder_ffn: Place, counts):
    return (
        Stack(encoder, {"attention": attention, "ffn": ffn}, (counts[0],)),
        Stack(decoder, {"attention": attention, "cross_attention": cross, "ffn": decoder_ffn}, (counts[1],)),
    )


_BART = _seq2seq(
    "encoder.layers",
    "decoder.layers",
    Place("self_attn.out_proj", "self_attn"),
    Place("encoder_attn.out_proj", "encoder_attn"),
    Place("fc2", "fc1"),
    Place("fc2", "fc1"),
    ("encoder_layers", "decoder_layers"),
)
_T5 = _seq2seq(
    "encoder.block",
    "decoder.block",
    Place("layer.0.SelfAttention.o", "layer.0.SelfAttention"),
    Place("layer.1.EncDecAttention.o", "layer.1.EncDecAttention"),
    Place("layer.1.DenseReluDense.wo", "layer.1.DenseReluDense"),
    Place("layer.2.DenseReluDense.wo", "layer.2.DenseReluDense"),
    ("num_layers", "num_decoder_layers"),
)
# the kit's AdapterModelInterface fields for Llama-like decoders (pre-norm, separate q/k/v projections)
_LLAMA_INTERFACE = {
    "adapter_methods": ["bottleneck", "lora"],
    "model_embeddings": "embed_tokens",
    "attn_q_proj": "q_proj",
    "attn_k_proj": "k_proj",
    "attn_v_proj": "v_proj",
    "layer_intermediate_proj": "mlp.up_proj",
    "layer_pre_self_attn": "input_layernorm",
    "layer_pre_ffn": "post_attention_layernorm",
}
# A mixture-of-experts block has no single projection for adapters' LoRA to wrap: bottleneck adapters only.
_MOE_INTERFACE = {**_LLAMA_INTERFACE, "adapter_methods": ["bottleneck"]}


def _rows() -> list[Family]:
    bert = (
        Stack(
            "encoder.layer",
            {
                "attention": Place("attention.output.dense", "attention.self"),
                "ffn": Place("output.dense", "intermediate"),
            },
        ),
    )
    return [
        Family("bert", ENCODER, bert, MODELING),
        Family("roberta", ENCODER, bert, MODELING),
        Family("xlm-roberta", ENCODER, bert, MODELING),
        Family("electra", ENCODER, bert, MODELING),
        Family("deberta-v2", ENCODER, bert, MODELING),
        Family(
            "distilbert",
            ENCODER,
            (
                Stack(
                    "transformer.layer",
                    # DistilBERT calls its attention with keywords (query=, key=, value=): its first projection's
                    # input is the sub-block's
                    {"attention": Place("attention.out_lin", "attention.q_lin"), "ffn": Place("ffn.lin2", "ffn.lin1")},
                ),
            ),
            MODELING,
        ),
        Family(
            "albert",
            ENCODER,
            # ALBERT shares its layers: a block here is one shared layer, run several times per forward pass
            (
                Stack(
                    "encoder.albert_layer_groups.*.albert_layers",
                    {"attention": Place("attention.dense", "attention"), "ffn": Place("ffn_output", "ffn")},
                    ("num_hidden_groups", "inner_group_num"),
                ),
            ),
            MODELING,
        ),
        Family(
            "modernbert",
            ENCODER,
            (Stack("layers", {"attention": Place("attn.Wo", "attn"), "ffn": Place("mlp.Wo", "mlp")}),),
            ADAPTERS_INTERFACE,
        ),
        Family(
            "gpt2",
            DECODER,
            (Stack("h", {"attention": Place("attn.c_proj", "attn"), "ffn": Place("mlp.c_proj", "mlp")}),),
            MODELING,
        ),
        Family(
            "gpt_neox",
            DECODER,
            (
                Stack(
                    "layers",
                    {
                        "attention": Place("attention.dense", "attention.query_key_value"),
                        "ffn": Place("mlp.dense_4h_to_h", "mlp.dense_h_to_4h"),
                    },
                ),
            ),
            KIT_INTERFACE,
            {
                # query, key and value interleave per head in one projection, where adapters' LoRA expects them
                # one after the other: bottleneck adapters only
                "adapter_methods": ["bottleneck"],
                "model_embeddings": "embed_in",
                "attn_qkv_proj": "query_key_value",
                "layer_intermediate_proj": "mlp.dense_h_to_4h",
                "layer_pre_self_attn": "input_layernorm",
                "layer_pre_ffn": "post_attention_layernorm",
            },
        ),
        Family("llama", DECODER, _llama_like(), MODELING),
        Family("mistral", DECODER, _llama_like(), MODELING),
        Family("qwen2", DECODER, _llama_like(), ADAPTERS_INTERFACE),
        Family("qwen3", DECODER, _llama_like(), ADAPTERS_INTERFACE),
        Family("gemma2", DECODER, _llama_like(), ADAPTERS_INTERFACE),
        Family("gemma3_text", DECODER, _llama_like(), ADAPTERS_INTERFACE),
        Family("gemma", DECODER, _llama_like(), KIT_INTERFACE, _LLAMA_INTERFACE),
        Family("granite", DECODER, _llama_like(), KIT_INTERFACE, _LLAMA_INTERFACE),
        Family(
            "olmo2",
            DECODER,
            _llama_like(),
            KIT_INTERFACE,
            # OLMo 2 normalises each sub-block's output, not its input: the feed-forward block reads the residual
            # stream itself; its attention is called with keywords, which adapters' residual hook cannot read
            {**_LLAMA_INTERFACE, "layer_pre_self_attn": None, "layer_pre_ffn": "mlp"},
        ),
        Family(
            "phi3",
            DECODER,
            _llama_like(),
            KIT_INTERFACE,
            # one projection holds query, key and value, of unequal sizes with grouped keys and values, which
            # adapters' LoRA cannot split: bottleneck adapters only
            {**_LLAMA_INTERFACE, "attn_q_proj": None, "attn_k_proj": None, "attn_v_proj": None}
            | {
                "adapter_methods": ["bottleneck"],
                "attn_qkv_proj": "qkv_proj",
                "layer_intermediate_proj": "mlp.gate_up_proj",
            },
        ),
        Family(
            "mixtral",
            DECODER,
            _llama_like(Place("block_sparse_moe")),
            KIT_INTERFACE,
            {**_MOE_INTERFACE, "layer_intermediate_proj": "block_sparse_moe", "layer_output_proj": "block_sparse_moe"},
        ),
        Family(
            "qwen3_moe",
            DECODER,
            _llama_like(Place("mlp")),
            KIT_INTERFACE,
            {**_MOE_INTERFACE, "layer_intermediate_proj": "mlp", "layer_output_proj": "mlp"},
        ),
        Family("t5", ENCODER_DECODER, _T5, MODELING),
        Family("mt5", ENCODER_DECODER, _T5, MODELING),
        Family("bart", ENCODER_DECODER, _BART, MODELING),
        Family("mbart", ENCODER_DECODER, _BART, MODELING),
    ]


FAMILIES: dict[str, Family] = {row.model_type: row for row in _rows()}


def get_family(model_type: str | None) -> Family | None:
    return FAMILIES.get(model_type)


def kind_of(config: Any) -> str:
    """ENCODER, DECODER or ENCODER_DECODER; a family without a row by what transformers has for it (a causal LM
    class and no masked-LM class: a decoder)."""
    row = get_family(getattr(config, "model_type", None))
    if row is not None:
        return row.kind
    if getattr(config, "is_encoder_decoder", False):
        return ENCODER_DECODER
    model_type = getattr(config, "model_type", None)
    causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return DECODER if causal else ENCODER


def is_decoder(config: Any) -> bool:
    """A decoder-only (causal) model: each token sees only those before it, so a sequence is read at its last token."""
    return kind_of(config) == DECODER


def stack_sizes(config: Any) -> list[int]:
    """The number of blocks of each stack, encoder first (for a family without a row: ``num_hidden_layers``, and the
    decoder's count of an encoder-decoder)."""
    row = get_family(getattr(config, "model_type", None))
    if row is not None:
        return [prod(int(getattr(config, name)) for name in stack.count) for stack in row.stacks]
    sizes = [int(config.num_hidden_layers)]
    if getattr(config, "is_encoder_decoder", False):
        decoder = next(
            (getattr(config, n) for n in ("num_decoder_layers", "decoder_layers") if getattr(config, n, None)), None
        )
        sizes.append(int(decoder or config.num_hidden_layers))
    return sizes


def num_blocks(config: Any) -> int:
    """How many blocks carry adapters: an encoder-decoder's encoder and decoder blocks together."""
    return sum(stack_sizes(config))


def block_offsets(config: Any) -> list[int]:
    """The index of each stack's first block: 0 for the encoder, the encoder's block count for the decoder."""
    sizes = stack_sizes(config)
    return [sum(sizes[:i]) for i in range(len(sizes))]


def block_index(config: Any, stack: int, index: int) -> int:
    """The index of block ``index`` of stack ``stack`` (0: encoder or the only stack, 1: decoder) among all blocks."""
    return block_offsets(config)[stack] + index


def interface_fields(row: Family) -> dict[str, Any] | None:
    """The ``AdapterModelInterface`` fields of a KIT_INTERFACE row (``None`` for the others): the places give the
    layers, the attention module and its output projection and the feed-forward output."""
    if row.adapters != KIT_INTERFACE:
        return None
    (stack,) = row.stacks
    attention, output = stack.places["attention"].output.rsplit(".", 1)
    fields = {
        "model_layers": stack.layers,
        "layer_self_attn": attention,
        "layer_cross_attn": None,
        "attn_o_proj": output,
        "layer_output_proj": stack.places["ffn"].output,
        "layer_ln_1": None,
        "layer_ln_2": None,
    }
    return fields | dict(row.interface)
