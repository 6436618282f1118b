"""Kit folders are the libraries' own formats: plain `adapters` and plain PEFT load them, and the kit loads theirs."""

from __future__ import annotations

import json

import adapters
import datasets
import peft
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from hf_adapter_kit import AdapterKitError, from_pretrained, get_config
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.data import load_task
from hf_adapter_kit.folders import AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.modeling import load_base_model
from tests.conftest import TINY, perturb


LABELS = ["neg", "pos"]


def _trained(folder, method, backend):
    torch.manual_seed(0)
    base = load_base_model(folder, LABELS)
    model = get_backend(backend).attach(base, get_config(method, backend=backend), "toy")
    attach_meta(
        model,
        AdapterMeta.for_model(
            base, method=method, backend=backend, adapter_name="toy", base_model=folder, label_names=LABELS
        ),
    )
    perturb(model, 0.05)
    return model.eval()


def _plain_base(folder):
    torch.manual_seed(1)  # a different random head: the loaded one must replace it
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).eval()


def test_plain_adapters_loads_kit_folder(tiny_model_dirs, texts, tmp_path):
    folder = tiny_model_dirs["bert"]
    model = _trained(folder, "pfeiffer", "adapters")
    save_adapter(model, tmp_path / "a")
    plain = _plain_base(folder)
    adapters.init(plain)
    name = plain.load_adapter(str(tmp_path / "a"), set_active=True, use_safetensors=True)
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert name == "toy" and torch.equal(plain(**batch).logits, model(**batch).logits)


def test_plain_peft_loads_kit_folder(tiny_model_dirs, texts, tmp_path):
    folder = tiny_model_dirs["roberta"]
    model = _trained(folder, "lora", "peft")
    save_adapter(model, tmp_path / "p")
    assert json.loads((tmp_path / "p" / "adapter_config.json").read_text())["peft_type"] == "LORA"
    plain = peft.PeftModel.from_pretrained(_plain_base(folder), str(tmp_path / "p")).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(plain(**batch).logits, model(**batch).logits)


def test_kit_loads_plain_adapters_folder(tiny_model_dirs, texts, tmp_path):
    """A folder written by plain `adapters` (no hf_adapter_kit.json) loads with the kit, labels included."""
    folder = tiny_model_dirs["bert"]
    labels = {"id2label": {0: "bad", 1: "good"}, "label2id": {"bad": 0, "good": 1}}
    plain = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, **labels)
    adapters.init(plain)
    plain.add_adapter("task", config="double_seq_bn")
    plain.set_active_adapters("task")
    with torch.no_grad():
        for name, param in plain.named_parameters():
            if "adapters.task" in name:
                param.add_(0.05)
    plain.eval().save_adapter(str(tmp_path / "raw"), "task", use_safetensors=True)
    loaded = from_pretrained(tmp_path / "raw")
    assert loaded.hf_adapter_kit_meta.method == "houlsby" and loaded.config.id2label == {0: "bad", 1: "good"}
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, plain(**batch).logits)


def test_kit_loads_plain_peft_folder(tiny_model_dirs, texts, tmp_path):
    folder = tiny_model_dirs["roberta"]
    plain = peft.get_peft_model(
        _plain_base(folder), peft.LoraConfig(task_type="SEQ_CLS", r=4, init_lora_weights=False)
    )
    plain.eval().save_pretrained(str(tmp_path / "raw"))
    loaded = from_pretrained(tmp_path / "raw")
    assert loaded.hf_adapter_kit_meta.method == "lora" and loaded.config.num_labels == 2
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, plain(**batch).logits)


def test_folder_that_is_not_an_adapter(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AdapterKitError, match=r"neither hf_adapter_kit.json nor adapter_config.json"):
        from_pretrained(tmp_path)
    with pytest.raises(AdapterKitError, match=r"does not exist or is not a folder"):
        from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("other", ["roberta", "wider-bert"])
def test_adapter_for_another_base_model_is_refused(tiny_model_dirs, tmp_path, other):
    model = _trained(tiny_model_dirs["bert"], "pfeiffer", "adapters")
    save_adapter(model, tmp_path / "a")
    if other == "roberta":
        base, match = tiny_model_dirs["roberta"], r"model_type='bert'.*model_type='roberta'"
    else:
        base, match = str(tmp_path / "wide"), r"hidden_size=32.*hidden_size=48"
        BertModel(BertConfig(**{**TINY, "hidden_size": 48})).save_pretrained(base)
    with pytest.raises(AdapterKitError, match=match):
        from_pretrained(tmp_path / "a", base_model=base)


def test_pickle_only_folder_is_refused(tiny_model_dirs, tmp_path):
    model = _trained(tiny_model_dirs["bert"], "pfeiffer", "adapters")
    save_adapter(model, tmp_path / "a")
    (tmp_path / "a" / "adapter.safetensors").rename(tmp_path / "a" / "pytorch_adapter.bin")
    with pytest.raises(AdapterKitError, match=r"adapter.safetensors.*pickled weights \['pytorch_adapter.bin'\]"):
        from_pretrained(tmp_path / "a")


def test_save_replaces_previous_adapter_whole(tiny_model_dirs, tmp_path):
    model = _trained(tiny_model_dirs["bert"], "pfeiffer", "adapters")
    save_adapter(model, tmp_path / "a")
    (tmp_path / "a" / "stale.txt").write_text("from an older save")
    save_adapter(model, tmp_path / "a")
    assert not (tmp_path / "a" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no staging or old folder left beside it


def test_hub_dataset_path(monkeypatch):
    """Offline, the Hub loader is replaced by a local DatasetDict shaped like rotten_tomatoes."""
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    fake = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"text": [f"{split} {i}" for i in range(8)], "label": [i % 2 for i in range(8)]}, features=features
            )
            for split in ("train", "validation", "test")
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name: calls.append(name) or fake)
    data = load_task("rotten_tomatoes")
    assert calls == ["rotten_tomatoes"] and data.label_names == ["neg", "pos"]
    assert data.splits["test"]["text"][0] == "test 0"
