"""Every ```python block of a rendered card runs as written: offline, in a fresh interpreter, from an empty folder.

One adapter per backend (adapters, PEFT, the transformers baselines), a multi-task adapter with a sequence head and
a token head on each backend, and an adapter on the embedded default base model (a Hub id that resolves offline).
Adapters are saved with ``save_adapter`` (no training); the cards are the ``README.md`` that saving wrote.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModel

from hf_adapter_kit import get_config
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.folders import AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.folders.cards import is_hub_id, render_card
from hf_adapter_kit.modeling import DEFAULT_MODEL, load_base_model, resolve_model_path
from hf_adapter_kit.multitask import MultiTaskModel, TaskHead, attach_encoder
from tests.conftest import perturb


ROOT = Path(__file__).resolve().parents[1]
LABELS = ["negative", "positive"]
HEADS = [
    {"name": "sentiment", "kind": "sequence", "label_names": LABELS},
    {"name": "ner", "kind": "token", "label_names": ["O", "PLACE", "AIRLINE"]},
]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _perturb(model: torch.nn.Module) -> None:
    """Trainable weights away from their initial values (LoRA's B starts at zero), so an adapter that failed to
    load would show in the predictions."""
    torch.manual_seed(1)
    perturb(model, 0.1)


def _single(base: str, method: str, backend: str, folder: Path) -> Path:
    torch.manual_seed(0)
    model = load_base_model(base, LABELS)
    meta = AdapterMeta.for_model(
        model,
        method=method,
        backend=backend,
        adapter_name="toy",
        base_model=base,
        label_names=LABELS,
        task="toy",
        metrics={"accuracy": 0.5, "f1_macro": 0.5},
    )
    model = get_backend(backend).attach(model, get_config(method, backend=backend), "toy")
    _perturb(model)
    attach_meta(model, meta)
    return save_adapter(model.eval(), folder)


def _multitask(base: str, method: str, backend: str, folder: Path) -> Path:
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(resolve_model_path(base))
    tasks = [head["name"] for head in HEADS]
    meta = AdapterMeta.for_model(
        encoder,
        method=method,
        backend=backend,
        adapter_name="mt",
        base_model=base,
        label_names=[],
        task=", ".join(tasks),
        heads=HEADS,
        training={"task_metrics": {t: {"accuracy": 0.5, "f1_macro": 0.5} for t in tasks}},
    )
    encoder = attach_encoder(encoder, get_config(method, backend=backend, tasks=tasks), backend, "mt")
    model = MultiTaskModel(encoder, {h["name"]: TaskHead(h["kind"], len(h["label_names"])) for h in HEADS})
    _perturb(model)
    attach_meta(model, meta)
    return save_adapter(model.eval(), folder)


def run_blocks(text: str, tmp_path: Path) -> list[str]:
    """Run each python block in its own fresh interpreter (all at once), offline with an empty Hub cache, from an
    empty folder; return their outputs."""
    blocks = BLOCK.findall(text)
    assert blocks, text
    workdir, home = tmp_path / "reader", tmp_path / "reader-hf-home"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(home),
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT),  # the checkout under test, whatever the environment has installed
    }
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", block],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for block in blocks
    ]
    outputs = []
    try:
        for block, run in zip(blocks, runs, strict=True):
            stdout, stderr = run.communicate(timeout=300)
            assert run.returncode == 0, f"this card block failed:\n{block}\n{stderr[-3000:]}"
            outputs.append(stdout.strip().splitlines()[-1])
    finally:
        for run in runs:  # a failed block leaves no other one running
            if run.poll() is None:
                run.kill()
                run.wait()
    assert not any(workdir.iterdir())  # nothing written where the reader ran it
    return outputs


def _front_matter(text: str) -> dict:
    return ModelCard(text).data.to_dict()


SINGLE = {  # the library's imports, then how it attaches the adapter to the base model
    "adapters": (
        "import adapters",
        r"adapters\.init\(model\)\nmodel\.load_adapter\('{adapter}', set_active=True, use_safetensors=True\)",
    ),
    "peft": ("from peft import PeftModel", r"model = PeftModel\.from_pretrained\(model, '{adapter}'\)"),
    "head": (
        "from safetensors.torch import load_file",
        r"model\.load_state_dict\(load_file\('{adapter}/head\.safetensors'\), strict=False\)",
    ),
    "full": ("", r"model = AutoModelForSequenceClassification\.from_pretrained\('{adapter}'\)"),
}


@pytest.mark.parametrize(
    ("method", "backend"),
    [("pfeiffer", "adapters"), ("lora", "peft"), ("head", "transformers"), ("full", "transformers")],
)
def test_single_task_card_blocks_run_offline(tiny_model_dirs, tmp_path, method, backend):
    base = tiny_model_dirs["bert"]
    folder = _single(base, method, backend, tmp_path / "adapter")
    text = (folder / "README.md").read_text()
    adapter = re.escape(str(folder))
    library, load = SINGLE[method if backend == "transformers" else backend]
    card = re.compile(
        r"^---\n.*library_name: [\w-]+\n.*---\n\n# \w+ adapter for toy\n.*"
        rf"on top of\nthe local model `{re.escape(base)}` for \*\*toy\*\*\..*## How to use\n\n"
        rf"```python\nimport hf_adapter_kit as kit\n\nclassifier = kit\.pipeline\('text-classification', "
        rf"model='{adapter}'\)\nprint\(classifier\(\[.*\]\)\)\n```\n\n"
        rf"With [\w-]+'s own API \((without hf_adapter_kit|importing hf_adapter_kit registers this method with it)\):"
        rf"\n\n```python\n(import hf_adapter_kit  # registers the method with the library\n)?{re.escape(library)}.*"
        rf"\nbase = '{re.escape(base)}'\n.*{load.format(adapter=adapter)}\n.*"
        r"print\(\[model\.config\.id2label\[i\] for i in model\(\*\*batch\)\.logits\.argmax\(-1\)\.tolist\(\)\]\)\n```"
        r"\n\n## Training\n",
        re.S,
    )
    assert card.match(text), text
    # a local base model: named, never linked, and no base_model metadata (the Hub would link it)
    assert "huggingface.co//" not in text and "huggingface.co/" + base not in text
    assert "base_model" not in _front_matter(text)
    kit_out, library_out = run_blocks(text, tmp_path)
    predictions = ast.literal_eval(kit_out)
    assert [set(p) for p in predictions] == [{"label", "score"}] * 2
    # the library's own API loads the same adapter and head: the same labels
    assert ast.literal_eval(library_out) == [p["label"] for p in predictions]
    assert set(ast.literal_eval(library_out)) <= set(LABELS)


@pytest.mark.parametrize(("method", "backend"), [("parallel", "adapters"), ("hyperformer", "peft")])
def test_multitask_card_blocks_run_offline(tiny_model_dirs, tmp_path, method, backend):
    base = tiny_model_dirs["bert"]
    folder = _multitask(base, method, backend, tmp_path / "adapter")
    text = (folder / "README.md").read_text()
    library, load = {
        "adapters": (
            "import adapters",
            r"adapters\.init\(model\)\nmodel\.load_adapter\('{}', set_active=True, use_safetensors=True\)",
        ),
        "peft": ("from peft import PeftModel", r"model = PeftModel\.from_pretrained\(model, '{}'\)"),
    }[backend]
    card = re.compile(
        r".*\| labels \| sentiment: `negative`, `positive`; ner: `O`, `PLACE`, `AIRLINE` \|.*"
        rf"```python\nimport hf_adapter_kit as kit\n.*model = kit\.from_pretrained\('{re.escape(str(folder))}'\).*"
        r"out = model\(batch\['input_ids'\], batch\['attention_mask'\], task_ids=\['sentiment', 'ner'\]\).*```"
        rf".*```python\nimport hf_adapter_kit  # registers the method with the library\n{library}\n"
        rf".*model = AutoModel\.from_pretrained\(base\)\n{load.format(re.escape(str(folder)))}\n.*"
        r"hidden = model\(\*\*batch, task_ids=\['sentiment'\]\)\.last_hidden_state\n.*```",
        re.S,
    )
    assert card.match(text), text
    kit_out, library_out = run_blocks(text, tmp_path)
    predictions = ast.literal_eval(kit_out)
    assert set(predictions) == {"sentiment", "ner"}
    assert len(predictions["sentiment"]) == 1 and predictions["sentiment"][0] in LABELS  # one label per text
    (tags,) = predictions["ner"]  # one text, one label per token
    assert len(tags) > 2 and set(tags) <= {"O", "PLACE", "AIRLINE"}
    assert library_out.startswith("torch.Size([1, ") and library_out.endswith(", 32])")


def test_embedded_base_is_linked_and_its_blocks_run_offline(tmp_path):
    """The card names the Hub id (linked, base_model metadata); offline, both blocks find the embedded copy."""
    folder = _single(DEFAULT_MODEL, "lora", "peft", tmp_path / "adapter")
    text = (folder / "README.md").read_text()
    assert f"on top of\n[`{DEFAULT_MODEL}`](https://huggingface.co/{DEFAULT_MODEL}) for **toy**" in text
    assert _front_matter(text)["base_model"] == DEFAULT_MODEL
    assert "from hf_adapter_kit.modeling import resolve_model_path\n\n" in text
    assert f"base = resolve_model_path('{DEFAULT_MODEL}')" in text
    assert resolve_model_path(DEFAULT_MODEL) not in text  # the installed folder is this machine's, not the reader's
    kit_out, library_out = run_blocks(text, tmp_path)
    assert ast.literal_eval(library_out) == [p["label"] for p in ast.literal_eval(kit_out)]


def test_card_renders_from_the_metadata_at_hand(tiny_model_dirs, tmp_path):
    """``render_card(meta=...)`` writes the usage from the metadata given, not from the folder's json."""
    folder = _single(tiny_model_dirs["bert"], "lora", "peft", tmp_path / "adapter")
    meta = AdapterMeta.read(folder)
    assert render_card(folder, meta=meta).content == render_card(folder).content
    (folder / "hf_adapter_kit.json").unlink()
    meta.label_names = ["bad", "good"]
    text = render_card(folder, meta=meta).text
    assert "labels = ['bad', 'good']" in text and "| labels | `bad`, `good` |" in text


def test_only_hub_ids_count_as_hub_models(tiny_model_dirs, tmp_path):
    assert is_hub_id(DEFAULT_MODEL) and is_hub_id("bert-base-uncased") and is_hub_id("someone/model")
    assert not is_hub_id(tiny_model_dirs["bert"])
    assert not is_hub_id("") and not is_hub_id("./model") and not is_hub_id("a/b/c") and not is_hub_id("~/model")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_id(str(tmp_path / "org" / "name"))
