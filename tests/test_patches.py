"""The kit's patches to other libraries: each fails loudly here when the library changes under it."""

from __future__ import annotations

import inspect

import pytest
import transformers

import hf_adapter_kit as kit
from hf_adapter_kit.folders import save_adapter
from hf_adapter_kit.serving import transformers_pipeline as patch
from tests.test_hub import _model


def test_transformers_version_is_the_one_the_patch_was_written_against():
    assert transformers.__version__.startswith(patch.WRITTEN_AGAINST), (
        f"patches/transformers_pipeline.py was written against transformers {patch.WRITTEN_AGAINST}.x; "
        f"{transformers.__version__} is installed: re-check the patch, then update WRITTEN_AGAINST."
    )
    parameters = inspect.signature(patch.original_pipeline).parameters
    assert list(parameters)[:2] == ["task", "model"] and {"tokenizer", "revision", "token"} <= set(parameters)


def test_patch_is_applied_on_import():
    assert transformers.pipeline is patch.pipeline and transformers.pipelines.pipeline is patch.pipeline


@pytest.mark.parametrize(("method", "backend"), [("lora", "peft"), ("pfeiffer", "adapters")])
def test_transformers_pipeline_on_a_kit_folder(tiny_model_dirs, tmp_path, method, backend):
    model = _model(tiny_model_dirs["bert"], method, backend)
    folder = save_adapter(model, tmp_path / "a")
    texts = ["lovely crew", "lost my bag"]
    predictions = transformers.pipeline("text-classification", model=str(folder))(texts)
    assert predictions == kit.pipeline("text-classification", model=model)(texts)
    assert {p["label"] for p in predictions} <= {"negative", "positive"}


def test_other_models_go_to_transformers_unchanged(tiny_model_dirs, tmp_path):
    plain = tmp_path / "plain"
    transformers.AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dirs["bert"], num_labels=3
    ).save_pretrained(plain)
    classifier = transformers.pipeline("text-classification", model=str(plain), tokenizer=tiny_model_dirs["bert"])
    assert not hasattr(classifier.model, "hf_adapter_kit_meta")
    assert classifier("hello")[0]["label"] in {"LABEL_0", "LABEL_1", "LABEL_2"}


def test_transformers_pipeline_on_a_hub_repo(hub, tiny_model_dirs):
    model = _model(tiny_model_dirs["roberta"], "lora", "peft")
    kit.push_to_hub(model, "kit-tests/via-transformers", token=hub.token)
    predictions = transformers.pipeline("text-classification", model="kit-tests/via-transformers")(["ok"])
    assert predictions == kit.pipeline("text-classification", model=model)(["ok"])
    assert predictions[0]["label"] in {"negative", "positive"}


def test_transformers_pipeline_with_three_labels(tiny_model_dirs, tmp_path):
    """transformers alone would build a 2-label head from the base config; the kit's labels and head size win."""
    from hf_adapter_kit import get_config
    from hf_adapter_kit.backends import get_backend
    from hf_adapter_kit.folders import AdapterMeta, attach_meta
    from hf_adapter_kit.modeling import load_base_model

    labels = ["negative", "neutral", "positive"]
    base = load_base_model(tiny_model_dirs["bert"], labels)
    model = get_backend("peft").attach(base, get_config("lora"), "toy")
    attach_meta(
        model,
        AdapterMeta.for_model(
            base,
            method="lora",
            backend="peft",
            adapter_name="toy",
            base_model=tiny_model_dirs["bert"],
            label_names=labels,
        ),
    )
    folder = save_adapter(model.eval(), tmp_path / "three")
    scores = transformers.pipeline("text-classification", model=str(folder), top_k=None)(["fine"])[0]
    assert sorted(p["label"] for p in scores) == labels
