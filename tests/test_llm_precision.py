"""Precision and memory options on a tiny random Llama: gradient checkpointing (the same gradients as without, on
every backend and with several tasks in a batch) and a half-precision base (``torch_dtype``), trained and reloaded."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_adapter_kit import AdapterKitError, from_pretrained, get_config, train
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.modeling.checkpointing import enable
from tests.conftest import perturb


QUICK = dict(max_steps=2, per_device_train_batch_size=8, disable_tqdm=True, learning_rate=1e-2, max_length=64)
# (method, backend, method options): every library, and multi-task adapters routed per example
CASES = [
    ("lora", "peft", {}),
    ("pfeiffer", "adapters", {}),
    ("houlsby", "peft", {}),
    ("parallel", "peft", {"tasks": ["a", "b"]}),
    ("hyperformer", "peft", {"tasks": ["a", "b"]}),
    ("hyperformer", "adapters", {"tasks": ["a", "b"]}),
]


def with_adapter(folder: str, method: str, backend: str, options: dict) -> torch.nn.Module:
    base = AutoModelForCausalLM.from_pretrained(folder)
    config = get_config(method, backend, **options)
    model = get_backend(backend).attach(base, config, "x", kind="causal-lm")
    torch.manual_seed(1)
    return perturb(model).train()  # every adapter weight gets a gradient


def gradients(model, batch) -> dict[str, torch.Tensor]:
    torch.manual_seed(2)  # the same dropout masks in both runs; checkpointing replays them when it recomputes
    model(**batch).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize(("method", "backend", "options"), CASES, ids=[f"{m}-{b}" for m, b, _ in CASES])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_llm_dir, method, backend, options):
    model = with_adapter(tiny_llm_dir, method, backend, options)
    ids = torch.randint(3, 200, (4, 12), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": ids}
    if options.get("tasks"):
        batch["task_ids"] = ["a", "b", "b", "a"]  # both tasks in one batch: the recomputation must route the same
    plain = gradients(model, batch)
    enable(model)
    assert model.get_base_model().is_gradient_checkpointing if backend == "peft" else model.is_gradient_checkpointing
    checkpointed = gradients(model, batch)
    assert plain.keys() == checkpointed.keys() and plain
    for name, grad in plain.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_reentrant_checkpointing_on_request_trains_the_adapter(tiny_llm_dir):
    """``use_reentrant=True`` (transformers' own default) needs inputs that require gradients: the kit makes the
    embeddings' outputs require them, as PEFT does, so that the adapter inside the checkpointed blocks learns."""
    model = with_adapter(tiny_llm_dir, "lora", "peft", {})
    ids = torch.randint(3, 200, (2, 8), generator=torch.Generator().manual_seed(0))
    plain = gradients(model, {"input_ids": ids, "labels": ids})
    enable(model, {"use_reentrant": True})
    checkpointed = gradients(model, {"input_ids": ids, "labels": ids})
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("method", "backend"), [("lora", "peft"), ("pfeiffer", "adapters"), ("hyperformer", "peft")])
def test_training_with_gradient_checkpointing(tiny_llm_dir, toy_files, tmp_path, method, backend):
    """Through the kit's Trainer, whose own call to ``gradient_checkpointing_enable`` alone leaves a PEFT adapter
    without gradients (transformers 4.57 checkpoints reentrantly): the adapter trains and reloads."""
    result = train(
        method, "toy", str(tmp_path / "run"), backend=backend, task_type="causal-lm", model_name_or_path=tiny_llm_dir,
        gradient_checkpointing=True, **toy_files, **QUICK,
    )  # fmt: skip
    assert result.test_metrics["perplexity"] != result.test_metrics["zero_shot_perplexity"]
    reloaded = from_pretrained(result.adapter_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, result.model.eval()(input_ids=ids).logits)


def test_multitask_classification_with_gradient_checkpointing(tiny_model_dirs, tmp_path):
    """A multi-task model (mixed-task batches) trains with checkpointing through ``MultiTaskModel``'s own
    ``gradient_checkpointing_enable``, which the Trainer calls."""
    result = train(
        "hyperformer", None, str(tmp_path / "run"), backend="peft", tasks=["tweets-polarity", "tweets-subjectivity"],
        model_name_or_path=tiny_model_dirs["bert"], gradient_checkpointing=True, max_train_samples=32,
        max_eval_samples=16, **QUICK,
    )  # fmt: skip
    assert result.model.is_gradient_checkpointing
    assert all(0 <= value <= 1 for key, value in result.test_metrics.items() if key.endswith("accuracy"))


# (method, backend, dtype of the trained weights on a bf16 base): PEFT and the kit keep fp32 adapter weights;
# adapters' own modules take the base's dtype (the library's adapter_to), since they compute in their weights' dtype
DTYPES = [("lora", "peft", torch.float32), ("pfeiffer", "adapters", torch.bfloat16), ("hyperformer", "peft",
          torch.float32), ("parallel", "adapters", torch.float32)]  # fmt: skip


@pytest.mark.parametrize(("method", "backend", "adapter_dtype"), DTYPES, ids=[f"{m}-{b}" for m, b, _ in DTYPES])
def test_half_precision_base_trains_and_reloads(tiny_llm_dir, toy_files, tmp_path, method, backend, adapter_dtype):
    result = train(
        method, "toy", str(tmp_path / "run"), backend=backend, task_type="causal-lm", model_name_or_path=tiny_llm_dir,
        torch_dtype="bfloat16", **toy_files, **QUICK,
    )  # fmt: skip
    trained = {p.dtype for p in result.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in result.model.parameters() if not p.requires_grad}
    assert trained == {adapter_dtype} and frozen == {torch.bfloat16}
    assert result.test_metrics["perplexity"] != result.test_metrics["zero_shot_perplexity"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    ids = torch.tensor([tokenizer.apply_chat_template([{"role": "user", "content": "a fine day"}], tokenize=True)])
    reloaded = from_pretrained(result.adapter_dir, dtype=torch.bfloat16)
    with torch.no_grad():
        out = reloaded(input_ids=ids).logits
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
        assert torch.equal(out, result.model.eval()(input_ids=ids).logits)


def test_bad_torch_dtype_is_refused_before_anything_is_written(tiny_llm_dir, tmp_path):
    with pytest.raises(AdapterKitError, match=r"`torch_dtype`='half' is not valid: expected one of 'auto', "):
        train("lora", "tweets-polarity", str(tmp_path / "run"), task_type="causal-lm", torch_dtype="half")
    assert not (tmp_path / "run").exists()
