"""docs/adding-a-method.md, checked: a toy method written as a method folder would be, registered with one call,
is then a PEFT type and an ``adapters`` config string, and the kit's own functions serve it."""

from __future__ import annotations

from dataclasses import dataclass

import adapters
import peft
import pytest
import torch
from adapters import BnConfig
from adapters.methods.modeling import Adapter
from torch import nn

from hf_adapter_kit import get_config, list_methods
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
    from hf_adapter_kit import AdapterKitError

    with pytest.raises(AdapterKitError, match="registered already"):
        _register()
