"""The kit's own methods beyond the shared matrix (tests/test_methods_matrix.py): multi-task routing, the libraries'
own APIs in a fresh process, PEFT's bottleneck against adapters', Hyperformer's parameter formula, its training and
serving paths against the adapter as the paper writes it, new tasks, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import adapters
import peft
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from hf_adapter_kit import AdapterKitError, get_config, task_context
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.methods.hyperformer import packed as packed_module
from hf_adapter_kit.methods.hyperformer.hypernet import HyperNetwork, hypernetwork_parameter_count
from hf_adapter_kit.methods.hyperformer.tasks import add_task
from hf_adapter_kit.modeling import load_base_model
from hf_adapter_kit.routing import Routing
from tests.conftest import UnplacedConfig, UnplacedModel, perturb
from tests.test_methods_matrix import LABELS, _attach, _batch


MULTI = [
    ("parallel", "adapters", {"reduction_factor": 4, "tasks": ["a", "b", "c"]}),
    ("parallel", "peft", {"reduction_factor": 4, "tasks": ["a", "b", "c"], "scaling": "learned"}),
    ("hyperformer", "adapters", {"reduction_factor": 4, "tasks": ["a", "b", "c"], "projected_dim": 8}),
    ("hyperformer", "peft", {"reduction_factor": 4, "tasks": ["a", "b", "c"], "projected_dim": 8}),
]
IDS = [f"{m}-{b}" for m, b, _ in MULTI]
BACKENDS = ("adapters", "peft")


def _ready(folder, method, backend, options):
    model = _attach(folder, method, backend, options)
    perturb(model)
    return model.eval()


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize(("method", "backend", "options"), MULTI, ids=IDS)
def test_mixed_task_batch_equals_per_task_runs(tiny_model_dirs, texts, arch, method, backend, options):
    model = _ready(tiny_model_dirs[arch], method, backend, options)
    batch = _batch(tiny_model_dirs[arch], texts * 2)  # 8 rows, padded once so that row slices match
    tasks = ["a", "b", "c", "a", "c", "c", "b", "a"]
    with torch.no_grad():
        mixed = model(**batch, task_ids=tasks).logits
        for task in "abc":
            rows = [i for i, t in enumerate(tasks) if t == task]
            alone = model(**{k: v[rows] for k, v in batch.items()}, task_ids=task).logits
            # float32 over other batch shapes: a few ulps of relative error (1.4e-6 absolute was seen with atol-only)
            torch.testing.assert_close(mixed[rows], alone, rtol=1e-5, atol=1e-5)
        # the tasks really differ: the same inputs routed to another task give other outputs
        other = model(**batch, task_ids=torch.tensor([1, 2, 0, 1, 0, 0, 2, 1])).logits
        assert not torch.allclose(mixed, other, atol=1e-4)


@pytest.mark.parametrize(("method", "backend", "options"), MULTI, ids=IDS)
def test_mixed_batch_gradients_equal_the_sum_of_per_task_gradients(tiny_model_dirs, texts, method, backend, options):
    """A training step on a mixed batch (gathered weights, one batched matmul) moves every task as its rows alone do."""
    model = _ready(tiny_model_dirs["bert"], method, backend, options)  # eval: no dropout; autograd still on
    batch = _batch(tiny_model_dirs["bert"], texts * 2)
    tasks = ["a", "b", "c", "a", "c", "c", "b", "a"]
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True)

    mixed = grads(model(**batch, task_ids=tasks).logits.square().sum())
    per_task = [
        grads(model(**{k: v[rows] for k, v in batch.items()}, task_ids=task).logits.square().sum())
        for task in "abc"
        for rows in [[i for i, t in enumerate(tasks) if t == task]]
    ]
    changed = 0
    for got, *parts in zip(mixed, *per_task, strict=True):
        expected = sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None
        if expected is None:
            assert got is None or not got.any()
            continue
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
        changed += int(bool(expected.any()))
    assert changed >= 3  # the adapter (and head) received gradients


@pytest.mark.parametrize(("method", "backend", "options"), MULTI, ids=IDS)
def test_task_id_errors_name_the_argument(tiny_model_dirs, texts, method, backend, options):
    model = _ready(tiny_model_dirs["bert"], method, backend, options)
    batch = _batch(tiny_model_dirs["bert"], texts)
    bad = [
        None,  # a multi-task adapter needs task_ids
        "sentiment",  # unknown name
        [0, 1, 3, 0],  # out of range
        [0, 1],  # the batch has 4
        torch.tensor([-1, 0, 0, 0]),
    ]
    for task_ids in bad:
        with pytest.raises(AdapterKitError, match=r"`task_ids`") as caught:
            model(**batch, task_ids=task_ids)
        assert "'a'" in str(caught.value) or "batch has 4" in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("method", "options", "argument"),
    [
        ("hyperformer", {"tasks": []}, "tasks"),
        ("hyperformer", {"tasks": ["a", "a"]}, "tasks"),
        ("parallel", {"tasks": ["a", ""]}, "tasks"),
        ("parallel", {"tasks": "ab"}, "tasks"),
        ("hyperformer", {"task_embedding_dim": 0}, "task_embedding_dim"),
        ("hyperformer", {"projected_dim": -2}, "projected_dim"),
        ("parallel", {"scaling": "big"}, "scaling"),
        ("hyperformer", {"reduction_factor": 0}, "reduction_factor"),
        ("hyperformer", {"non_linearity": "wiggle"}, "non_linearity"),
    ],
)
@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_bad_config_values_are_refused(method, options, argument, backend):
    with pytest.raises(AdapterKitError, match=f"`{argument}`"):
        get_config(method, backend=backend, **options)


def test_bad_positions_are_refused():
    for bad in (["ffn", "ffn"], ["cross"], []):
        with pytest.raises(AdapterKitError, match="`positions`"):
            get_config("hyperformer", backend="peft", positions=bad)


# A family with no row in the kit's table and two candidates for each output projection (tests/conftest.py): PEFT
# cannot place the kit's methods, and adapters has no support for it (its own seq_bn, "pfeiffer", included).
@pytest.mark.parametrize(
    ("method", "backend"), [(m, b) for m in ("hyperformer", "parallel", "pfeiffer") for b in BACKENDS]
)
def test_architecture_without_a_placement_is_refused_untouched(method, backend):
    model = UnplacedModel(UnplacedConfig())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    allowed = r"places=.*'self_attn.o_proj'" if backend == "peft" else r"backend='peft'"
    with pytest.raises(AdapterKitError, match=rf"`model_type`='hf-adapter-kit-unplaced'.*{allowed}"):
        get_backend(backend).attach(model, get_config(method, backend=backend), "toy")
    assert not hasattr(model, "adapters_config") and not isinstance(model, peft.PeftModel)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# -- the libraries' own APIs, in a fresh process ------------------------------------------------------------------
FRESH = """
import json, sys, torch
from safetensors.torch import load_file
import hf_adapter_kit  # registers the kit's methods with both libraries; nothing else is used below
import adapters, peft
from transformers import AutoModelForSequenceClassification, AutoTokenizer
cases = json.loads(sys.argv[1])
for case in cases:
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(case["base"], num_labels=2)
    if case["backend"] == "peft":
        model = peft.PeftModel.from_pretrained(base, case["folder"])
    else:
        adapters.init(base)
        name = base.load_adapter(case["folder"], set_active=True, use_safetensors=True)
        model = base
    model.eval()
    batch = AutoTokenizer.from_pretrained(case["base"])(case["texts"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch, task_ids=case["task_ids"]).logits
    expected = load_file(case["expected"])["logits"]
    assert torch.equal(logits, expected), (case["folder"], (logits - expected).abs().max())
print("ok", len(cases))
"""


def test_saved_with_the_library_api_loads_with_it_in_a_fresh_process(tiny_model_dirs, texts, tmp_path):
    cases = []
    for method, backend, options in MULTI + [("pfeiffer", "peft", {}), ("houlsby", "peft", {})]:
        folder = tmp_path / f"{method}-{backend}"
        model = _ready(tiny_model_dirs["bert"], method, backend, options)
        task_ids = ["a", "c", "b", "a"] if "tasks" in options else None
        batch = _batch(tiny_model_dirs["bert"], texts)
        with torch.no_grad():
            logits = model(**batch, **({"task_ids": task_ids} if task_ids else {})).logits
        if backend == "peft":
            model.save_pretrained(folder)  # PEFT's own API; adapter_config.json names the method
            assert json.loads((folder / "adapter_config.json").read_text())["peft_type"].startswith("HF_ADAPTER_KIT_")
        else:
            model.save_adapter(str(folder), "toy", use_safetensors=True)  # adapters' own API
        save_file({"logits": logits.contiguous()}, tmp_path / f"{method}-{backend}.safetensors")
        case = {"base": tiny_model_dirs["bert"], "folder": str(folder), "backend": backend, "texts": texts}
        cases.append(case | {"task_ids": task_ids, "expected": str(tmp_path / f"{method}-{backend}.safetensors")})
    done = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps(cases)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == f"ok {len(cases)}", done.stderr[-3000:]


WITHOUT_KIT = """
import sys, adapters, peft
from transformers import AutoModelForSequenceClassification
base = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], num_labels=2)
try:
    if sys.argv[3] == "peft":
        peft.PeftModel.from_pretrained(base, sys.argv[2])
    else:
        adapters.init(base)
        base.load_adapter(sys.argv[2], use_safetensors=True)
except Exception as error:
    print(type(error).__name__, error)
"""


@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_loading_without_the_kit_fails_naming_it(tiny_model_dirs, tmp_path, backend):
    model = _ready(tiny_model_dirs["bert"], "hyperformer", backend, {"reduction_factor": 4})
    if backend == "peft":
        model.save_pretrained(tmp_path)
    else:
        model.save_adapter(str(tmp_path), "toy", use_safetensors=True)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_KIT, tiny_model_dirs["bert"], str(tmp_path), backend],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "KeyError" in done.stdout and "hf_adapter_kit" in done.stdout.lower(), done.stdout + done.stderr[-2000:]


# -- PEFT's bottleneck is adapters' computation -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "adapters_cls"), [("pfeiffer", adapters.SeqBnConfig), ("houlsby", adapters.DoubleSeqBnConfig)]
)
def test_peft_bottleneck_matches_adapters_weight_for_weight(tiny_model_dirs, texts, method, adapters_cls):
    folder = tiny_model_dirs["bert"]
    reference = AutoModel.from_pretrained(folder).eval()
    adapters.init(reference)
    reference.add_adapter("x", config=adapters_cls(reduction_factor=4, original_ln_before=False))
    reference.set_active_adapters("x")
    ours = peft.get_peft_model(
        AutoModel.from_pretrained(folder), get_config(method, backend="peft", reduction_factor=4, task_type=None)
    ).eval()
    copied = 0
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if ".adapters.x." not in name:
                continue
            param.normal_(std=0.2)
            block = name.split(".adapters.x.")[0]  # e.g. encoder.layer.0.output
            part = "down" if "adapter_down" in name else "up"
            target = f"base_model.model.{block}.dense.kit_bottleneck_adapter.default.{part}.{name.rsplit('.', 1)[1]}"
            ours.get_parameter(target).copy_(param)
            copied += 1
    assert copied == 4 * 2 * (2 if method == "houlsby" else 1)  # 4 tensors x 2 layers x positions
    batch = _batch(folder, texts)
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).last_hidden_state, reference(**batch).last_hidden_state)


# -- Hyperformer++ ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["adapters", "peft"])
@pytest.mark.parametrize(
    "options", [{}, {"tasks": ["a", "b", "c"], "conditional_layer_norm": False, "projected_dim": 16}]
)
def test_hyperformer_parameter_count_follows_the_formula(tiny_model_dirs, backend, options):
    model = _attach(tiny_model_dirs["llama"], "hyperformer", backend, options)
    head = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "score" in n)
    adapter = sum(p.numel() for p in model.parameters() if p.requires_grad) - head
    config = get_config("hyperformer", backend=backend, **options)
    expected = hypernetwork_parameter_count(
        hidden_size=32,
        bottleneck_size=32 // 32,
        num_layers=2,
        num_tasks=len(config.tasks),
        task_embedding_dim=config.task_embedding_dim,
        projector_hidden_dim=config.projector_hidden_dim,
        projected_dim=config.projected_dim,
        conditional_layer_norm=config.conditional_layer_norm,
    )
    assert adapter == expected


def _net_with_drawn_generators(**kwargs) -> HyperNetwork:
    net = HyperNetwork(hidden_size=8, num_layers=2, projected_dim=4, **{"bottleneck_size": 2, **kwargs})
    for name in ("up_weight", "up_bias", "down_bias", "ln_weight", "ln_bias"):
        if hasattr(net, name):  # generators that start at zero would make every task look alike
            torch.nn.init.normal_(getattr(net, name).weight)
    return net


def _reference_adapter(net: HyperNetwork, hidden: torch.Tensor, tasks: list[int], layer: int, position: str):
    """The adapter as written in the paper, one example at a time: layer norm with the task's gamma/beta, down,
    activation, up; nothing folded, nothing cached."""
    rows = []
    for h, task in zip(hidden, tasks, strict=True):
        w = {k: v[0] for k, v in net.generate(torch.tensor([task]), layer, position).items()}
        if net.conditional_layer_norm:
            h = torch.nn.functional.layer_norm(h, (h.shape[-1],), w["ln_weight"], w["ln_bias"])
        down = net.act(torch.nn.functional.linear(h, w["down_weight"], w["down_bias"]))
        rows.append(torch.nn.functional.linear(down, w["up_weight"], w["up_bias"]))
    return torch.stack(rows)


def _scaled_tolerance(expected: torch.Tensor) -> dict:
    """float32 rounding relative to the outputs' scale (the drawn generators make large ones): the folded form, the
    batched form and the reference sum in other orders, so a fixed atol of 1e-5 failed about one run in ten."""
    return {"rtol": 1e-5, "atol": 1e-5 * max(1.0, expected.abs().max().item())}


@pytest.mark.parametrize("conditional_layer_norm", [True, False])
@pytest.mark.parametrize("tasks", [[2, 2, 2], [0, 2, 1]], ids=["one task", "mixed"])
@pytest.mark.parametrize("fold_from_rows", [0, 10**9], ids=["folded", "layer_norm"])
def test_training_and_serving_equal_the_adapter_as_written(monkeypatch, conditional_layer_norm, tasks, fold_from_rows):
    """The paper's batched adapter (training, autograd) and the serving engine (folded or layer-normed rows, from the
    bank) give the one-example-at-a-time reference's outputs; training gives its gradients too."""
    monkeypatch.setattr(packed_module, "FOLD_FROM_ROWS", fold_from_rows)  # many rows are folded, a few are not
    torch.manual_seed(0)
    net = _net_with_drawn_generators(tasks=list("abc"), conditional_layer_norm=conditional_layer_norm)
    hidden = torch.randn(3, 5, 8) * 3 + 1  # a mean and a scale for the layer norm to take out
    params = [hidden.requires_grad_(), *net.parameters()]
    expected = _reference_adapter(net, hidden, tasks, 1, "ffn")
    expected_grads = torch.autograd.grad(expected.square().sum(), params, allow_unused=True)
    route = Routing(torch.tensor(tasks))
    trained = net.adapter(hidden, 1, "ffn", route)  # the training path: the paper's math, batched
    torch.testing.assert_close(trained, expected, **_scaled_tolerance(expected))
    grads = torch.autograd.grad(trained.square().sum(), params, allow_unused=True)
    for got, want in zip(grads, expected_grads, strict=True):  # to float32 rounding relative to each's scale
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    assert grads[0].abs().sum() > 0 and any(g is not None and g.abs().sum() > 0 for g in grads[1:])
    net.eval()
    with torch.no_grad():
        for _ in range(2):  # fills the bank, then reads it
            served = net.adapter(hidden.detach(), 1, "ffn", route)
            torch.testing.assert_close(served, expected.detach(), **_scaled_tolerance(expected))
    assert net.bank.slots  # served from the bank


def test_batched_generation_equals_one_task_at_a_time():
    net = _net_with_drawn_generators(tasks=list("abc"))
    stacked = net.generate(torch.tensor([0, 2]), 1, "attention")
    for row, task in enumerate((0, 2)):
        alone = net.generate(torch.tensor([task]), 1, "attention")
        for key, value in alone.items():
            torch.testing.assert_close(stacked[key][row], value[0])
    assert not torch.allclose(stacked["up_weight"][0], stacked["up_weight"][1])


@pytest.mark.parametrize("backend", ["adapters", "peft"])
@pytest.mark.parametrize("tasks", ["b", ["a", "b", "c", "a"]], ids=["one task", "mixed"])
@pytest.mark.parametrize("conditional_layer_norm", [True, False], ids=["task layer norm", "no layer norm"])
def test_served_and_trained_outputs_agree(tiny_model_dirs, texts, backend, tasks, conditional_layer_norm):
    """A whole model served by the engine (eval, no autograd: the bank) gives what the paper's adapter gives."""
    options = {**MULTI[2][2], "conditional_layer_norm": conditional_layer_norm}
    model = _ready(tiny_model_dirs["bert"], "hyperformer", backend, options)
    batch = _batch(tiny_model_dirs["bert"], texts)
    with torch.enable_grad():
        fresh = model(**batch, task_ids=tasks).logits.detach()
    with torch.no_grad():
        model(**batch, task_ids=tasks)  # fills the bank
        served = model(**batch, task_ids=tasks).logits
    assert any(net.bank.slots for net in model.modules() if isinstance(net, HyperNetwork))
    torch.testing.assert_close(served, fresh, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["adapters", "peft"])
def test_a_new_task_learns_only_its_embedding(tiny_model_dirs, texts, tmp_path, backend):
    folder = tiny_model_dirs["bert"]
    model = _ready(folder, "hyperformer", backend, MULTI[2][2])
    name = "toy" if backend == "adapters" else "default"
    batch = _batch(folder, texts)
    with torch.no_grad():
        old = model(**batch, task_ids=["a", "b", "c", "a"]).logits
    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    embedding = add_task(model, "d", adapter_name=name)
    assert [p for p in model.parameters() if p.requires_grad] == [embedding]
    model.train()
    optimizer = torch.optim.AdamW([embedding], lr=0.1)
    labels = torch.tensor([1, 0, 1, 0])
    for _ in range(5):
        model(**batch, labels=labels, task_ids="d").loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    changed = {n for n, p in model.named_parameters() if n in params_before and not torch.equal(p, params_before[n])}
    assert changed == set(), changed  # everything the old tasks use is untouched
    with torch.no_grad():
        assert torch.equal(model(**batch, task_ids=["a", "b", "c", "a"]).logits, old)
        new = model(**batch, task_ids="d").logits
    # the grown adapter saves and loads with its four tasks
    if backend == "peft":
        model.save_pretrained(tmp_path)
        reloaded = peft.PeftModel.from_pretrained(load_base_model(folder, LABELS), tmp_path).eval()
    else:
        model.save_adapter(str(tmp_path), name, use_safetensors=True)
        reloaded = load_base_model(folder, LABELS)
        adapters.init(reloaded)
        reloaded.load_adapter(str(tmp_path), set_active=True, use_safetensors=True)
        reloaded.eval()
        # adapters saves the static head separately; carry over the head the old tasks were trained with
        reloaded.classifier.load_state_dict(model.classifier.state_dict())
    if backend == "peft":
        assert load_file(tmp_path / "adapter_model.safetensors")  # safetensors, readable
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch, task_ids="d").logits, new, rtol=0, atol=1e-6)


def test_a_single_task_adapter_outside_a_context_routes_once_per_batch_shape():
    """Every layer of every decoding step asks for the routing: a single-task adapter called with no task ids gets one
    built per (batch size, device, inference mode), not one per layer; one made under inference mode (generation)
    never reaches a training step, whose autograd could not save it."""
    from hf_adapter_kit.routing import routing

    cpu = torch.device("cpu")
    first = routing(("only",), 3, cpu)
    assert routing(("only",), 3, cpu) is first and first.ids.tolist() == [0, 0, 0] and first.single == 0
    assert routing(("only",), 5, cpu) is not first
    with torch.inference_mode():
        generating = routing(("only",), 3, cpu)
    assert generating is not first and generating.ids.is_inference() and not first.ids.is_inference()
    weight = torch.ones(
        1, 2, requires_grad=True
    )  # a training step after generation: the index is not an inference tensor
    weight.index_select(0, routing(("only",), 3, cpu).inverse).sum().backward()
    assert weight.grad.tolist() == [[3.0, 3.0]]
    with task_context("only"):  # inside a task context, the context's own routing as before
        assert routing(("only",), 3, cpu) is not first
