"""``adapters``' generic checks, run on every kit method ``adapters`` lacks, on tiny BERT, RoBERTa, GPT-2 and Llama.

Written in the manner of ``adapters``' method test mixins (add/delete, save/load, train only the adapter, init
seeds, averaging, composition, precision); the library's own ``seq_bn`` runs the same checks as the control.
"""

from __future__ import annotations

import adapters
import pytest
import torch
from adapters.composition import Fuse, Parallel, Stack
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from hf_adapter_kit import AdapterKitError, get_config, list_specs


KIT = [spec.adapters.config_name for spec in list_specs() if spec.adapters is not None]
METHODS = [*KIT, "seq_bn"]  # seq_bn: the library's own, the control
ARCHS = ["bert", "roberta", "gpt2", "llama"]
TEXTS = ["a fine day", "the worst flight ever", "ok", "late but friendly"]
TASKS = {"task_ids": ["a", "b", "a", "b"]}


def config(method: str, **options):
    options = {"reduction_factor": 4, **options}
    if method == "seq_bn":
        return adapters.SeqBnConfig(**options)
    name = {"multitask_parallel": "parallel"}.get(method, method)
    return get_config(name, backend="adapters", **{"tasks": ["a", "b"], **options})


def model_for(folder: str, dtype=torch.float32, causal: bool = False):
    torch.manual_seed(0)
    if causal:
        model = AutoModelForCausalLM.from_pretrained(folder)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    model.config.pad_token_id = model.config.pad_token_id or 0
    adapters.init(model)
    return model.to(dtype).eval()


def with_adapter(folder: str, method: str, name: str = "x", dtype=torch.float32, **options):
    model = model_for(folder, dtype)
    model.add_adapter(name, config=config(method, init_weights="bert", **options))
    model.set_active_adapters(name)
    return model


def batch(folder: str) -> dict:
    return dict(AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt"))


def logits(model, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, **TASKS).logits


CASES = [(m, a) for m in METHODS for a in ARCHS]
matrix = pytest.mark.parametrize(("method", "arch"), CASES, ids=[f"{m}-{a}" for m, a in CASES])


@matrix
def test_add_forward_delete(tiny_model_dirs, method, arch):
    folder = tiny_model_dirs[arch]
    model = with_adapter(folder, method)
    inputs = batch(folder)
    base = model_for(folder)
    assert not torch.allclose(logits(model, inputs), logits(base, inputs))
    model.set_active_adapters(None)
    model.delete_adapter("x")
    assert "x" not in model.adapters_config
    assert not [n for n, _ in model.named_parameters() if ".x." in n or n.startswith("x.")]
    torch.testing.assert_close(logits(model, inputs), logits(base, inputs))


@matrix
def test_save_and_load_adapter(tiny_model_dirs, tmp_path, method, arch):
    folder = tiny_model_dirs[arch]
    model = with_adapter(folder, method)
    inputs = batch(folder)
    expected = logits(model, inputs)
    model.save_adapter(str(tmp_path), "x", use_safetensors=True, with_head=False)
    fresh = model_for(folder)
    name = fresh.load_adapter(str(tmp_path), load_as="y", set_active=True, use_safetensors=True, with_head=False)
    assert name == "y"
    torch.testing.assert_close(logits(fresh, inputs), expected)


@matrix
def test_train_adapter_changes_only_the_adapter(tiny_model_dirs, method, arch):
    folder = tiny_model_dirs[arch]
    model = with_adapter(folder, method)
    model.train_adapter("x")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    heads = ("classifier", "score")  # adapters' train_adapter leaves a model's own head trainable
    assert all(".x." in n or "shared_parameters.x" in n or n.startswith(heads) for n in trainable), sorted(trainable)
    assert any(".x." in n or "shared_parameters.x" in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = batch(folder)
    for _ in range(3):
        model(**inputs, labels=torch.tensor([0, 1, 0, 1]), **TASKS).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


@matrix
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_base(tiny_model_dirs, tmp_path, method, arch, dtype):
    """A half-precision base: adapter weights fp32 (as ``adapters`` creates them), output in the base's dtype; with
    ``adapter_to(name, dtype=...)`` the adapter computes in half precision too. Forward, a training step, reload."""
    if method == "seq_bn":
        pytest.skip("adapters 1.3.0's own seq_bn fails on a half-precision base unless cast (see below)")
    folder = tiny_model_dirs[arch]
    model = with_adapter(folder, method, dtype=dtype)
    inputs = batch(folder)
    out = logits(model, inputs)
    assert out.dtype == dtype and torch.isfinite(out).all()
    model.train_adapter("x")
    model(**inputs, labels=torch.tensor([0, 1, 0, 1]), **TASKS).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    model.save_adapter(str(tmp_path), "x", use_safetensors=True, with_head=False)
    fresh = model_for(folder, dtype)
    fresh.load_adapter(str(tmp_path), set_active=True, use_safetensors=True, with_head=False)
    torch.testing.assert_close(logits(fresh, inputs), out)
    model.adapter_to("x", dtype=dtype)
    assert torch.isfinite(logits(model, inputs)).all()


@matrix
def test_init_weights_and_seed(tiny_model_dirs, method, arch):
    folder = tiny_model_dirs[arch]
    inputs = batch(folder)
    base = logits(model_for(folder), inputs)
    identity = model_for(folder)
    identity.add_adapter("x", config=config(method, init_weights="mam_adapter"))
    identity.set_active_adapters("x")
    torch.testing.assert_close(logits(identity, inputs), base)

    def weights(seed):
        model = model_for(folder)
        model.add_adapter("x", config=config(method, init_weights="bert", init_weights_seed=seed))
        return {n: p for n, p in model.named_parameters() if ".x." in n or "shared_parameters.x" in n}

    first, again, other = weights(7), weights(7), weights(8)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first if first[n].numel() > 1)


@pytest.mark.parametrize("method", KIT)
def test_an_unknown_init_scheme_is_refused(method):
    with pytest.raises(AdapterKitError, match="`init_weights`='xavier'"):
        config(method, init_weights="xavier")


@matrix
def test_average_adapter(tiny_model_dirs, method, arch):
    """``average_adapter`` weighs every weight, shared ones (Hyperformer++'s hypernetwork) included."""
    folder = tiny_model_dirs[arch]
    model = model_for(folder)
    for name, seed in (("a1", 1), ("a2", 2)):  # adapters averages adapters of one config only
        torch.manual_seed(seed)
        model.add_adapter(name, config=config(method, init_weights="bert"))
    model.average_adapter("avg", ["a1", "a2"], weights=[0.25, 0.75])
    state = {n: p for n, p in model.named_parameters()}
    averaged = [n for n in state if ".avg." in n or "shared_parameters.avg." in n]
    assert averaged
    for name in averaged:
        expected = 0.25 * state[name.replace("avg", "a1")] + 0.75 * state[name.replace("avg", "a2")]
        torch.testing.assert_close(state[name], expected)
    model.set_active_adapters("avg")
    assert torch.isfinite(logits(model, batch(folder))).all()
    if method != "seq_bn":
        with pytest.raises(AdapterKitError, match="`combine_strategy`"):
            model.average_adapter("bad", ["a1", "a2"], combine_strategy="lora_delta_w_svd")
        assert "bad" not in model.adapters_config


@pytest.mark.parametrize("method", KIT)
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_composition_with_the_librarys_own_adapters(tiny_model_dirs, method, arch):
    """Stack and Fuse with ``seq_bn``; Parallel with the kit's adapter first, and for Hyperformer++ second too
    (it adds its output into the residual itself, unless a composition reads that output alone)."""
    folder = tiny_model_dirs[arch]
    inputs = batch(folder)
    model = model_for(folder)
    model.add_adapter("p", config="seq_bn")
    # adapters fuses only adapters at the same positions: seq_bn sits after the FFN alone, so the kit's too
    model.add_adapter("k", config=config(method, init_weights="bert", mh_adapter=False, output_adapter=True))
    model.add_adapter("kh", config=config(method, init_weights="bert", mh_adapter=True, output_adapter=True))
    model.add_adapter("h", config="double_seq_bn")
    setups = [Stack("p", "k"), Stack("k", "p"), Fuse("p", "k"), Fuse("h", "kh"), Parallel("k", "p")]
    # a parallel adapter second in a Parallel fails in adapters' ParallelAdapter.post_forward, adapters' own par_bn
    # as much as the kit's (test_a_parallel_adapter_second_in_parallel_fails_as_adapters_own_does)
    setups += [Parallel("p", "k"), Parallel("h", "kh")] if method == "hyperformer" else []
    for setup in setups:
        if isinstance(setup, Fuse):
            model.add_adapter_fusion(setup)
        model.set_active_adapters(setup)
        out = logits(model, inputs)
        # Parallel replicates the batch per adapter for encoders; adapters' decoders keep one row per input
        assert out.shape[0] % len(TEXTS) == 0 and torch.isfinite(out).all(), setup
    # adapters' own rule, the same for its own seq_bn + double_seq_bn: fused adapters share their positions
    with pytest.raises(ValueError, match="mh_adapter"):
        model.add_adapter_fusion(Fuse("p", "kh"))
    if method == "hyperformer":  # Parallel too, where adapters fails in its own code: the kit's error says what works
        model.set_active_adapters(Parallel("kh", "p"))
        with pytest.raises(AdapterKitError, match=r"\['p'\] has no adapter after the attention .*mh_adapter=False"):
            logits(model, inputs)


@pytest.mark.parametrize("second", ["par_bn", "multitask_parallel"])
def test_a_parallel_adapter_second_in_parallel_fails_as_adapters_own_does(tiny_model_dirs, second):
    """adapters 1.3.0: ``Parallel("p", <parallel adapter>)`` replicates the batch, and ``ParallelAdapter.post_forward``
    then adds the original (unreplicated) sub-block output. Its own ``par_bn`` fails so, and the kit's parallel
    adapter, which keeps that ``post_forward``, the same way. If adapters fixes it, this fails: test the kit's too."""
    folder = tiny_model_dirs["bert"]
    model = model_for(folder)
    model.add_adapter("p", config="seq_bn")
    parallel = "par_bn" if second == "par_bn" else config("parallel", init_weights="bert")
    model.add_adapter("q", config=parallel)
    model.set_active_adapters(Parallel("p", "q"))
    with pytest.raises(RuntimeError, match="must match the size"):
        logits(model, batch(folder))


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_hyperformer_adds_into_the_residual_what_it_would_hand_back_alone(tiny_model_dirs, monkeypatch, arch):
    """One adapter active: its output is added into the residual in place (the sub-block's output, read by nothing
    else); a Stack adds into a new tensor; a composition that reads outputs alone gets them alone. The same logits
    every way, and the in-place path writes into the very tensor it was given."""
    from hf_adapter_kit.methods.hyperformer import adapters_backend

    inputs = batch(tiny_model_dirs[arch])
    model = model_for(tiny_model_dirs[arch])
    model.add_adapter("kh", config=config("hyperformer", init_weights="bert"))
    model.set_active_adapters("kh")
    kit_modules = [m for m in model.modules() if isinstance(m, adapters_backend.HyperformerAdapter)]
    assert kit_modules and all(m.adapters_config is model.adapters_config for m in kit_modules)  # patch 3
    seen, overwritten = [], []
    original_use, original_forward = adapters_backend.output_use, adapters_backend.HyperformerAdapter.forward

    def recorded(*args):
        seen.append(original_use(*args))
        return seen[-1]

    def forward(self, x, residual_input, output_gating=False):
        out = original_forward(self, x, residual_input, output_gating)
        overwritten.append(out[0] is residual_input)
        return out

    monkeypatch.setattr(adapters_backend, "output_use", recorded)
    monkeypatch.setattr(adapters_backend.HyperformerAdapter, "forward", forward)
    in_place = logits(model, inputs)
    assert seen and set(seen) == {adapters_backend.ONLY} and all(overwritten)
    expected = {}
    for use in (adapters_backend.ADDED, adapters_backend.ALONE):
        monkeypatch.setattr(adapters_backend, "output_use", lambda *a, use=use: use)
        overwritten.clear()
        expected[use] = logits(model, inputs)
        assert not any(overwritten)
        torch.testing.assert_close(in_place, expected[use])
    monkeypatch.setattr(adapters_backend, "output_use", recorded)
    overwritten.clear()
    with_autograd = model(**inputs, **TASKS).logits  # autograd: never in place
    torch.testing.assert_close(with_autograd.detach(), in_place)
    assert overwritten and not any(overwritten)
    for setup, use in ((Stack("kh"), adapters_backend.ONLY), (Parallel("kh", "kh"), adapters_backend.ALONE)):
        model.set_active_adapters(setup)
        seen.clear()
        logits(model, inputs)
        assert seen and set(seen) == {use}, setup


@pytest.mark.parametrize("method", KIT)
@pytest.mark.parametrize("trainer", ["Trainer", "AdapterTrainer"])
def test_trainer_with_default_arguments_keeps_task_ids(tiny_model_dirs, tmp_path, method, trainer):
    """``remove_unused_columns=True`` (the default) keeps ``task_ids``: the model's forward declares it."""
    import datasets
    import transformers
    from transformers import TrainingArguments

    folder = tiny_model_dirs["bert"]
    torch.manual_seed(0)
    model = adapters.AutoAdapterModel.from_pretrained(folder)
    model.add_adapter("x", config=config(method))
    model.add_classification_head("x", num_labels=2)
    model.train_adapter("x")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = {"text": TEXTS * 2, "label": [0, 1] * 4, "task_ids": [0, 1] * 4}  # "label": what the Trainer keeps
    data = datasets.Dataset.from_dict(rows).map(lambda row: tokenizer(row["text"]), remove_columns=["text"])
    cls = getattr(transformers, trainer) if trainer == "Trainer" else adapters.AdapterTrainer
    args = TrainingArguments(str(tmp_path), max_steps=2, per_device_train_batch_size=4, report_to=[], use_cpu=True)
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs.get("task_ids")), with_kwargs=True)
    cls(model=model, args=args, train_dataset=data, processing_class=tokenizer).train()
    assert seen and all(ids is not None and len(ids) == 4 for ids in seen)


@pytest.mark.parametrize("method", KIT)
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_takes_task_ids(tiny_model_dirs, method, arch):
    folder = tiny_model_dirs[arch]
    model = model_for(folder, causal=True)
    model.add_adapter("x", config=config(method, init_weights="bert"))
    model.set_active_adapters("x")
    prompts = {k: v[:2] for k, v in batch(folder).items() if k != "token_type_ids"}
    settings = {"max_new_tokens": 3, "do_sample": False, "pad_token_id": 0}
    greedy = model.generate(**prompts, task_ids=torch.tensor([0, 1]), **settings)
    beams = model.generate(**prompts, task_ids=torch.tensor([0, 1]), num_beams=2, **settings)
    assert greedy.shape[0] == 2 and beams.shape[0] == 2
    alone = model.generate(**{k: v[:1] for k, v in prompts.items()}, task_ids=torch.tensor([0]), **settings)
    assert torch.equal(alone[0], greedy[0][: alone.shape[1]])


@pytest.mark.parametrize("method", KIT)
def test_batch_split_routes_each_slice_with_its_own_task_ids(tiny_model_dirs, method):
    from adapters.composition import BatchSplit

    folder = tiny_model_dirs["bert"]
    model = model_for(folder)
    model.add_adapter("k1", config=config(method, init_weights="bert"))
    model.add_adapter("k2", config=config(method, init_weights="bert"))
    inputs = batch(folder)
    model.set_active_adapters(BatchSplit("k1", "k2", batch_sizes=[1, 3]))
    split = logits(model, inputs)  # task ids a, b, a, b over the whole batch
    for name, rows in (("k1", [0]), ("k2", [1, 2, 3])):
        model.set_active_adapters(name)
        with torch.no_grad():
            alone = model(**{k: v[rows] for k, v in inputs.items()}, task_ids=[TASKS["task_ids"][r] for r in rows])
        torch.testing.assert_close(split[rows], alone.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", KIT)
def test_per_layer_reduction_factors(tiny_model_dirs, method):
    """adapters' per-layer form: the parallel adapter follows it; Hyperformer++ (one shape for all layers) refuses
    different factors with the kit's error; a mapping without the layer or a default is a KeyError, as in adapters."""
    folder = tiny_model_dirs["bert"]
    model = model_for(folder)
    if method == "hyperformer":
        with pytest.raises(AdapterKitError, match="`reduction_factor`"):
            config(method, reduction_factor={"1": 2, "default": 4})
        model.add_adapter("x", config=config(method, reduction_factor={"default": 8}))
        assert model.base_model.shared_parameters["x"].bottleneck_size == 32 // 8
        return
    model.add_adapter("x", config=config(method, reduction_factor={"1": 2, "default": 4}))
    sizes = [layer["output_adapter"].blocks.down_weight.shape[1] for layer in model.get_adapter("x").values()]
    assert sizes == [32 // 4, 32 // 2]
    with pytest.raises(KeyError, match="`reduction_factor`"):
        model.add_adapter("y", config=config(method, reduction_factor={"0": 8}))
