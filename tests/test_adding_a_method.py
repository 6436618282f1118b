"""docs/adding-a-method.md, checked: a toy method written as a method folder would be, registered with one call,
is then a PEFT type and an ``adapters`` config string, and the kit's own functions serve it; and each capability a
spec declares (merging, training the whole model, refusing causal LMs, float32 weights on a half-precision base,
reading plain library folders) reaches the kit through the spec alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import adapters
import peft
import pytest
import torch
from adapters import BnConfig
from adapters.methods.modeling import Adapter
from torch import nn
from transformers import AutoModelForSequenceClassification

from hf_adapter_kit import AdapterKitError, get_config, list_methods
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.methods.common import checks
from hf_adapter_kit.methods.common.adapters_glue import init_flags
from hf_adapter_kit.methods.common.peft_tuner import KitLayer, KitPeftConfig, KitTuner
from hf_adapter_kit.registry import AdaptersMethod, MethodSpec, PeftMethod, register_method, unregister_method
from tests.conftest import perturb
from tests.test_methods_matrix import LABELS, _batch


# -- what methods/toy_gate/{peft_backend,adapters_backend,__init__}.py would hold ---------------------------------
@dataclass
class GatePeftConfig(KitPeftConfig):
    """``h + g * h`` after each sub-block's output projection, ``g`` a learned vector (zero: identity start)."""

    peft_type_name = "HF_ADAPTER_KIT_TOY_GATE"


class GateLayer(KitLayer):
    adapter_layer_names = ("kit_toy_gate_vector",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kit_toy_gate_vector = nn.ParameterDict()

    def create(self, adapter_name, config, hidden_size):
        start = torch.zeros(hidden_size) if config.init_weights else torch.randn(hidden_size)
        self.kit_toy_gate_vector[adapter_name] = nn.Parameter(start)

    def delta(self, adapter_name, source, output):
        return source * self.kit_toy_gate_vector[adapter_name]


class GateTuner(KitTuner):
    prefix = "kit_toy_gate_"
    tuner_layer_cls = GateLayer


@dataclass(eq=False)
class GateConfig(BnConfig):
    architecture: str | None = "tests.toy_gate"
    mh_adapter: bool = False
    output_adapter: bool = True
    reduction_factor: float = 16  # unused: BnConfig's fields without a default
    non_linearity: str = "relu"


class GateAdapter(Adapter):
    def __init__(self, adapter_name, config, hidden_size):
        nn.Module.__init__(self)
        init_flags(self, adapter_name, config)
        self.gate = nn.Parameter(torch.randn(hidden_size))

    def forward(self, x, residual_input, output_gating=False):
        up = x * self.gate
        return up + residual_input, None, up


def _register():
    return register_method(
        MethodSpec(
            name="toy_gate",
            summary="A learned gate per feature: the smallest adapter there is.",
            configs={
                "peft": lambda **o: checks.build_config(GatePeftConfig, "toy_gate", {"task_type": "SEQ_CLS"}, o),
                "adapters": lambda **o: checks.build_config(GateConfig, "toy_gate", {}, o),
            },
            default_backend="peft",
            learning_rate=1e-2,
            peft=PeftMethod("HF_ADAPTER_KIT_TOY_GATE", GatePeftConfig, GateTuner),
            adapters=AdaptersMethod(
                "toy_gate",
                GateConfig,
                "tests.toy_gate",
                lambda name, c, i, key, mc: GateAdapter(name, c, mc.hidden_size),
            ),
            recipe="pfeiffer",
        )
    )


@pytest.fixture
def toy_method():
    _register()
    yield "toy_gate"
    unregister_method("toy_gate")
    assert "toy_gate" not in list_methods()


@pytest.mark.parametrize("backend", ["peft", "adapters"])
def test_a_registered_toy_method_works_through_both_libraries_and_the_kit(
    toy_method, tiny_model_dirs, texts, tmp_path, backend
):
    from hf_adapter_kit import from_pretrained
    from hf_adapter_kit.folders import AdapterMeta, attach_meta, save_adapter
    from hf_adapter_kit.modeling import load_base_model

    folder = tiny_model_dirs["bert"]
    torch.manual_seed(0)
    base = load_base_model(folder, LABELS)
    config = get_config(toy_method, backend=backend)
    assert isinstance(config, GatePeftConfig if backend == "peft" else GateConfig)
    model = get_backend(backend).attach(base, config, "toy")
    attach_meta(
        model,
        AdapterMeta.for_model(
            base, method=toy_method, backend=backend, adapter_name="toy", base_model=folder, label_names=LABELS
        ),
    )
    perturb(model, 0.1)
    model.eval()
    batch = _batch(folder, texts)
    with torch.no_grad():
        expected = model(**batch).logits
    save_adapter(model, tmp_path / "toy")
    reloaded = from_pretrained(tmp_path / "toy")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected)
    if backend == "peft":
        assert (
            isinstance(reloaded, peft.PeftModel)
            and reloaded.peft_config["default"].peft_type == "HF_ADAPTER_KIT_TOY_GATE"
        )
    else:
        assert "toy_gate" in adapters.configuration.adapter_config.ADAPTER_CONFIG_MAP


def test_a_method_name_taken_twice_is_refused(toy_method):
    with pytest.raises(AdapterKitError, match="registered already"):
        _register()


# -- capabilities: each one reaches the kit through the spec alone ----------------------------------------------------
@dataclass(frozen=True)
class ToyBaselineConfig:
    """A baseline's config on plain transformers names its method; the backend reads the method's spec."""

    method: str


def _lora(**options):
    return peft.LoraConfig(**{"r": 4, "task_type": "SEQ_CLS", "init_lora_weights": False, **options})


def _spec(name: str, configs: dict, **capabilities) -> MethodSpec:
    return MethodSpec(name=name, summary=f"toy {name}", configs=configs, default_backend=next(iter(configs)),
                      learning_rate=1e-3, recipe="pfeiffer", **capabilities)  # fmt: skip


@pytest.fixture
def toy_specs():
    names = []

    def add(spec: MethodSpec) -> str:
        register_method(spec)
        names.append(spec.name)
        return spec.name

    yield add
    for name in names:
        unregister_method(name)


def _saved(tmp_path, folder: str, method: str, backend: str, config) -> str:
    from hf_adapter_kit.folders import AdapterMeta, attach_meta, save_adapter
    from hf_adapter_kit.modeling import load_base_model

    torch.manual_seed(0)
    base = load_base_model(folder, LABELS)
    model = get_backend(backend).attach(base, config, "toy")
    meta = AdapterMeta.for_model(base, method=method, backend=backend, adapter_name="toy", base_model=folder,
                                 label_names=LABELS)  # fmt: skip
    attach_meta(model, meta)
    return str(save_adapter(model, tmp_path / method))


@pytest.mark.parametrize("mergeable", [True, False])
def test_merging_follows_the_spec(toy_specs, tiny_model_dirs, tmp_path, mergeable):
    from hf_adapter_kit import from_pretrained

    method = toy_specs(_spec(f"toy_lora_{mergeable}", {"peft": _lora}, mergeable=mergeable))
    saved = _saved(tmp_path, tiny_model_dirs["bert"], method, "peft", _lora())
    if mergeable:
        merged = from_pretrained(saved, merge=True)
        assert not isinstance(merged, peft.PeftModel) and not any("lora_" in n for n, _ in merged.named_parameters())
    else:
        with pytest.raises(AdapterKitError, match=rf"False for a '{method}' adapter"):
            from_pretrained(saved, merge=True)


@pytest.mark.parametrize("whole_model", [True, False])
def test_training_the_whole_model_follows_the_spec(toy_specs, tiny_model_dirs, tmp_path, whole_model):
    from hf_adapter_kit.modeling import load_base_model

    name = f"toy_baseline_{whole_model}"
    method = toy_specs(_spec(name, {"transformers": lambda: ToyBaselineConfig(name)}, whole_model=whole_model))
    base = load_base_model(tiny_model_dirs["bert"], LABELS)
    model = get_backend("transformers").attach(base, ToyBaselineConfig(method), "toy")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert (len(trainable) == len(list(model.parameters()))) == whole_model
    card = (Path(_saved(tmp_path, tiny_model_dirs["bert"], method, "transformers", ToyBaselineConfig(method)))
            / "README.md").read_text()  # fmt: skip
    assert f"base_model_relation: {'finetune' if whole_model else 'adapter'}" in card


def test_a_method_that_refuses_causal_lms_says_which_do(toy_specs, tiny_llm_dir, tmp_path):
    from hf_adapter_kit import train

    method = toy_specs(_spec("toy_classifier_only", {"peft": _lora}, generative=False))
    with pytest.raises(AdapterKitError, match=r"`method`='toy_classifier_only' is not valid: .*'lora'") as caught:
        train(method, "toy", str(tmp_path / "out"), task_type="causal-lm", model_name_or_path=tiny_llm_dir)
    assert "toy_classifier_only'," not in str(caught.value).split("one of", 1)[1]
    assert not (tmp_path / "out").exists()


@dataclass(eq=False)
class HalfGateConfig(GateConfig):
    architecture: str | None = "tests.toy_gate_half"


@pytest.mark.parametrize("keeps_float32", [True, False])
def test_half_precision_weights_follow_the_spec(toy_specs, tiny_model_dirs, keeps_float32):
    from hf_adapter_kit.modeling import load_base_model

    def build_layer(name, config, layer_idx, location_key, model_config):
        return GateAdapter(name, config, model_config.hidden_size)

    row = AdaptersMethod("toy_gate_half", HalfGateConfig, HalfGateConfig.architecture, build_layer)
    configs = {"adapters": lambda **options: HalfGateConfig(**options)}
    toy_specs(_spec("toy_gate_half", configs, adapters=row, keeps_float32=keeps_float32))
    base = load_base_model(tiny_model_dirs["bert"], LABELS, dtype=torch.bfloat16)
    model = get_backend("adapters").attach(base, HalfGateConfig(), "toy")
    gates = [p for n, p in model.named_parameters() if n.endswith("adapters.toy.gate")]
    assert gates and {p.dtype for p in gates} == {torch.float32 if keeps_float32 else torch.bfloat16}


def test_a_plain_library_folder_is_read_as_the_method_that_recognises_it(toy_specs, tiny_model_dirs, tmp_path):
    from hf_adapter_kit import from_pretrained

    def ia3(**options):
        return peft.IA3Config(task_type="SEQ_CLS", **options)

    plain = peft.get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_model_dirs["bert"]), ia3())
    plain.save_pretrained(str(tmp_path / "raw"))  # PEFT's own folder: no hf_adapter_kit.json
    with pytest.raises(AdapterKitError, match=r"peft_type='IA3' is not a method the kit loads"):
        from_pretrained(tmp_path / "raw")
    recognises = {"peft": lambda config: config.get("peft_type") == "IA3"}
    method = toy_specs(_spec("toy_ia3", {"peft": ia3}, reads_foreign=recognises))
    assert from_pretrained(tmp_path / "raw").hf_adapter_kit_meta.method == method
