"""LoRA merged for serving (``from_pretrained(..., merge=True)``, ``pipeline(..., merge=True)``): a plain transformers
model with the base's modules only, answering as the adapter does; the other methods are refused before loading."""

from __future__ import annotations

import peft
import pytest
import torch
import transformers

import hf_adapter_kit as kit
from hf_adapter_kit import AdapterKitError, from_pretrained, train
from hf_adapter_kit.llm.generation import generate_answers
from tests.test_sft import PROMPT, QUICK, toy_instructions


@pytest.fixture(scope="module")
def lora_runs(tiny_llm_dir, tiny_model_dirs, tmp_path_factory):
    """LoRA on the tiny Llama (instruction tuning) with PEFT and with ``adapters``, and on the tiny BERT (a
    classifier), each trained a few steps at a high learning rate, so that the update is far from zero."""
    folder = tmp_path_factory.mktemp("merge")
    sft = dict(task_type="causal-lm", model_name_or_path=tiny_llm_dir, train_file=toy_instructions(folder), **QUICK)
    return {
        "peft": train("lora", "toy", str(folder / "peft"), backend="peft", **sft),
        "adapters": train("lora", "toy", str(folder / "adapters"), backend="adapters", **sft),
        "classifier": train(
            "lora",
            "tweets-polarity",
            str(folder / "clf"),
            model_name_or_path=tiny_model_dirs["bert"],
            max_train_samples=32,
            max_eval_samples=16,
            max_steps=3,
            disable_tqdm=True,
            learning_rate=1e-2,
        ),  # fmt: skip
    }


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("backend", ["peft", "adapters"])
def test_merged_lora_answers_as_the_adapter(lora_runs, tiny_llm_dir, backend):
    result = lora_runs[backend]
    tokenizer = result.tokenizer
    ids = torch.tensor([tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True)])
    adapter = from_pretrained(result.adapter_dir)
    merged = from_pretrained(result.adapter_dir, merge=True)
    assert isinstance(merged, transformers.LlamaForCausalLM) and not hasattr(merged, "hf_adapter_kit_meta")
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    assert not torch.allclose(logits(adapter, ids), logits(base, ids), atol=1e-3)  # the update is not zero
    torch.testing.assert_close(logits(merged, ids), logits(adapter, ids), rtol=1e-4, atol=1e-5)
    if backend == "peft":  # the base model's modules only: nothing left to compute at serving time
        assert {type(m) for m in merged.modules()} == {type(m) for m in base.modules()}
        assert merged.state_dict().keys() == base.state_dict().keys()
    prompts = [PROMPT, [{"role": "user", "content": "lost my bag again"}]]
    answers = generate_answers(adapter, tokenizer, prompts, max_new_tokens=5)
    assert generate_answers(merged, tokenizer, prompts, max_new_tokens=5) == answers
    settings = dict(max_new_tokens=5, do_sample=False, return_full_text=False)
    served = kit.pipeline(model=str(result.adapter_dir), merge=True)
    assert not isinstance(served.model, peft.PeftModel)
    assert served(PROMPT, **settings)[0]["generated_text"].strip() == answers[0].strip()
    theirs = transformers.pipeline("text-generation", model=str(result.adapter_dir), merge=True)
    assert theirs(PROMPT, **settings)[0]["generated_text"].strip() == answers[0].strip()


def test_merged_classifier_gives_the_same_labels(lora_runs):
    folder = str(lora_runs["classifier"].adapter_dir)
    texts = ["a fine day", "the worst flight ever", "ok", "delayed two hours but friendly crew"]
    unmerged = kit.pipeline(model=folder, top_k=None)(texts)
    merged = kit.pipeline(model=folder, merge=True, top_k=None)
    assert isinstance(merged.model, transformers.BertForSequenceClassification)
    for got, expected in zip(merged(texts), unmerged, strict=True):
        assert [d["label"] for d in got] == [d["label"] for d in expected]
        assert [d["score"] for d in got] == pytest.approx([d["score"] for d in expected], abs=1e-5)


def test_what_cannot_be_merged_is_refused_first(lora_runs, tiny_model_dirs, tmp_path, monkeypatch):
    pfeiffer = train(
        "pfeiffer", "tweets-polarity", str(tmp_path / "p"), model_name_or_path=tiny_model_dirs["bert"],
        max_train_samples=16, max_eval_samples=8, max_steps=1, disable_tqdm=True,
    )  # fmt: skip
    import hf_adapter_kit.folders.load as saving

    def no_loading(*args, **kwargs):
        raise AssertionError("the base model was loaded before the check")

    monkeypatch.setattr(saving, "load_base_model", no_loading)
    message = r"`merge`=True is not valid: False for a 'pfeiffer' adapter: only 'lora' is a linear update"
    with pytest.raises(AdapterKitError, match=message):
        from_pretrained(pfeiffer.adapter_dir, merge=True)
    with pytest.raises(AdapterKitError, match=message):
        kit.pipeline(model=str(pfeiffer.adapter_dir), merge=True)
    with pytest.raises(AdapterKitError, match=r"`merge`='yes' is not valid: True or False"):
        from_pretrained(pfeiffer.adapter_dir, merge="yes")
    monkeypatch.undo()
    model = lora_runs["classifier"].model
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(AdapterKitError, match=r"`merge`=True is not valid: False when `model` is a loaded model"):
        kit.pipeline(model=model, merge=True)
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items())  # the user's model is untouched
