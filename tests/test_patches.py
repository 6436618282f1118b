"""The kit's patches to other libraries: each fails loudly here when the library changes under it."""

from __future__ import annotations

import inspect
import re
from collections import Counter

import pytest
import transformers
from huggingface_hub import HfApi

import hf_adapter_kit as kit
from hf_adapter_kit.folders import save_adapter
from hf_adapter_kit.serving import transformers_pipeline as patch
from tests.test_hub import _model


def test_transformers_version_is_the_one_the_patch_was_written_against():
    assert transformers.__version__.startswith(patch.WRITTEN_AGAINST), (
        f"serving/transformers_pipeline.py was written against transformers {patch.WRITTEN_AGAINST}.x; "
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


@pytest.mark.parametrize(
    ("method", "backend"),
    [
        ("lora", "peft"),
        ("pfeiffer", "peft"),
        ("pfeiffer", "adapters"),
        ("head", "transformers"),
        ("full", "transformers"),
    ],
)
def test_transformers_pipeline_on_a_hub_repo(hub, tiny_model_dirs, method, backend):
    """Each way a kit repo is told apart: a LoRA config and hf_adapter_kit.json, a kit PEFT type, the hint in an
    ``adapters`` config, neither config (the head baseline), a config.json marked by the kit (full fine-tuning)."""
    model = _model(tiny_model_dirs["roberta"], method, backend)
    repo = f"kit-tests/via-transformers-{method}-{backend}"
    kit.push_to_hub(model, repo, token=hub.token)
    predictions = transformers.pipeline("text-classification", model=repo)(["ok", "lost my bag"])
    assert predictions == kit.pipeline("text-classification", model=model)(["ok", "lost my bag"])
    assert {p["label"] for p in predictions} <= {"negative", "positive"}


def _requests(hub, function, task: str, repo: str) -> tuple[list[tuple[str, str]], str | None, object]:
    """The requests ``function(task, model=repo)`` makes (the repo's name and commit ids masked), the error it
    raises if any, and what it returns."""
    first, result, error = len(hub.requests), None, None
    try:
        result = function(task, model=repo)
    except Exception as err:  # compared between the original and the wrapper
        error = f"{type(err).__name__}: {str(err).replace(repo, '<repo>')}"
    masked = [
        (method, re.sub(r"\b[0-9a-f]{40}\b", "<commit>", path.replace(repo, "<repo>")))
        for method, path in hub.requests[first:]
    ]
    return masked, error, result


def _upload(hub, folder, *repos: str) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    for repo in repos:
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=str(folder))


PLAIN = {  # task -> a model class and the tiny model it is saved from
    "text-classification": (transformers.AutoModelForSequenceClassification, "bert"),
    "token-classification": (transformers.AutoModelForTokenClassification, "bert"),
    "text-generation": (transformers.AutoModelForCausalLM, "gpt2"),
}


@pytest.mark.parametrize("task", list(PLAIN))
def test_a_hub_model_that_is_not_the_kits_costs_no_request_more(hub, tiny_model_dirs, tmp_path, task):
    """transformers.pipeline after the import asks the Hub exactly what transformers' own function asks, in the
    same order, with an empty cache and a warm one; a missing repo gets the same requests and the same error."""
    auto, source = PLAIN[task]
    auto.from_pretrained(tiny_model_dirs[source]).save_pretrained(tmp_path / "plain")
    transformers.AutoTokenizer.from_pretrained(tiny_model_dirs[source]).save_pretrained(tmp_path / "plain")
    _upload(hub, tmp_path / "plain", "kit-tests/theirs", "kit-tests/ours")
    for cache in ("empty", "warm"):
        theirs = _requests(hub, patch.original_pipeline, task, "kit-tests/theirs")
        ours = _requests(hub, transformers.pipeline, task, "kit-tests/ours")
        assert ours[:2] == theirs[:2], cache
        assert theirs[1] is None and len(theirs[0]) > 2
        assert type(ours[2]) is type(theirs[2]) and not hasattr(ours[2].model, "hf_adapter_kit_meta")
    theirs = _requests(hub, patch.original_pipeline, task, "kit-tests/missing-a")
    ours = _requests(hub, transformers.pipeline, task, "kit-tests/missing-b")
    assert ours[:2] == theirs[:2] and theirs[1].startswith("OSError")


def test_a_peft_lora_repo_costs_one_request_for_the_kit_file(hub, tiny_model_dirs, tmp_path):
    """A LoRA config is PEFT's own whoever wrote it: hf_adapter_kit.json is asked once (its absence is cached at
    that commit), and nothing transformers asks is asked twice."""
    import peft

    base = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_model_dirs["bert"], num_labels=2)
    config = peft.LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"])
    peft.get_peft_model(base, config).save_pretrained(tmp_path / "lora")
    _upload(hub, tmp_path / "lora", "kit-tests/lora-theirs", "kit-tests/lora-ours")
    for cache in ("empty", "warm"):
        theirs = _requests(hub, patch.original_pipeline, "text-classification", "kit-tests/lora-theirs")
        ours = _requests(hub, transformers.pipeline, "text-classification", "kit-tests/lora-ours")
        assert theirs[1] is None and ours[1] is None
        added = Counter(ours[0]) - Counter(theirs[0])
        expected = {("HEAD", "/<repo>/resolve/main/hf_adapter_kit.json"): 1} if cache == "empty" else {}
        assert added == Counter(expected), cache
    served = [pipeline("lost my bag") for pipeline in (theirs[2], ours[2])]
    assert served[0] == served[1] and served[0][0]["label"] in {"LABEL_0", "LABEL_1"}  # transformers' own pipeline
    assert not hasattr(ours[2].model, "hf_adapter_kit_meta")


def test_a_repo_transformers_cannot_load_gets_its_error(hub, tmp_path):
    """Neither config.json nor adapter_config.json (the kit's head baseline has neither): the wrapper asks for
    hf_adapter_kit.json; without it, transformers asks its two files again and raises what it raises without the
    kit."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("notes")
    _upload(hub, tmp_path / "notes", "kit-tests/notes-theirs", "kit-tests/notes-ours")
    theirs = _requests(hub, patch.original_pipeline, "text-classification", "kit-tests/notes-theirs")
    ours = _requests(hub, transformers.pipeline, "text-classification", "kit-tests/notes-ours")
    assert ours[1] == theirs[1] and theirs[1] is not None
    asked_again = ("hf_adapter_kit.json", "config.json", "adapter_config.json")
    added = Counter(ours[0]) - Counter(theirs[0])
    assert added == Counter({("HEAD", f"/<repo>/resolve/main/{name}"): 1 for name in asked_again})


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
