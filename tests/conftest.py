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
