"""Model cards: filled from the run (never placeholders), with a model-index of the measured metrics and a usage
snippet that runs."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from huggingface_hub import ModelCard

from hf_adapter_kit import train
from hf_adapter_kit.folders.cards import render_card
from tests.test_training import QUICK


CARD = re.compile(
    r"^---\n.*library_name: (?P<library>[\w-]+)\n.*pipeline_tag: text-classification\n.*tags:\n- hf_adapter_kit\n"
    r".*base_model_relation: adapter\n.*model-index:.*---\n\n# (?P<method>\w+) adapter for toy\n\n.+"
    r"\| trainable parameters \| [\d,]+ \([\d.]+% of the base model's [\d,]+\) \|\n"
    r"\| adapter size \| [\d,]+ bytes \|\n\| labels \| `negative`, `positive` \|.*"
    r"\| toy \| test \| Accuracy \| [01]\.\d{4} \|\n\| toy \| test \| Macro F1 \| [01]\.\d{4} \|.*"
    r"```python\nimport hf_adapter_kit as kit\n.*```.*Training took \d+ s \(\d+ steps\) on CPU.*"
    r"## Limitations\n\nTrained on 64 examples of `toy`.*- transformers 4\.57\.\d+\n",
    re.S,
)


@pytest.mark.parametrize(("method", "library"), [("pfeiffer", "adapter-transformers"), ("lora", "peft")])
def test_card_is_filled_and_its_snippet_runs(tiny_model_dirs, toy_files, tmp_path, method, library):
    result = train(
        method, "toy", str(tmp_path / "run"), model_name_or_path=tiny_model_dirs["bert"], **toy_files, **QUICK
    )
    text = (result.adapter_dir / "README.md").read_text()
    match = CARD.match(text)
    assert match, text
    assert match["library"] == library and match["method"] == method
    assert "{{" not in text and "TODO" not in text and "[More Information Needed]" not in text
    # The Hub reads the model-index: it must hold exactly the measured metrics.
    index = ModelCard(text).data.to_dict()["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in index} == {
        "accuracy": round(result.test_metrics["accuracy"], 4),
        "f1": round(result.test_metrics["f1_macro"], 4),
    }
    snippet = re.search(r"```python\n(import hf_adapter_kit.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "card-snippet", "exec"), {})
    predictions = eval(out.getvalue())  # the snippet prints the pipeline's list of dicts
    assert [set(p) for p in predictions] == [{"label", "score"}] * 2
    assert {p["label"] for p in predictions} <= {"negative", "positive"}


def test_card_names_the_hub_repo_when_pushed(tiny_model_dirs, toy_files, tmp_path):
    result = train(
        "head", "toy", str(tmp_path / "run"), model_name_or_path=tiny_model_dirs["bert"], **toy_files, **QUICK
    )
    card = render_card(result.adapter_dir, repo_id="someone/head-toy")
    assert "model='someone/head-toy'" in card.text and str(result.adapter_dir) not in card.text
    # the library's own API fetches the head from the repo too
    assert "load_file(hf_hub_download('someone/head-toy', 'head.safetensors'))" in card.text
    assert card.data.base_model_relation == "adapter" and card.data.library_name == "transformers"
    assert card.data.base_model is None  # a local base model is no Hub id: no base_model metadata, no link
    assert "huggingface.co//" not in card.text and f"`{tiny_model_dirs['bert']}`" in card.text


@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_multitask_card_reports_each_task_and_its_snippets_run(tiny_model_dirs, tmp_path, backend):
    tasks = ["tweets-polarity", "tweets-3way"]
    result = train(
        "parallel",
        "unused",
        str(tmp_path / "run"),
        backend=backend,
        tasks=tasks,
        model_name_or_path=tiny_model_dirs["bert"],
        max_train_samples=32,
        max_eval_samples=16,
        max_steps=2,
        max_length=16,
        disable_tqdm=True,
    )
    text = (result.adapter_dir / "README.md").read_text()
    assert "{{" not in text and "| labels | tweets-polarity: `negative`, `positive`; tweets-3way: `negative`, " in text
    index = ModelCard(text).data.to_dict()["model-index"][0]["results"]
    reported = {r["dataset"]["name"]: {m["type"]: m["value"] for m in r["metrics"]} for r in index}
    measured = result.meta.training["task_metrics"]
    assert reported == {
        t: {"accuracy": round(m["accuracy"], 4), "f1": round(m["f1_macro"], 4)} for t, m in measured.items()
    }
    snippets = re.findall(r"```python\n(import hf_adapter_kit.*?)```", text, re.S)
    assert len(snippets) == 2  # the kit's API, then the library's own (with the import that registers the method)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippets[0], "card-snippet", "exec"), {})
    predictions = eval(out.getvalue())
    assert set(predictions) == set(tasks) and all(len(p) == 1 for p in predictions.values())
    scope: dict = {}
    exec(compile(snippets[1], "card-library-snippet", "exec"), scope)
    assert scope["hidden"].shape[-1] == 32
