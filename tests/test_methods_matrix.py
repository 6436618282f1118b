"""Every method x backend x architecture through the same checks (PEFT's test-matrix habit).

Checks: only adapter (and head) parameters are trainable and receive gradients; save then load into a fresh base
model gives identical outputs; removing the adapter gives the base model's outputs bit for bit; a few steps on a
learnable toy task lower the loss. Multi-task methods (parallel, hyperformer) run every check on a batch that mixes
their two tasks; tests/test_custom_methods.py adds their own checks (mixed batch = per-task runs, fresh process, ...).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from hf_adapter_kit import from_pretrained, get_config, list_methods
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.folders import AdapterMeta, attach_meta, remove_adapter, save_adapter
from hf_adapter_kit.modeling import encoder_of, load_base_model
from tests.conftest import perturb


CASES = [
    ("pfeiffer", "adapters", {"reduction_factor": 4}),
    ("houlsby", "adapters", {"reduction_factor": 4}),
    ("lora", "peft", {"r": 4}),
    ("lora", "adapters", {"r": 4}),
    ("head", "transformers", {}),
    ("full", "transformers", {}),
    ("pfeiffer", "peft", {"reduction_factor": 4}),
    ("houlsby", "peft", {"reduction_factor": 4}),
    ("parallel", "adapters", {"reduction_factor": 4, "tasks": ["a", "b"]}),
    ("parallel", "peft", {"reduction_factor": 4, "tasks": ["a", "b"]}),
    ("hyperformer", "adapters", {"reduction_factor": 4, "tasks": ["a", "b"], "projected_dim": 8}),
    ("hyperformer", "peft", {"reduction_factor": 4, "tasks": ["a", "b"], "projected_dim": 8}),
]
ARCHS = ["bert", "roberta", "gpt2", "llama"]
LABELS = ["neg", "pos"]
HEADS = ("classifier", "score")  # BERT/RoBERTa, GPT-2/Llama
ADAPTER_MARKERS = {  # a trainable parameter's name shows which module it belongs to
    ("pfeiffer", "adapters"): "adapters.toy",
    ("houlsby", "adapters"): "adapters.toy",
    ("parallel", "adapters"): "adapters.toy",
    ("hyperformer", "adapters"): "shared_parameters.toy",
    ("lora", "adapters"): "loras.toy",
    ("lora", "peft"): "lora_",
    ("head", "transformers"): "no adapter",
}


def task_kwargs(options: dict, size: int) -> dict:
    """Multi-task adapters get a batch that mixes their tasks: a, b, a, b, ..."""
    tasks = options.get("tasks")
    return {"task_ids": [tasks[i % len(tasks)] for i in range(size)]} if tasks else {}


def test_matrix_covers_every_registered_method():
    assert sorted({method for method, _, _ in CASES}) == list_methods()


def _attach(folder: str, method: str, backend: str, options: dict):
    torch.manual_seed(0)
    base = load_base_model(folder, LABELS)
    model = get_backend(backend).attach(base, get_config(method, backend=backend, **options), "toy")
    meta = AdapterMeta.for_model(
        base, method=method, backend=backend, adapter_name="toy", base_model=folder, label_names=LABELS
    )
    attach_meta(model, meta)
    return model


def _batch(folder: str, texts: list[str]):
    return AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("method", "backend", "options"), CASES, ids=[f"{m}-{b}" for m, b, _ in CASES])
class TestMethodMatrix:
    def test_only_adapter_and_head_train(self, tiny_model_dirs, texts, arch, method, backend, options):
        model = _attach(tiny_model_dirs[arch], method, backend, options)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        total = sum(1 for _ in model.parameters())
        assert trainable, "nothing is trainable"
        if method == "full":
            assert len(trainable) == total
        else:
            frozen_body = [n for n, p in model.named_parameters() if not p.requires_grad]
            assert frozen_body and len(trainable) < total
            expected = ADAPTER_MARKERS.get((method, backend), "kit_")
            assert all(expected in n or any(h in n for h in HEADS) for n in trainable), sorted(trainable)[:5]
        perturb(model)  # zero-initialised up-projections would leave the down-projections without gradient
        batch = _batch(tiny_model_dirs[arch], texts)
        loss = model(**batch, labels=torch.tensor([0, 1, 0, 1]), **task_kwargs(options, 4)).loss
        loss.backward()
        got_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert got_grad <= trainable
        if method != "full":
            assert got_grad == trainable, sorted(trainable - got_grad)[:5]

    def test_save_load_identical_and_removal_restores_base(
        self, tiny_model_dirs, texts, tmp_path, arch, method, backend, options
    ):
        folder = tiny_model_dirs[arch]
        batch = _batch(folder, texts)
        pristine = load_base_model(folder, LABELS).eval()
        with torch.no_grad():
            base_hidden = encoder_of(pristine)(**batch).last_hidden_state
        model = _attach(folder, method, backend, options)
        perturb(model)
        model.eval()
        routed = task_kwargs(options, len(texts))
        with torch.no_grad():
            expected = model(**batch, **routed).logits
        save_adapter(model, tmp_path / "adapter")
        reloaded = from_pretrained(tmp_path / "adapter")
        with torch.no_grad():
            assert torch.equal(reloaded(**batch, **routed).logits, expected)
        if backend == "transformers":
            return  # the baselines add no module to remove
        restored = remove_adapter(reloaded).eval()
        with torch.no_grad():
            assert torch.equal(encoder_of(restored)(**batch).last_hidden_state, base_hidden)

    def test_toy_task_loss_decreases(self, tiny_model_dirs, arch, method, backend, options):
        folder = tiny_model_dirs[arch]
        model = _attach(folder, method, backend, options).train()
        # Learnable: the label is whether the sentence ends with "great" (decoders classify from the last token).
        texts = ["this is great", "the stuff was great", "so great", "this is bad", "the stuff was bad", "so bad"] * 2
        labels = torch.tensor([1, 1, 1, 0, 0, 0] * 2)
        batch = _batch(folder, texts)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        routed = task_kwargs(options, len(texts))

        def eval_loss() -> float:  # measured without dropout, so that the comparison is not noise
            model.eval()
            with torch.no_grad():
                loss = model(**batch, labels=labels, **routed).loss.item()
            model.train()
            return loss

        before = eval_loss()
        for _ in range(30):
            model(**batch, labels=labels, **routed).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        after = eval_loss()
        assert after < 0.9 * before, (before, after)  # at least 10% lower after 30 steps
