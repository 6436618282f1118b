"""Adapter folders saved by hf_adapter_kit 0.1.0 (before one folder per method) still load, with the same outputs.

The fixtures and how they were made: ``tests/fixtures/legacy/README.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_adapter_kit import from_pretrained
from tests.test_methods_matrix import _batch


LEGACY = Path(__file__).parent / "fixtures" / "legacy"
FOLDERS = sorted(p.name for p in LEGACY.iterdir() if p.is_dir())


def test_every_kit_method_and_backend_has_a_fixture():
    assert FOLDERS == [
        "houlsby-peft",
        "hyperformer-adapters",
        "hyperformer-peft",
        "parallel-adapters",
        "parallel-peft",
        "pfeiffer-peft",
    ]


@pytest.mark.parametrize("name", FOLDERS)
def test_legacy_folder_loads_with_the_same_outputs(tiny_model_dirs, texts, name):
    folder = LEGACY / name
    model = from_pretrained(folder, base_model=tiny_model_dirs["bert"])
    routed = {"task_ids": ["a", "b", "a", "b"]} if name.startswith(("parallel", "hyperformer")) else {}
    with torch.no_grad():
        logits = model(**_batch(tiny_model_dirs["bert"], texts), **routed).logits
    torch.testing.assert_close(logits, load_file(folder / "expected_logits.safetensors")["logits"])
