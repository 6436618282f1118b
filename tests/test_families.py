"""Every model family x every kit method x both backends, PEFT's LoRA as the control (PEFT's test-matrix habit).

Each case goes through the libraries' own calls: ``peft.get_peft_model`` / ``save_pretrained`` /
``PeftModel.from_pretrained``, and on ``adapters`` ``adapters.init(model, interface=...)`` + ``add_adapter`` +
``train_adapter`` / ``save_adapter`` / ``load_adapter`` (the kit's adapters backend, which makes those calls
with the family's interface). Every case checks: one adapter per block and position, each run by the forward pass;
perturbing its weights changes the output; a training step reaches every trainable weight and changes the output;
save and reload give identical outputs; a bf16 base trains. Each family's tiny random model (hidden size 32, 2
layers) is built once per session (``family_model`` in conftest.py). Then the rest: where the places come from
(the table, the module tree, the user), block numbering, bad input, and docs/methods.md's table.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import peft
import pytest
import torch
from adapters.methods.bottleneck import BottleneckLayer
from peft.tuners.lora import LoraLayer
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_LORA_TARGETS

from hf_adapter_kit import AdapterKitError, get_config
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.backends.adapters_backend import init
from hf_adapter_kit.methods.common import placement
from hf_adapter_kit.methods.common.adapters_glue import positions_of
from hf_adapter_kit.methods.common.peft_tuner import KitLayer
from hf_adapter_kit.modeling import families
from hf_adapter_kit.registry import list_specs
from tests.conftest import FAMILY_OPTIONS, UnplacedConfig, UnplacedModel, family_config, perturb


FAMILIES = list(FAMILY_OPTIONS)
KIT_METHODS = ["pfeiffer", "houlsby", "parallel", "hyperformer"]
TASK_TYPES = {families.ENCODER: "SEQ_CLS", families.DECODER: "CAUSAL_LM", families.ENCODER_DECODER: "SEQ_2_SEQ_LM"}
ENCODER_DECODERS = [f for f in FAMILIES if families.FAMILIES[f].kind == families.ENCODER_DECODER]


def _cases():
    for family in FAMILIES:
        for method in KIT_METHODS:
            for backend in ("peft", "adapters"):
                yield pytest.param(family, method, backend, id=f"{family}-{method}-{backend}")
        yield pytest.param(family, "lora", "peft", id=f"{family}-lora-peft")  # PEFT's own LoRA: the control
        fields = families.interface_fields(families.FAMILIES[family])
        if fields is None or "lora" in fields["adapter_methods"]:  # as docs/methods.md's table says
            yield pytest.param(family, "lora", "adapters", id=f"{family}-lora-adapters")


CASES = list(_cases())


KINDS = {family: row.kind for family, row in families.FAMILIES.items()}  # kept when a test takes a row out


def _kind(family: str) -> str:
    return KINDS[family]


def _config(family: str, method: str, backend: str):
    if method == "lora" and backend == "peft":  # the control: PEFT's LoRA, its own targets where it has them
        targets = {} if family in PEFT_LORA_TARGETS else {"target_modules": [_attention_output(family)]}
        return get_config("lora", backend="peft", r=4, task_type=TASK_TYPES[_kind(family)], **targets)
    if method == "lora":
        return get_config("lora", backend="adapters", r=4)
    if backend == "peft":
        return get_config(method, backend="peft", reduction_factor=4, task_type=TASK_TYPES[_kind(family)])
    return get_config(method, backend="adapters", reduction_factor=4)


def _attention_output(family: str) -> str:
    return families.FAMILIES[family].stacks[0].places["attention"].output.rsplit(".", 1)[-1]


def _attach(model, family: str, method: str, backend: str):
    config = _config(family, method, backend)
    if backend == "peft":
        return peft.get_peft_model(model, config)
    return get_backend("adapters").attach(model, config, "toy")


def _batch(family: str, labels: bool = True) -> dict:
    ids = torch.randint(3, 128, (2, 8), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if _kind(family) == families.ENCODER_DECODER:
        batch["decoder_input_ids"] = ids
    if labels:
        batch["labels"] = torch.tensor([0, 1]) if _kind(family) == families.ENCODER else ids
    return batch


def _adapter_modules(model, method: str, backend: str) -> list[torch.nn.Module]:
    if backend == "adapters" and method == "lora":  # adapters' LoRA layers read their weights, never call them
        return []
    if backend == "adapters":
        return [m.adapters["toy"] for m in model.modules() if isinstance(m, BottleneckLayer) and "toy" in m.adapters]
    return [m for m in model.modules() if isinstance(m, LoraLayer if method == "lora" else KitLayer)]


def _expected_count(model, family: str, method: str, backend: str) -> int:
    config = _config(family, method, backend)
    positions = config.positions if backend == "peft" else positions_of(config)
    return families.num_blocks(family_config(family)) * len(positions)


def _trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("family", "method", "backend"), CASES)
class TestFamilyMatrix:
    def test_attaches_trains_and_is_placed(self, family_model, family, method, backend):
        model = _attach(family_model(family), family, method, backend).eval()  # eval: no dropout, autograd on
        adapters = _adapter_modules(model, method, backend)
        if method != "lora":  # one per block (an encoder-decoder's encoder and decoder) and position
            assert len(adapters) == _expected_count(model, family, method, backend)
        calls = Counter()
        for i, module in enumerate(adapters):
            module.register_forward_hook(lambda *_, i=i: calls.update([i]))
        batch = _batch(family)
        with torch.no_grad():
            before = model(**batch).logits
        assert len(calls) == len(adapters), "some adapters never run"  # each is on the forward path
        perturb(model)  # adapters start as the identity (or, LoRA, add zero): move them away
        with torch.no_grad():
            perturbed = model(**batch).logits
        assert not torch.allclose(before, perturbed)

        trainable = _trainable(model)
        model(**batch).loss.backward()
        reached = {n for n, p in trainable.items() if p.grad is not None and p.grad.abs().sum() > 0}
        assert reached == set(trainable), sorted(set(trainable) - reached)[:5]
        torch.optim.SGD(trainable.values(), lr=0.1).step()
        with torch.no_grad():
            assert not torch.allclose(model(**batch).logits, perturbed)

    def test_save_and_reload_identical(self, family_model, tmp_path, family, method, backend):
        model = perturb(_attach(family_model(family), family, method, backend)).eval()
        batch = _batch(family, labels=False)
        with torch.no_grad():
            expected = model(**batch).logits
        if backend == "peft":
            model.save_pretrained(tmp_path)
            reloaded = peft.PeftModel.from_pretrained(family_model(family), tmp_path)
        else:
            get_backend("adapters").save(model, tmp_path, "toy")
            reloaded = get_backend("adapters").load(family_model(family), tmp_path, "toy")
        with torch.no_grad():
            assert torch.equal(reloaded.eval()(**batch).logits, expected)

    def test_trains_on_a_bf16_base(self, family_model, family, method, backend):
        model = perturb(_attach(family_model(family).to(torch.bfloat16), family, method, backend)).eval()
        out = model(**_batch(family))
        assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
        out.loss.backward()
        grads = [p.grad for p in _trainable(model).values() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_matrix_covers_every_family_and_kit_method():
    assert set(FAMILIES) == set(families.FAMILIES)
    assert {spec.name for spec in list_specs() if spec.peft is not None} == set(KIT_METHODS)


# -- where the places come from --------------------------------------------------------------------------------------
HOULSBY = get_config("houlsby", backend="peft")


@pytest.mark.parametrize("family", FAMILIES)
def test_blocks_are_numbered_encoder_first(family_model, family):
    """Block indices run over the model's blocks in module order, an encoder's before its decoder's (as ``adapters``
    numbers them); their count is ``families.num_blocks``, what a method with one embedding per block needs."""
    config = family_config(family)
    found = placement.resolve(family_model(family), HOULSBY)
    assert found.num_blocks == families.num_blocks(config)
    assert sorted({index for index, _, _ in found.targets.values()}) == list(range(found.num_blocks))
    if family in ENCODER_DECODERS:
        decoder = [index for name, (index, _, _) in found.targets.items() if ".decoder." in f".{name}"]
        assert min(decoder) == families.block_offsets(config)[1] == families.stack_sizes(config)[0]


def _inputs_seen(model, names, family) -> dict[str, torch.Tensor]:
    """The input each named module receives in a forward pass."""
    seen, handles = {}, []
    for name in set(names):

        def stash(module, args, kwargs, name=name):
            seen.setdefault(name, kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

        handles.append(model.get_submodule(name).register_forward_pre_hook(stash, with_kwargs=True))
    with torch.no_grad():
        model(**_batch(family, labels=False))
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("family", FAMILIES)
def test_places_found_in_the_module_tree_are_the_tables(family_model, monkeypatch, family):
    """With its row taken out of the table, each family is placed from its module tree alone: the same modules, and
    block inputs that receive the same tensors as the table's."""
    model = family_model(family)
    table = placement.resolve(model, HOULSBY, needs_input=True)
    monkeypatch.setattr(families, "FAMILIES", {k: v for k, v in families.FAMILIES.items() if k != family})
    found = placement.resolve(model, HOULSBY, needs_input=True)
    assert found.targets.keys() == table.targets.keys()
    pairs = [(table.targets[k][2], found.targets[k][2]) for k in table.targets]
    pairs = [(a or k, b or k) for k, (a, b) in zip(table.targets, pairs, strict=True)]  # None: the module's input
    seen = _inputs_seen(model, [name for pair in pairs for name in pair], family)
    for ours, theirs in pairs:
        assert torch.equal(seen[ours], seen[theirs]), (ours, theirs)


@pytest.mark.parametrize(
    ("family", "places"),
    [
        ("llama", {"attention": "self_attn.o_proj", "ffn": "mlp.down_proj"}),
        (
            "t5",
            {
                "attention": "layer.0.SelfAttention.o",
                "ffn": ["layer.1.DenseReluDense.wo", "layer.2.DenseReluDense.wo"],
            },
        ),
        ("mixtral", {"attention": "self_attn.o_proj", "ffn": "block_sparse_moe"}),
    ],
)
def test_places_a_user_names_are_used(family_model, family, places):
    model = family_model(family)
    named = placement.resolve(model, get_config("houlsby", backend="peft", places=places))
    table = placement.resolve(model, HOULSBY)
    assert {k: v[:2] for k, v in named.targets.items()} == {k: v[:2] for k, v in table.targets.items()}


def test_block_inputs_a_user_names_are_read(family_model):
    model = family_model("llama")
    config = get_config("parallel", backend="peft", block_inputs={"ffn": ["mlp.nowhere", "mlp.up_proj"]})
    found = placement.resolve(model, config, needs_input=True)
    assert {source for _, _, source in found.targets.values()} == {f"model.layers.{i}.mlp.up_proj" for i in (0, 1)}


@pytest.mark.parametrize("method", ["pfeiffer", "parallel"])
def test_a_second_adapter_goes_where_the_first_is_in_a_family_without_a_row(family_model, monkeypatch, method):
    """The module tree is searched again for the second adapter, where the first one's layers wrap the projections."""
    monkeypatch.setattr(families, "FAMILIES", {k: v for k, v in families.FAMILIES.items() if k != "llama"})
    config = get_config(method, backend="peft", task_type="CAUSAL_LM")
    model = peft.get_peft_model(family_model("llama"), config)
    first = {n for n, m in model.named_modules() if isinstance(m, KitLayer)}
    model.add_adapter("second", get_config(method, backend="peft", task_type="CAUSAL_LM", init_weights=False))
    layers = {n: m for n, m in model.named_modules() if isinstance(m, KitLayer)}
    assert set(layers) == first and all(set(m.kit_options) == {"default", "second"} for m in layers.values())
    batch = _batch("llama")
    with torch.no_grad():
        alone = model(**batch).logits
        model.base_model.set_adapter(["default", "second"])
        assert not torch.allclose(model(**batch).logits, alone)


@pytest.mark.parametrize("method", KIT_METHODS)
def test_a_family_without_a_row_attaches_where_the_user_names_the_places(tmp_path, method):
    places = {"attention": "self_attn.o_proj", "ffn": "mlp.down_proj"}
    torch.manual_seed(0)
    base = UnplacedModel(UnplacedConfig())
    fresh = copy.deepcopy(base)
    model = peft.get_peft_model(base, get_config(method, backend="peft", places=places, task_type=None))
    assert {m.layer_index for m in model.modules() if isinstance(m, KitLayer)} == {0, 1}
    perturb(model)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = model(input_ids=ids)
        with model.disable_adapter():
            assert not torch.allclose(model(input_ids=ids), expected)
    model.save_pretrained(tmp_path)
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path)
    assert reloaded.peft_config["default"].places == places
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapters_init_through_the_kit_leaves_the_base_outputs_alone(family_model, family):
    """adapters 1.3.0 gives ModernBERT's bias-less query-key-value projection a random bias (see ``init``); its own
    model classes (Electra's, T5's) compute attention their own way, which moves the last bits only."""
    model = family_model(family)
    batch = _batch(family, labels=False)
    with torch.no_grad():
        before = model(**batch).logits
    init(model)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before, rtol=1e-5, atol=1e-5)


# -- bad input: the kit's error naming the candidates, before anything is changed --------------------------------------
def _untouched(model: torch.nn.Module, before: dict) -> None:
    assert not hasattr(model, "adapters_config") and not hasattr(model, "peft_config")
    assert not any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.state_dict().keys() == before.keys()


@pytest.mark.parametrize("method", KIT_METHODS)
@pytest.mark.parametrize("how", ["library", "kit"])
def test_a_family_the_kit_cannot_place_is_refused_naming_the_candidates(method, how):
    model = UnplacedModel(UnplacedConfig())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = get_config(method, backend="peft")
    with pytest.raises(AdapterKitError, match=r"`model_type`='hf-adapter-kit-unplaced'.*places=") as caught:
        if how == "library":
            peft.get_peft_model(model, config)
        else:
            get_backend("peft").attach(model, config, "toy")
    assert all(f"'{name}'" in str(caught.value) for name in ("self_attn.o_proj", "self_attn.out_proj", "mlp.w2"))
    _untouched(model, before)


@pytest.mark.parametrize(
    ("places", "argument"),
    [
        ({"attention": "self_attn.o_proj", "ffn": "mlp.nowhere"}, "places"),
        ({"attention": "o_proj", "ffn": "mlp.down_proj"}, "places"),  # relative to a block, not a suffix
    ],
)
def test_named_places_that_do_not_exist_are_refused_naming_the_candidates(family_model, places, argument):
    model = family_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterKitError, match=f"`{argument}`") as caught:
        peft.get_peft_model(model, get_config("pfeiffer", backend="peft", places=places))
    assert "'mlp.down_proj'" in str(caught.value) and "'self_attn.o_proj'" in str(caught.value)
    _untouched(model, before)


def test_named_block_inputs_that_do_not_exist_are_refused(family_model):
    model = family_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = get_config("parallel", backend="peft", block_inputs={"ffn": "mlp.nowhere"})
    with pytest.raises(AdapterKitError, match=r"`block_inputs`.*'mlp.up_proj'"):
        peft.get_peft_model(model, config)
    _untouched(model, before)


@pytest.mark.parametrize("bad", [{"ffn": 3}, {"middle": "mlp.down_proj"}, "mlp.down_proj", {"ffn": []}])
def test_places_of_the_wrong_shape_are_refused_by_the_config(bad):
    with pytest.raises(AdapterKitError, match="`places`"):
        get_config("pfeiffer", backend="peft", places=bad)


@pytest.mark.parametrize("method", ["pfeiffer", "hyperformer"])
def test_adapters_refuses_a_family_it_cannot_run_and_names_the_backend_that_can(method):
    model = UnplacedModel(UnplacedConfig())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterKitError, match=r"'hf-adapter-kit-unplaced'.*backend='peft'"):
        get_backend("adapters").attach(model, get_config(method, backend="adapters"), "toy")
    _untouched(model, before)


# -- decoders, and the docs ------------------------------------------------------------------------------------------
def test_decoders_are_the_causal_families():
    decoders = {f for f in FAMILIES if families.is_decoder(family_config(f))}
    assert decoders == {f for f in FAMILIES if _kind(f) == families.DECODER}
    assert {"gpt2", "llama", "qwen3_moe", "olmo2"} <= decoders and not {"bert", "t5", "modernbert"} & decoders
    from transformers import AutoConfig

    assert families.is_decoder(AutoConfig.for_model("opt")) and not families.is_decoder(AutoConfig.for_model("mpnet"))


def test_a_multitask_model_reads_a_decoder_at_its_last_token(family_model):
    from hf_adapter_kit.multitask import MultiTaskModel, TaskHead

    for family, decoder in (("qwen2", True), ("modernbert", False)):
        body = family_model(family).base_model
        assert MultiTaskModel(body, {"a": TaskHead("sequence", 2)}).decoder is decoder


MARKERS = (
    "<!-- families table: rendered by hf_adapter_kit.methods.common.placement.families_table -->",
    "<!-- end -->",
)


def test_docs_hold_the_rendered_families_table():
    text = (Path(__file__).parent.parent / "docs" / "methods.md").read_text()
    match = re.search(re.escape(MARKERS[0]) + r"\n(.*?)" + re.escape(MARKERS[1]), text, re.S)
    assert match, "docs/methods.md lacks the families table's markers"
    assert match.group(1) == placement.families_table()
