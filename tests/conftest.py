"""Shared fixtures: tiny random models saved as local folders, so nothing is ever downloaded."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    RobertaConfig,
)


# The local Hub-compatible server and its `hub` fixture (tests/hub_server.py).
pytest_plugins = ["tests.hub_server"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = dict(
    vocab_size=30522,  # the embedded model's WordPiece vocabulary, whose tokenizer the tiny models borrow
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=130,
    pad_token_id=0,
    initializer_range=0.2,  # wider than BERT's 0.02 so that a random body separates inputs and toy tasks learn
)
DECODER = dict(  # GPT-2 / Llama names for the same tiny shape
    vocab_size=30522, n_embd=32, n_layer=2, n_head=4, n_positions=130, pad_token_id=0, initializer_range=0.2
)
ARCHITECTURES = {
    "bert": lambda: BertConfig(**TINY),
    "roberta": lambda: RobertaConfig(**TINY),
    "gpt2": lambda: GPT2Config(**DECODER),
    "llama": lambda: LlamaConfig(**{**TINY, "num_key_value_heads": 2}),
}


@pytest.fixture(autouse=True)
def _restore_environment():
    """transformers' TrainingArguments writes settings into os.environ (``ACCELERATE_MIXED_PRECISION=bf16`` for
    bf16=True), where every later Trainer of the process would find them: no test's settings reach the next test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def embedded_path() -> str:
    from hf_adapter_kit.modeling import DEFAULT_MODEL, resolve_model_path

    return resolve_model_path(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, embedded_path) -> dict[str, str]:
    """One folder per architecture with random weights, a config and the embedded model's tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(embedded_path)
    folders = {}
    for name, config_cls in ARCHITECTURES.items():
        folder = tmp_path_factory.mktemp(f"tiny-{name}")
        torch.manual_seed(0)
        AutoModel.from_config(config_cls()).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = str(folder)
    return folders


# ChatML, as SmolLM2's template, without its default system message.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' "
    "+ '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, embedded_path) -> str:
    """A tiny random Llama causal LM (tied embeddings, as SmolLM2) with a ChatML chat template whose turns end with
    the eos token ``<|im_end|>``: the embedded model's WordPiece tokenizer plus the two ChatML tokens."""
    tokenizer = AutoTokenizer.from_pretrained(embedded_path)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(
        **{**TINY, "vocab_size": len(tokenizer), "num_key_value_heads": 2, "tie_word_embeddings": True},
        eos_token_id=eos,
        bos_token_id=None,
    )
    folder = tmp_path_factory.mktemp("tiny-llm")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = eos, tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def texts() -> list[str]:
    return ["a fine day", "the worst flight ever, never again", "ok", "delayed two hours but friendly crew"]


@pytest.fixture
def clean_dir(tmp_path):
    """A folder that tests may fill; removed afterwards."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


WORDS = {"positive": ["great", "lovely", "superb", "fine"], "negative": ["awful", "rude", "late", "broken"]}


def perturb(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Trainable weights moved away from their initial values by Gaussian noise of std ``scale``: adapters start as
    the identity (LoRA's B and the up-projections are zero), which save/load, removal and routing checks would pass
    for nothing, and a zero up-projection leaves its down-projection without gradient."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * scale)
    return model


def write_csv(path: Path, rows: int, seed: int = 0) -> Path:
    generator = torch.Generator().manual_seed(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "stars"])
        for i in range(rows):
            label = "positive" if i % 2 else "negative"
            word = WORDS[label][int(torch.randint(4, (1,), generator=generator))]
            writer.writerow([f"the flight was {word} today", label])
    return path


@pytest.fixture
def toy_files(tmp_path) -> dict[str, str]:
    return {
        "train_file": str(write_csv(tmp_path / "train.csv", 64)),
        "validation_file": str(write_csv(tmp_path / "val.csv", 16, seed=1)),
        "test_file": str(write_csv(tmp_path / "test.csv", 16, seed=2)),
        "text_column": "review",
        "label_column": "stars",
    }


# -- one tiny random model per family (tests/test_families.py) ------------------------------------------------------
FAMILY_SHAPE = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    vocab_size=128,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
_KV = dict(num_key_value_heads=2, head_dim=8)  # grouped keys and values; small heads where the default is 128+
_SEQ2SEQ = dict(
    encoder_layers=2,
    decoder_layers=2,
    encoder_ffn_dim=37,
    decoder_ffn_dim=37,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    decoder_start_token_id=2,
)
_T5 = dict(d_kv=8, d_ff=37, num_decoder_layers=2, decoder_start_token_id=0)
FAMILY_OPTIONS = {  # what each family needs beyond FAMILY_SHAPE to stay tiny and valid
    "bert": {},
    "roberta": {},
    "xlm-roberta": {},
    "distilbert": {"hidden_dim": 37},
    "deberta-v2": {"pooler_hidden_size": 32},
    "electra": {"embedding_size": 32},
    "modernbert": {"cls_token_id": 1, "sep_token_id": 2, "global_attn_every_n_layers": 2, "local_attention": 16},
    "albert": {"embedding_size": 16},
    "gpt2": {},
    "gpt_neox": {},
    "llama": _KV,
    "mistral": _KV,
    "mixtral": {**_KV, "num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2": _KV,
    "qwen3": _KV,
    "qwen3_moe": {**_KV, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
    "gemma": _KV,
    "gemma2": _KV,
    "gemma3_text": _KV,
    "phi3": _KV,
    "olmo2": _KV,
    "granite": _KV,
    "t5": _T5,
    "mt5": _T5,
    "bart": _SEQ2SEQ,
    "mbart": _SEQ2SEQ,
}


def family_config(family: str):
    from transformers import AutoConfig

    return AutoConfig.for_model(family, **FAMILY_SHAPE, **FAMILY_OPTIONS[family])


@pytest.fixture(scope="session")
def family_model():
    """``family_model(family)``: a fresh copy of the family's tiny random model with its usual head (sequence
    classification for encoders, causal LM for decoders, seq2seq LM for encoder-decoders), built once per session."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from hf_adapter_kit.modeling.families import DECODER, ENCODER, kind_of

    heads = {ENCODER: AutoModelForSequenceClassification, DECODER: AutoModelForCausalLM}
    built: dict = {}

    def make(family: str):
        if family not in built:
            config = family_config(family)
            torch.manual_seed(0)
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                built[family] = heads.get(kind_of(config), AutoModelForSeq2SeqLM).from_config(config).eval()
            finally:
                hf_logging.set_verbosity(verbosity)
        return copy.deepcopy(built[family])

    return make


class UnplacedConfig(PretrainedConfig):
    """A model family no table knows, whose blocks hold two candidates for each output projection: attention
    ``o_proj`` and ``out_proj``, feed-forward ``down_proj`` and ``w2``."""

    model_type = "hf-adapter-kit-unplaced"

    def __init__(self, hidden_size: int = 64, num_hidden_layers: int = 2, **kwargs):
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        super().__init__(**kwargs)


class UnplacedModel(PreTrainedModel):
    config_class = UnplacedConfig
    base_model_prefix = "body"

    def __init__(self, config: UnplacedConfig):
        super().__init__(config)
        h = config.hidden_size
        self.embed = torch.nn.Embedding(50, h)
        self.layers = torch.nn.ModuleList(_UnplacedBlock(h) for _ in range(config.num_hidden_layers))

    def forward(self, input_ids):
        hidden = self.embed(input_ids)
        for block in self.layers:
            hidden = block(hidden)
        return hidden


class _UnplacedBlock(torch.nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.self_attn = torch.nn.ModuleDict(
            {name: torch.nn.Linear(h, h) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")}
        )
        self.mlp = torch.nn.ModuleDict(
            {"up_proj": torch.nn.Linear(h, 2 * h), "down_proj": torch.nn.Linear(2 * h, h), "w2": torch.nn.Linear(h, h)}
        )

    def forward(self, hidden):
        a, m = self.self_attn, self.mlp
        hidden = hidden + a["out_proj"](a["o_proj"](a["v_proj"](hidden)))
        return hidden + m["w2"](m["down_proj"](torch.relu(m["up_proj"](hidden))))


# -- tiny random encoder-decoders (tests/test_text2text.py) ---------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_seq2seq_dirs(tmp_path_factory, embedded_path) -> dict[str, str]:
    """A tiny random T5 and BART (hidden 32, 2 encoder and 2 decoder blocks) saved as local folders with the embedded
    model's WordPiece tokenizer: its ``[SEP]`` is the eos token that ends every target, ``[PAD]`` pads (and starts
    T5's decoder, BART's starts with eos, as theirs do), and its inputs are ``input_ids`` and ``attention_mask`` only
    (an encoder-decoder takes no ``token_type_ids``)."""
    from transformers import AutoModelForSeq2SeqLM, BartConfig, T5Config

    tokenizer = AutoTokenizer.from_pretrained(embedded_path, model_input_names=["input_ids", "attention_mask"])
    tokenizer.eos_token = tokenizer.sep_token
    pad, bos, eos = tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
    shared = dict(vocab_size=len(tokenizer), pad_token_id=pad, eos_token_id=eos)
    configs = {
        "t5": T5Config(
            **shared, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
            decoder_start_token_id=pad,
        ),
        "bart": BartConfig(
            **shared, d_model=32, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=37, decoder_ffn_dim=37,
            encoder_attention_heads=4, decoder_attention_heads=4, max_position_embeddings=130, bos_token_id=bos,
            decoder_start_token_id=eos, forced_eos_token_id=eos,
        ),
    }  # fmt: skip
    folders = {}
    for name, config in configs.items():
        folder = tmp_path_factory.mktemp(f"tiny-{name}")
        torch.manual_seed(0)
        AutoModelForSeq2SeqLM.from_config(config).save_pretrained(folder)
        # BART's config names a bos token ([CLS], which the WordPiece tokenizer starts every text with); T5 has none
        tokenizer.bos_token = tokenizer.cls_token if name == "bart" else None
        tokenizer.save_pretrained(folder)
        folders[name] = str(folder)
    return folders


# -- tiny decoders of other families with a chat template (tests/test_llm_families.py, tests/test_trl.py) -----------
CHAT_FAMILIES = ("qwen3", "gemma3_text", "mistral", "phi3")


def chatml_tokenizer(embedded_path: str):
    """The embedded model's WordPiece tokenizer plus the two ChatML tokens, with :data:`CHAT_TEMPLATE`; its eos is
    ``<|im_end|>``, the token that ends every turn (as ``tiny_llm_dir``'s)."""
    tokenizer = AutoTokenizer.from_pretrained(embedded_path)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def chat_llm_dir(tmp_path_factory, embedded_path):
    """``chat_llm_dir(family)``: a folder with a tiny random causal LM of that family (``family_config``'s shape, the
    family's own defaults otherwise, e.g. Gemma 3's tied embeddings) and :func:`chatml_tokenizer`, as ``tiny_llm_dir``
    is for Llama; built once per session, on first use."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = chatml_tokenizer(embedded_path)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    shape = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=130,  # prompts of up to 64 tokens and their answers
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
        bos_token_id=None,
        initializer_range=0.2,
    )
    built: dict[str, str] = {}

    def make(family: str) -> str:
        if family not in built:
            config = AutoConfig.for_model(family, **{**FAMILY_SHAPE, **FAMILY_OPTIONS[family], **shape})
            folder = tmp_path_factory.mktemp(f"tiny-chat-{family}")
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config)
            model.generation_config.eos_token_id, model.generation_config.pad_token_id = eos, tokenizer.pad_token_id
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            built[family] = str(folder)
        return built[family]

    return make
