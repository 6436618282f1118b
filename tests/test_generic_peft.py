"""PEFT's generic checks, run on every kit method PEFT lacks, on tiny BERT, RoBERTa, GPT-2 and Llama models.

Written in the manner of PEFT's ``tests/testing_common.py`` (one tester, a matrix of cases): what a PEFT user does with
a built-in method must work with the kit's. PEFT's own LoRA runs the same checks as the control, so a failure that
LoRA shares is the harness's, not the kit's. Each check states the PEFT behaviour it mirrors.
"""

from __future__ import annotations

import copy

import peft
import pytest
import torch
from peft import (
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from hf_adapter_kit import AdapterKitError, get_config, list_specs, task_context


KIT = [spec.name for spec in list_specs() if spec.peft is not None]  # houlsby, pfeiffer, parallel, hyperformer
MULTI = {spec.name for spec in list_specs() if spec.multi_task}
METHODS = [*KIT, "lora"]  # lora: PEFT's own method, the control
ARCHS = ["bert", "roberta", "gpt2", "llama"]
TEXTS = ["a fine day", "the worst flight ever", "ok", "late but friendly"]


def config_for(method: str, arch: str, **extra):
    """A config that makes the adapter non-identity (``init_weights=False``), as PEFT's tests do."""
    if method == "lora":
        targets = {"bert": ["query", "value"], "roberta": ["query", "value"], "gpt2": ["c_attn"]}
        options = {"r": 4, "init_lora_weights": False, "target_modules": targets.get(arch, ["q_proj", "v_proj"])}
        if arch == "gpt2":
            options["fan_in_fan_out"] = True
        return get_config("lora", backend="peft", **{**options, **extra})
    options = {"reduction_factor": 4, "init_weights": False}
    if method in MULTI:
        options["tasks"] = ["a", "b"]
    return get_config(method, backend="peft", **{**options, **extra})


def routed(method: str, size: int = len(TEXTS)) -> dict:
    return {"task_ids": ["a", "b"] * (size // 2)} if method in MULTI else {}


def base_model(folder: str, dtype=torch.float32, causal: bool = False):
    torch.manual_seed(0)
    cls = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    model = cls.from_pretrained(folder, num_labels=2) if not causal else cls.from_pretrained(folder)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    return model.to(dtype).eval()


def batch(folder: str, size: int = len(TEXTS), causal: bool = False) -> dict:
    encoded = AutoTokenizer.from_pretrained(folder)(TEXTS[:size], padding=True, return_tensors="pt")
    return {k: v for k, v in encoded.items() if not (causal and k == "token_type_ids")}


def peft_model(folder: str, method: str, arch: str, dtype=torch.float32, **kwargs):
    return get_peft_model(base_model(folder, dtype), config_for(method, arch), **kwargs).eval()


def logits(model, inputs: dict, method: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, **routed(method, len(inputs["input_ids"]))).logits


@pytest.fixture
def case(request, tiny_model_dirs):
    method, arch = request.param
    return method, arch, tiny_model_dirs[arch]


CASES = [(m, a) for m in METHODS for a in ARCHS]
IDS = [f"{m}-{a}" for m, a in CASES]
matrix = pytest.mark.parametrize("case", CASES, ids=IDS, indirect=True)


@matrix
def test_registered_prefix_and_layer_attributes(case):
    """PEFT tells adapter weights from base weights with ``prefix in name``; tuner layers expose in/out features."""
    method, arch, folder = case
    model = peft_model(folder, method, arch)
    prefix = model.base_model.prefix
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    adapter = [n for n in trainable if "classifier" not in n and "score" not in n]
    assert adapter and all(prefix in n for n in adapter), adapter[:3]
    assert not [n for n, p in model.named_parameters() if prefix in n and not p.requires_grad]
    layers = [m for m in model.modules() if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)]
    assert layers and all(isinstance(m.in_features, int) and isinstance(m.out_features, int) for m in layers)


@matrix
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("autocast", [True, False], ids=["autocast", "no-autocast"])
def test_half_precision_forward_train_save_load(case, tmp_path, dtype, autocast):
    """PEFT's ``autocast_adapter_dtype``: True keeps adapter weights in fp32, False gives them the base's dtype."""
    method, arch, folder = case
    if dtype == torch.float16 and not autocast and method != "lora":
        pytest.skip("pure fp16 weights are covered by bf16; fp16 is run with autocast")
    model = peft_model(folder, method, arch, dtype, autocast_adapter_dtype=autocast)
    adapter_dtypes = {p.dtype for n, p in model.named_parameters() if model.base_model.prefix in n}
    assert adapter_dtypes == {torch.float32 if autocast else dtype}
    inputs = batch(folder)
    out = logits(model, inputs, method)
    assert out.dtype == dtype and torch.isfinite(out).all()
    model.train()
    loss = model(**inputs, labels=torch.tensor([0, 1, 0, 1]), **routed(method)).loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    model.eval()
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(base_model(folder, dtype), tmp_path, autocast_adapter_dtype=autocast)
    torch.testing.assert_close(logits(reloaded.eval(), inputs, method), out)


@matrix
@pytest.mark.parametrize("low_cpu_mem_usage", [False, True], ids=["plain", "low-cpu-mem"])
def test_save_and_load_pretrained(case, tmp_path, low_cpu_mem_usage):
    """``save_pretrained`` writes safetensors; ``from_pretrained`` (also with ``low_cpu_mem_usage``) restores it."""
    method, arch, folder = case
    model = peft_model(folder, method, arch)
    inputs = batch(folder)
    expected = logits(model, inputs, method)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and not (tmp_path / "adapter_model.bin").exists()
    reloaded = PeftModel.from_pretrained(base_model(folder), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage).eval()
    assert not [n for n, p in reloaded.named_parameters() if p.device.type == "meta"]
    torch.testing.assert_close(logits(reloaded, inputs, method), expected)
    # load_adapter, the other way in, under another name
    reloaded.load_adapter(str(tmp_path), adapter_name="again", low_cpu_mem_usage=low_cpu_mem_usage)
    reloaded.set_adapter("again")
    assert not [n for n, p in reloaded.named_parameters() if p.device.type == "meta"]
    torch.testing.assert_close(logits(reloaded, inputs, method), expected)


@matrix
def test_several_adapters_from_one_config(case, tmp_path):
    """A second adapter from the same config object; set, delete (inactive and active), substring names at save."""
    method, arch, folder = case
    config = config_for(method, arch)
    model = get_peft_model(base_model(folder), config).eval()
    inputs = batch(folder)
    first = logits(model, inputs, method)
    torch.manual_seed(1)
    model.add_adapter("other", config)
    model.eval()  # a new adapter's modules start in training mode (LoRA's dropout)
    assert logits(model, inputs, method).equal(first)  # adding does not activate
    model.set_adapter("other")
    second = logits(model, inputs, method)
    assert not torch.allclose(first, second)
    model.set_adapter("default")
    assert logits(model, inputs, method).equal(first)
    # names that are substrings of each other survive a save and a load
    model.add_adapter("default_2", config)
    model.eval()
    model.save_pretrained(tmp_path, selected_adapters=["default", "default_2", "other"])
    reloaded = PeftModel.from_pretrained(base_model(folder), tmp_path).eval()
    reloaded.load_adapter(str(tmp_path / "other"), adapter_name="other")
    reloaded.set_adapter("other")
    torch.testing.assert_close(logits(reloaded, inputs, method), second)
    # delete an inactive adapter, then the active one
    model.delete_adapter("other")
    assert "other" not in model.peft_config and logits(model, inputs, method).equal(first)
    assert not [n for n, _ in model.named_parameters() if ".other." in n]
    model.delete_adapter("default")
    assert model.active_adapters == ["default_2"]
    assert not [n for n, _ in model.named_parameters() if ".default." in n]
    logits(model, inputs, method)


@matrix
def test_several_active_adapters_add_up_with_and_without_autograd(case):
    """PEFT's several active adapters (``set_adapter([...])`` on the tuner layers): each adds its output to the layer's. Without
    autograd the kit's last adapter adds into the layer's output in place; that must not reach the adapter before it
    (both read the same input), so the outputs equal those of the autograd path, which never writes in place."""
    method, arch, folder = case
    config = config_for(method, arch)
    model = get_peft_model(base_model(folder), config).eval()
    torch.manual_seed(1)
    model.add_adapter("other", config)
    model.eval()
    for layer in model.modules():  # the classification head (modules_to_save) takes one adapter only
        if isinstance(layer, BaseTunerLayer):
            layer.set_adapter(["default", "other"])
    inputs = batch(folder)
    both = logits(model, inputs, method)
    with torch.enable_grad():
        with_autograd = model(**inputs, **routed(method)).logits.detach()
    torch.testing.assert_close(both, with_autograd)
    model.set_adapter("other")
    assert not torch.allclose(both, logits(model, inputs, method))  # both adapters count


@matrix
def test_disable_and_unload_give_the_base_model(case):
    method, arch, folder = case
    inputs = batch(folder)
    base = logits(base_model(folder), inputs, "none")
    model = peft_model(folder, method, arch)
    assert not torch.allclose(logits(model, inputs, method), base)
    with model.disable_adapter():
        torch.testing.assert_close(logits(model, inputs, method), base)
    unloaded = model.unload()
    assert not any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in unloaded.modules())
    torch.testing.assert_close(logits(unloaded, inputs, "none"), base)


@matrix
def test_merging_is_refused_with_the_kits_error(case):
    method, arch, folder = case
    if method == "lora":
        pytest.skip("LoRA merges")
    model = peft_model(folder, method, arch)
    before = {n: p.clone() for n, p in model.named_parameters()}
    for call in (model.merge_and_unload, model.merge_adapter):
        with pytest.raises(AdapterKitError, match="cannot be merged"):
            call()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


@matrix
def test_injection_api_and_state_dict_round_trip(case):
    """``inject_adapter_in_model`` + ``get/set_peft_model_state_dict``; multi-task ids through ``task_context``."""
    method, arch, folder = case
    config = config_for(method, arch)
    model = inject_adapter_in_model(config, base_model(folder)).eval()
    state = get_peft_model_state_dict(model)
    adapter_params = {n for n, p in model.named_parameters() if "default" in n and "classifier" not in n}
    assert len(state) >= len(adapter_params) > 0
    other = inject_adapter_in_model(config_for(method, arch), base_model(folder)).eval()
    result = set_peft_model_state_dict(other, state)
    assert not [k for k in result.unexpected_keys if "default" in k or "kit_" in k]
    inputs = batch(folder)
    with task_context(["a", "b", "a", "b"]), torch.no_grad():
        torch.testing.assert_close(other(**inputs).logits, model(**inputs).logits)


@matrix
def test_training_changes_only_adapter_weights(case):
    method, arch, folder = case
    model = peft_model(folder, method, arch).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = batch(folder)
    for _ in range(3):
        model(**inputs, labels=torch.tensor([0, 1, 0, 1]), **routed(method)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable, sorted(changed - trainable)[:3]
    assert any(model.base_model.prefix in n for n in changed)


@matrix
def test_init_weights(case):
    """``init_weights=True`` (PEFT's default) starts as the base model; ``False`` does not."""
    method, arch, folder = case
    if method == "lora":
        pytest.skip("LoRA names it init_lora_weights")
    inputs = batch(folder)
    base = logits(base_model(folder), inputs, "none")
    identity = get_peft_model(base_model(folder), config_for(method, arch, init_weights=True)).eval()
    torch.testing.assert_close(logits(identity, inputs, method), base)
    assert not torch.allclose(logits(peft_model(folder, method, arch), inputs, method), base)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_routes_task_ids(tiny_model_dirs, method, arch):
    """``generate(..., task_ids=...)``: greedy and beam search; each prompt's task reaches every step."""
    folder = tiny_model_dirs[arch]
    options = {"task_type": "CAUSAL_LM"}
    model = get_peft_model(base_model(folder, causal=True), config_for(method, arch, **options)).eval()
    inputs = batch(folder, 2, causal=True)
    tasks = {"task_ids": ["a", "b"]} if method in MULTI else {}
    settings = {"max_new_tokens": 3, "do_sample": False, "pad_token_id": 0}
    greedy = model.generate(**inputs, **tasks, **settings)
    beams = model.generate(**inputs, **tasks, num_beams=2, num_return_sequences=2, **settings)
    assert greedy.shape[0] == 2 and beams.shape[0] == 4
    if method in MULTI:  # the ids matter: the first prompt alone, routed to "a", makes the same tokens
        alone = model.generate(**{k: v[:1] for k, v in inputs.items()}, task_ids="a", **settings)
        assert torch.equal(alone[0], greedy[0][: alone.shape[1]])
        with pytest.raises(AdapterKitError, match="`task_ids`"):
            model.generate(**inputs, **settings)


@pytest.mark.parametrize("method", KIT)
def test_a_deep_copy_keeps_one_hypernetwork_per_adapter(tiny_model_dirs, method):
    """``copy.deepcopy`` (PEFT's tests and the Trainer use it) keeps layers pointing at their adapter's weights."""
    folder = tiny_model_dirs["bert"]
    model = peft_model(folder, method, "bert")
    twin = copy.deepcopy(model)
    inputs = batch(folder)
    torch.testing.assert_close(logits(twin, inputs, method), logits(model, inputs, method))
    with torch.no_grad():
        for name, param in twin.named_parameters():
            if twin.base_model.prefix in name:
                param.add_(0.5)
    assert not torch.allclose(logits(twin, inputs, method), logits(model, inputs, method))


@pytest.mark.parametrize("method", sorted(MULTI))
@pytest.mark.parametrize("low_cpu_mem_usage", [False, True], ids=["plain", "low-cpu-mem"])
def test_task_names_equal_to_adapter_names_survive_a_save(tiny_model_dirs, tmp_path, method, low_cpu_mem_usage):
    """PEFT's save drops keys ending in another adapter's name; task names ("default") must not end a key."""
    folder = tiny_model_dirs["bert"]
    config = get_config(method, backend="peft", reduction_factor=4, init_weights=False, tasks=["default", "other"])
    model = get_peft_model(base_model(folder), config).eval()
    torch.manual_seed(1)
    model.add_adapter("other", config)
    model.set_adapter("other")
    model.eval()
    inputs = batch(folder)
    with torch.no_grad():
        expected = model(**inputs, task_ids=["default", "other", "default", "other"]).logits
    model.save_pretrained(tmp_path, selected_adapters=["other"])
    reloaded = PeftModel.from_pretrained(base_model(folder), tmp_path / "other", low_cpu_mem_usage=low_cpu_mem_usage)
    assert not [n for n, p in reloaded.named_parameters() if p.device.type == "meta"]
    with torch.no_grad():
        got = reloaded.eval()(**inputs, task_ids=["default", "other", "default", "other"]).logits
    torch.testing.assert_close(got, expected)
