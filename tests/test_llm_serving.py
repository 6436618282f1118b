"""An instruction-tuned adapter served by the text-generation pipeline: the kit's and transformers' own."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

import pytest
import transformers
from huggingface_hub import ModelCard

import hf_adapter_kit as kit
from hf_adapter_kit import AdapterKitError, train
from hf_adapter_kit.llm.generation import generate_answers
from tests.test_card_usage import run_blocks
from tests.test_hub import _fresh_process_env
from tests.test_sft import PROMPT, QUICK, toy_instructions


@pytest.fixture(scope="module")
def sft_runs(tiny_llm_dir, tmp_path_factory):
    """A LoRA (PEFT) and a Pfeiffer (adapters) adapter, each trained 3 steps on toy instruction data."""
    folder = tmp_path_factory.mktemp("sft-serving")
    path = toy_instructions(folder)
    runs = {}
    for method, backend in (("lora", "peft"), ("pfeiffer", "adapters")):
        runs[backend] = train(
            method, "toy", str(folder / backend), backend=backend, task_type="causal-lm",
            model_name_or_path=tiny_llm_dir, train_file=path, **QUICK,
        )  # fmt: skip
    return runs


@pytest.mark.parametrize("backend", ["peft", "adapters"])
def test_text_generation_pipelines_answer_as_the_model_does(sft_runs, tiny_llm_dir, backend):
    result = sft_runs[backend]
    expected = generate_answers(result.model, result.tokenizer, [PROMPT], max_new_tokens=5)[0]
    settings = dict(max_new_tokens=5, do_sample=False, return_full_text=False)
    ours = kit.pipeline(model=str(result.adapter_dir))  # unnamed task: the adapter's own, text generation
    assert isinstance(ours, transformers.TextGenerationPipeline)
    theirs = transformers.pipeline("text-generation", model=str(result.adapter_dir))
    for generator in (ours, theirs):
        out = generator(PROMPT, **settings)  # chat messages in, through the chat template
        assert out[0]["generated_text"].strip() == expected.strip()
    text = ours("great flight", **settings)[0]["generated_text"]  # plain text in, continued
    assert isinstance(text, str) and text


def test_the_pipeline_must_fit_the_head(sft_runs):
    folder = str(sft_runs["peft"].adapter_dir)
    with pytest.raises(AdapterKitError, match=r"`task`='text-classification' is not valid: one of \['text-gen"):
        kit.pipeline("text-classification", model=folder)
    with pytest.raises(AdapterKitError, match=r"`task_ids`=.*only a multi-task adapter's pipelines"):
        kit.pipeline("text-generation", model=folder, task_ids="toy")


@pytest.mark.parametrize("backend", ["peft", "adapters"])
def test_the_card_is_written_for_generation_and_its_blocks_run(sft_runs, tmp_path, backend):
    folder = sft_runs[backend].adapter_dir
    text = (folder / "README.md").read_text()
    data = ModelCard(text).data.to_dict()
    assert data["pipeline_tag"] == "text-generation" and "text-generation" in data["tags"]
    results = data["model-index"][0]["results"]
    assert {r["task"]["type"] for r in results} == {"text-generation"}
    assert {m["type"] for r in results for m in r["metrics"]} == {"accuracy", "perplexity"}  # not the base's
    assert "| Accuracy, base model zero-shot |" in text and "| Perplexity, base model zero-shot |" in text
    assert "kit.pipeline('text-generation'" in text and "AutoModelForCausalLM.from_pretrained(base)" in text
    # plain adapters 1.3.0 generates right only without the KV cache (adapters issue #824): the library block says so
    assert ("use_cache=False" in text) == (backend == "adapters")
    kit_out, library_out = run_blocks(text, tmp_path)
    generated = ast.literal_eval(kit_out)[0]["generated_text"]
    assert generated.strip().splitlines()[-1].strip() == library_out.strip()  # both greedy, the same answer


def test_hub_round_trip_in_a_fresh_process(hub, sft_runs, tmp_path):
    """Pushed through the real huggingface_hub client to the local Hub server, pulled by repo id in a fresh
    process: the text-generation pipeline answers as the trained model did."""
    result = sft_runs["peft"]
    repo = "kit-tests/lora-sft"
    sha = kit.push_to_hub(result.model, repo, token=hub.token)
    assert hub.commits(repo)[-1] == sha
    files = hub.files(repo)
    assert "text-generation" in files["README.md"].decode() and "hf_adapter_kit.json" in files
    expected = generate_answers(result.model, result.tokenizer, [PROMPT], max_new_tokens=5)[0]
    script = textwrap.dedent(
        """
        import json, sys
        import hf_adapter_kit as kit
        out = kit.pipeline(model=sys.argv[1])(json.loads(sys.argv[2]), max_new_tokens=5, do_sample=False,
                                               return_full_text=False)
        print("RESULT" + json.dumps(out[0]["generated_text"]))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, repo, json.dumps(PROMPT)],
        env=_fresh_process_env(hub, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.split("RESULT", 1)[1]).strip() == expected.strip()
