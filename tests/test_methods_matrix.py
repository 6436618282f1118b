"""Every method x backend x architecture through the same checks (PEFT's test-matrix habit).

Checks: only adapter (and head) parameters are trainable and receive gradients; save then load into a fresh base
model gives identical outputs; removing the adapter gives the base model's outputs bit for bit; a few steps on a
learnable toy task lower the loss.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from hf_adapter_kit import get_config, list_methods
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.hub import from_pretrained
from hf_adapter_kit.modeling import encoder_of, load_base_model
from hf_adapter_kit.saving import AdapterMeta, attach_meta, remove_adapter, save_adapter


CASES = [
    ("pfeiffer", "adapters", {"reduction_factor": 4}),
    ("houlsby", "adapters", {"reduction_factor": 4}),
    ("lora", "peft", {"r": 4}),
    ("lora", "adapters", {"r": 4}),
    ("head", "transformers", {}),
    ("full", "transformers", {}),
]
ARCHS = ["bert", "roberta"]
LABELS = ["neg", "pos"]


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


def _perturb(model) -> None:
    """Adapters start as (near) identity; move their weights so that save/load and removal checks mean something."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)


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
            markers = {"pfeiffer": "adapters.toy", "houlsby": "adapters.toy", "head": "classifier"}
            expected = markers.get(method, "lora")
            assert all(expected in n or "classifier" in n for n in trainable), sorted(trainable)[:5]
        batch = _batch(tiny_model_dirs[arch], texts)
        loss = model(**batch, labels=torch.tensor([0, 1, 0, 1])).loss
        loss.backward()
        got_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert got_grad and got_grad <= trainable
        assert any("classifier" not in n for n in got_grad) or method == "head"

    def test_save_load_identical_and_removal_restores_base(
        self, tiny_model_dirs, texts, tmp_path, arch, method, backend, options
    ):
        folder = tiny_model_dirs[arch]
        batch = _batch(folder, texts)
        pristine = load_base_model(folder, LABELS).eval()
        with torch.no_grad():
            base_hidden = encoder_of(pristine)(**batch).last_hidden_state
        model = _attach(folder, method, backend, options)
        _perturb(model)
        model.eval()
        with torch.no_grad():
            expected = model(**batch).logits
        save_adapter(model, tmp_path / "adapter")
        reloaded = from_pretrained(tmp_path / "adapter")
        with torch.no_grad():
            assert torch.equal(reloaded(**batch).logits, expected)
        if backend == "transformers":
            return  # the baselines add no module to remove
        restored = remove_adapter(reloaded).eval()
        with torch.no_grad():
            assert torch.equal(encoder_of(restored)(**batch).last_hidden_state, base_hidden)

    def test_toy_task_loss_decreases(self, tiny_model_dirs, arch, method, backend, options):
        folder = tiny_model_dirs[arch]
        model = _attach(folder, method, backend, options).train()
        # Learnable: the label is whether the sentence mentions "great".
        texts = ["this is great", "great stuff here", "so great", "this is bad", "bad stuff here", "so bad"] * 2
        labels = torch.tensor([1, 1, 1, 0, 0, 0] * 2)
        batch = _batch(folder, texts)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        losses = []
        for _ in range(30):
            loss = model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        assert sum(losses[-5:]) < 0.8 * sum(losses[:5]), losses  # at least 20% lower after 30 steps
