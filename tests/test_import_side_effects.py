"""What ``import hf_adapter_kit`` changes in transformers, PEFT and ``adapters``: exactly what the patches document.

Every function and method of the three libraries' loaded modules is compared before and after the import (in a
fresh process): a callable replaced, or one of the kit's own code found in their namespaces, counts as changed. The
changes must be the ``CHANGES`` of the three patch modules, each named in its module's docstring with its why; patches
9 and 10 (``patches/adapters_speedups.py``) only once ``hf_adapter_kit.speed_up_adapters()`` is called or
``HF_ADAPTER_KIT_SPEED_UP_ADAPTERS=1`` is set. And a plain ``adapters`` model trains and runs without entering any
of the kit's code.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import adapters
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

import hf_adapter_kit
from hf_adapter_kit.patches import adapters_methods, adapters_speedups, peft_methods
from hf_adapter_kit.serving import transformers_pipeline


KIT_DIR = str(Path(hf_adapter_kit.__file__).parent) + os.sep
ON_IMPORT = (adapters_methods, peft_methods, transformers_pipeline)
LOADED_FIRST = [  # the libraries, and the modules the patches touch, as a user's code may have loaded them
    "transformers",
    "transformers.pipelines",
    "peft",
    "peft.peft_model",
    "adapters",
    "adapters.models.bert.modeling_bert",
    "adapters.models.llama.modeling_llama",
    "adapters.models.mistral.modeling_mistral",
]
LATER = "adapters.models.distilbert.modeling_distilbert"  # imported by adapters.init on a DistilBERT model
SCRIPT = r"""
import importlib, json, os, sys, types

ROOTS = ("transformers", "peft", "adapters")
KIT = os.sep + "hf_adapter_kit" + os.sep
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)


def functions(value):
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return {part: f for part, f in (("fget", value.fget), ("fset", value.fset)) if f is not None}
    return {"": value} if isinstance(value, types.FunctionType) else {}


def snapshot():
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ROOTS:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, type) and value.__module__ == name:  # each class once, where it is defined
                for member, raw in list(vars(value).items()):
                    for part, f in functions(raw).items():
                        found[".".join(filter(None, (name, value.__qualname__, member, part)))] = f
            else:
                for part, f in functions(value).items():
                    found[".".join(filter(None, (name, attr, part)))] = f
    return found


def changed_since(before):
    after = snapshot()
    replaced = {key for key, f in before.items() if after.get(key) is not f}
    kits = {key for key, f in after.items() if KIT in getattr(getattr(f, "__code__", None), "co_filename", "")}
    return sorted(replaced | kits)


before = snapshot()
out = {"functions": len(before)}
import hf_adapter_kit

out["import"] = changed_since(before)
if sys.argv[2] == "switch":
    hf_adapter_kit.speed_up_adapters()
    out["switch"] = changed_since(before)
    import adapters
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    later = sys.argv[3]
    out["later_loaded_before"] = later in sys.modules
    distilbert = AutoConfig.for_model("distilbert", vocab_size=50, dim=16, n_heads=2, n_layers=1, hidden_dim=16)
    adapters.init(AutoModel.from_config(distilbert))
    out["later"] = changed_since(before)
    sizes = dict(vocab_size=50, hidden_size=16, num_attention_heads=2, intermediate_size=16, num_hidden_layers=1)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **sizes)).eval()
    adapters.init(model)
    model.add_adapter("x", config="seq_bn")
    with torch.no_grad():
        cache = model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True).past_key_values
    out["cached_tokens"] = cache.get_seq_length()
print("RESULT" + json.dumps(out))
"""


def _run(mode: str, **environment: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != adapters_speedups.SWITCH} | environment
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(LOADED_FIRST), mode, LATER],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.split("RESULT", 1)[1])


def _documented(modules) -> set[str]:
    return {name for module in modules for name in module.CHANGES}


def _matches(names, patterns) -> set[str]:
    return {name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)}


def test_each_documented_change_is_named_in_its_patch_docstring():
    for module in (*ON_IMPORT, adapters_speedups):
        assert module.CHANGES, module.__name__
        for name in module.CHANGES:
            tail = name.split(".")[-1] if "*" in name else ".".join(name.split(".")[-2:])
            assert tail in module.__doc__, (module.__name__, name)
    on_import = _documented(ON_IMPORT)
    assert not _matches(on_import, adapters_speedups.CHANGES)  # the opt-in patches are apart


def test_the_import_changes_what_the_patches_document_and_the_switch_the_rest():
    result = _run("switch")
    assert result["functions"] > 1000  # the libraries' functions were seen
    on_import = set(result["import"])
    assert on_import == _documented(ON_IMPORT)
    assert not _matches(on_import, adapters_speedups.CHANGES)  # patches 9 and 10 wait for the switch
    switched = set(result["switch"]) - on_import
    assert switched == _matches(switched, adapters_speedups.CHANGES)
    for pattern in adapters_speedups.CHANGES:  # each opt-in change happened
        assert _matches(switched, [pattern]), pattern
    assert "adapters.models.bert.modeling_bert.match_attn_matrices_for_parallel" in switched
    # a modeling module that adapters imports after the switch, when it sets up a model, gets patch 10 too
    assert not result["later_loaded_before"]
    assert set(result["later"]) - set(result["switch"]) == {f"{LATER}.match_attn_matrices_for_parallel"}
    assert result["cached_tokens"] == 3  # patch 9 on a plain adapters model, once switched on


def test_the_environment_switches_the_speedups_on_at_import():
    on = _run("import", **{adapters_speedups.SWITCH: "1"})
    assert _matches(on["import"], adapters_speedups.CHANGES)
    assert set(on["import"]) - _matches(on["import"], adapters_speedups.CHANGES) == _documented(ON_IMPORT)
    assert set(_run("import", **{adapters_speedups.SWITCH: "0"})["import"]) == _documented(ON_IMPORT)
    env = os.environ | {adapters_speedups.SWITCH: "yes"}
    run = subprocess.run(
        [sys.executable, "-c", "import hf_adapter_kit"], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode != 0
    assert f"AdapterKitError: `{adapters_speedups.SWITCH}`='yes' is not valid: expected one of" in run.stderr


def _kit_calls(run) -> list[str]:
    """The files of hf_adapter_kit whose Python code ``run()`` enters."""
    files = set()

    def profile(frame, event, arg):
        if event == "call":
            files.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return sorted(f for f in files if f.startswith(KIT_DIR))


def _plain_model(arch: str, config: str):
    sizes = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2)
    torch.manual_seed(0)
    if arch == "llama":
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, num_key_value_heads=2, **sizes))
    else:
        model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(arch, num_labels=2, **sizes))
    adapters.init(model)
    model.add_adapter("x", config=config)
    model.train_adapter("x")
    return model


@pytest.mark.parametrize("config", ["seq_bn", "double_seq_bn"])
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_a_plain_adapters_model_runs_none_of_the_kit(arch, config, monkeypatch):
    """After the import, ``adapters``' own methods train (forward, backward, optimizer step), predict and, on a
    decoder, generate with the library's code alone; binding patch 10 in shows that the check sees the kit's code."""
    model = _plain_model(arch, config)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    labels = ids if arch == "llama" else torch.tensor([0, 1])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def train_and_predict():
        model.train()
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
        if arch == "llama":
            model.generate(input_ids=ids[:1], max_new_tokens=2, do_sample=False, pad_token_id=0)

    assert _kit_calls(train_and_predict) == []
    module = importlib.import_module(f"adapters.models.{arch}.modeling_{arch}")
    monkeypatch.setattr(module, "match_attn_matrices_for_parallel", adapters_speedups._match_without_copies)
    assert _kit_calls(train_and_predict) == [adapters_speedups.__file__]
