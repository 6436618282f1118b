"""push_to_hub / from_pretrained / pipeline through real HTTP: the real huggingface_hub client against a local
Hub-compatible server (tests/hub_server.py), for every method and backend, pulled in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hf_adapter_kit as kit
from hf_adapter_kit import AdapterKitError, get_config
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.folders import AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.folders.cards import render_card
from hf_adapter_kit.modeling import load_base_model
from tests.conftest import perturb


CASES = [
    ("pfeiffer", "adapters"),
    ("houlsby", "adapters"),
    ("lora", "peft"),
    ("lora", "adapters"),
    ("head", "transformers"),
    ("full", "transformers"),
    ("pfeiffer", "peft"),
    ("houlsby", "peft"),
    ("parallel", "adapters"),
    ("parallel", "peft"),
    ("hyperformer", "adapters"),
    ("hyperformer", "peft"),
]
LABELS = ["negative", "positive"]
TEXTS = ["what a lovely crew", "lost my bag again", "ok"]


def _model(folder: str, method: str, backend: str, seed: int = 0):
    torch.manual_seed(seed)
    base = load_base_model(folder, LABELS)
    model = get_backend(backend).attach(base, get_config(method, backend=backend), "toy")
    meta = AdapterMeta.for_model(
        base,
        method=method,
        backend=backend,
        adapter_name="toy",
        base_model=folder,
        label_names=LABELS,
        task="toy",
        metrics={"accuracy": 0.5, "f1_macro": 0.5},
    )
    attach_meta(model, meta)
    perturb(model, 0.1)
    return model.eval()


def _fresh_process_env(hub, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return env | {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "fresh-home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def test_round_trip_every_method_in_a_fresh_process(hub, tiny_model_dirs, tmp_path):
    expected = {}
    for method, backend in CASES:
        model = _model(tiny_model_dirs["bert"], method, backend)
        repo = f"kit-tests/{method}-{backend}"
        sha = kit.push_to_hub(model, repo, token=hub.token)
        assert hub.commits(repo)[-1] == sha
        files = hub.files(repo)
        assert "README.md" in files and "hf_adapter_kit.json" in files
        assert f"model={repo!r}" in files["README.md"].decode()  # the card names the repo it lives in
        assert not any(name.endswith(".bin") for name in files)
        expected[repo] = kit.pipeline("text-classification", model=model)(TEXTS)
    script = textwrap.dedent(
        """
        import json, sys
        import hf_adapter_kit as kit
        out = {repo: kit.pipeline("text-classification", model=repo)(json.loads(sys.argv[2]))
               for repo in json.loads(sys.argv[1])}
        print("RESULT" + json.dumps(out))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, json.dumps(list(expected)), json.dumps(TEXTS)],
        env=_fresh_process_env(hub, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.split("RESULT", 1)[1])
    for repo, predictions in expected.items():
        assert [p["label"] for p in got[repo]] == [p["label"] for p in predictions], repo
        assert [p["score"] for p in got[repo]] == pytest.approx([p["score"] for p in predictions], abs=1e-6), repo


def test_revisions_and_branches(hub, tiny_model_dirs, texts):
    repo = "kit-tests/versions"
    first, second = (_model(tiny_model_dirs["roberta"], "lora", "peft", seed=s) for s in (1, 2))
    sha1 = kit.push_to_hub(first, repo, token=hub.token)
    sha2 = kit.push_to_hub(second, repo, token=hub.token, commit_message="second")
    kit.push_to_hub(first, repo, token=hub.token, revision="experiment")
    assert hub.commits(repo)[-2:] == [sha1, sha2]  # the branch push left main alone
    batch = kit.modeling.load_tokenizer(tiny_model_dirs["roberta"])(texts, padding=True, return_tensors="pt")

    def logits(model):
        with torch.no_grad():
            return model(**batch).logits

    assert torch.equal(logits(kit.from_pretrained(repo, revision=sha1)), logits(first))
    assert torch.equal(logits(kit.from_pretrained(repo)), logits(second))
    assert torch.equal(logits(kit.from_pretrained(repo, revision="experiment")), logits(first))


def test_card_snippet_runs_against_the_hub(hub, tiny_model_dirs, tmp_path):
    folder = save_adapter(_model(tiny_model_dirs["bert"], "pfeiffer", "adapters"), tmp_path / "a")
    kit.push_to_hub(folder, "kit-tests/card", token=hub.token)
    text = hub.files("kit-tests/card")["README.md"].decode()
    assert text == render_card(folder, repo_id="kit-tests/card").content
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {"print": lambda value: namespace.setdefault("printed", value)}
    exec(compile(snippet, "card-snippet", "exec"), namespace)
    assert [p["label"] in LABELS for p in namespace["printed"]] == [True, True]


def test_private_repos(hub, tiny_model_dirs, tmp_path):
    folder = save_adapter(_model(tiny_model_dirs["bert"], "head", "transformers"), tmp_path / "a")
    kit.push_to_hub(folder, "kit-tests/secret", private=True, token=hub.token)
    assert hub.is_private("kit-tests/secret")
    with pytest.raises(AdapterKitError, match=r"private repo needs token"):
        kit.from_pretrained("kit-tests/secret")
    assert kit.from_pretrained("kit-tests/secret", token=hub.token).config.id2label == dict(enumerate(LABELS))


def test_bad_hub_input_changes_nothing(hub, tiny_model_dirs, tmp_path, monkeypatch):
    import hf_adapter_kit.folders.hub as hub_module

    folder = save_adapter(_model(tiny_model_dirs["bert"], "pfeiffer", "adapters"), tmp_path / "a")
    kit.push_to_hub(folder, "kit-tests/exists", token=hub.token)
    heads = hub.commits("kit-tests/exists")
    not_adapter = tmp_path / "notes"
    not_adapter.mkdir()
    (not_adapter / "notes.txt").write_text("hello")
    monkeypatch.setattr(hub_module, "get_token", lambda: None)
    before = len(hub.requests)
    cases = [
        (lambda: kit.push_to_hub(not_adapter, "kit-tests/exists", token=hub.token), r"hf_adapter_kit.json"),
        (lambda: kit.push_to_hub(folder, "kit-tests/hidden", private=True), r"\(private\) needs a token"),
        (lambda: kit.push_to_hub(folder, "bad//id", token=hub.token), r"`repo_id`='bad//id' is not a valid"),
        (lambda: kit.push_to_hub(tmp_path / "nowhere", "kit-tests/exists", token=hub.token), r"does not exist"),
    ]
    for call, match in cases:
        with pytest.raises(AdapterKitError, match=match):
            call()
    assert len(hub.requests) == before, "refused before any request"
    with pytest.raises(AdapterKitError, match=r"Pushing to `repo_id`='kit-tests/exists' failed"):
        kit.push_to_hub(folder, "kit-tests/exists", token="hf_wrong_token")
    with pytest.raises(AdapterKitError, match=r"'kit-tests/nothing-here' is neither a local folder nor a Hub repo"):
        kit.from_pretrained("kit-tests/nothing-here")
    with pytest.raises(AdapterKitError, match=r"`revision`='v9' does not exist"):
        kit.from_pretrained("kit-tests/exists", revision="v9")
    with pytest.raises(AdapterKitError, match=r"model_type='bert'.*model_type='roberta'"):
        kit.from_pretrained("kit-tests/exists", base_model=tiny_model_dirs["roberta"])
    assert hub.commits("kit-tests/exists") == heads and "kit-tests/hidden" not in hub.repo_ids()


def test_cli_push(hub, tiny_model_dirs, tmp_path, capsys):
    from hf_adapter_kit.commands.cli import main

    folder = save_adapter(_model(tiny_model_dirs["bert"], "lora", "peft"), tmp_path / "a")
    assert main(["push", str(folder), "kit-tests/cli", "--token", hub.token, "--revision", "dev"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert "adapter_model.safetensors" in hub.files("kit-tests/cli", revision="dev")
    assert main(["push", str(tmp_path / "missing"), "kit-tests/cli", "--token", hub.token]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_missing_local_folder_is_reported_as_one(tiny_model_dirs, tmp_path, monkeypatch):
    """A mistyped local path is named as a missing folder (with what is there), not as a failed Hub download."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "out" / "run"
    save_adapter(_model(tiny_model_dirs["bert"], "lora", "peft"), run / "adapter")
    missing = (
        r"does not exist or is not a folder: there is no local folder '.*out/nope' "
        r"\(the nearest existing folder is '.*out'; "
    )
    for name in ["out/nope", "./out/nope", "out/nope/", tmp_path / "out" / "nope", "~/../no/such/adapter/folder"]:
        with pytest.raises(AdapterKitError, match=r"`repo_id_or_path`=.* " + (missing if "nope" in str(name) else "")):
            kit.from_pretrained(name)
    with pytest.raises(AdapterKitError, match=r"`repo_id_or_path`='out/nope' " + missing + r"the folders in it: run"):
        kit.from_pretrained("out/nope")
    with pytest.raises(AdapterKitError, match=r"`model`='out/nope' does not exist"):
        kit.pipeline("text-classification", model="out/nope")
    with pytest.raises(AdapterKitError, match=r"`model`=None is not valid"):
        kit.pipeline("text-classification", model=None)
    with pytest.raises(AdapterKitError, match=r"'nope' is neither a local folder nor a Hub repo"):
        kit.from_pretrained("nope")  # a single name: a Hub id first of all
    with pytest.raises(AdapterKitError, match=r"is a training run's output folder.*'out/run/adapter'"):
        kit.from_pretrained("out/run")
    assert kit.from_pretrained("out/run/adapter").config.id2label == dict(enumerate(LABELS))


def test_plain_libraries_get_a_hint(tiny_model_dirs, tmp_path):
    """Without ``import hf_adapter_kit``, transformers takes an ``adapters`` folder for a PEFT one and reads
    ``base_model_name_or_path`` from it (KeyError before): the folder carries a hint there, which transformers
    names in its error. adapters itself, PEFT folders and the kit are unaffected."""
    import adapters

    folder = save_adapter(_model(tiny_model_dirs["bert"], "pfeiffer", "adapters"), tmp_path / "a")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert "import hf_adapter_kit" in config["base_model_name_or_path"]
    assert tiny_model_dirs["bert"] in config["base_model_name_or_path"]
    peft_folder = save_adapter(_model(tiny_model_dirs["bert"], "lora", "peft"), tmp_path / "p")
    peft_config = json.loads((peft_folder / "adapter_config.json").read_text())
    assert peft_config["base_model_name_or_path"] == tiny_model_dirs["bert"]  # PEFT's own value, untouched
    script = textwrap.dedent(
        """
        import sys, transformers
        for load in (lambda f: transformers.pipeline("text-classification", model=f),
                     transformers.AutoModelForSequenceClassification.from_pretrained):
            try:
                load(sys.argv[1])
            except Exception as err:
                print("ERROR", type(err).__name__, err)
        print("kit imported:", "hf_adapter_kit" in sys.modules)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", script, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    errors = [line for line in run.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2 and all("import hf_adapter_kit" in line for line in errors), run.stdout + run.stderr
    assert "kit imported: False" in run.stdout
    plain = load_base_model(tiny_model_dirs["bert"], LABELS)
    adapters.init(plain)
    assert plain.load_adapter(str(folder), use_safetensors=True) == "toy"
    assert kit.from_pretrained(folder).config.id2label == dict(enumerate(LABELS))
