"""Property-based checks of method options (hypothesis).

Every valid config survives a real save and load through its library unchanged; every invalid one is refused with
the kit's error, never with a crash from deep inside a library.
"""

from __future__ import annotations

import inspect

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_adapter_kit import AdapterKitError, from_pretrained, get_config
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.folders import AdapterMeta, attach_meta, save_adapter
from hf_adapter_kit.modeling import load_base_model


SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ACTIVATIONS = st.sampled_from(["relu", "gelu", "swish", "tanh", "silu", "gelu_new", "leakyrelu"])
FRACTION = st.floats(min_value=0.0, max_value=0.9, allow_nan=False)

BOTTLENECK = st.fixed_dictionaries(
    {},
    optional={
        "reduction_factor": st.integers(1, 32) | st.sampled_from([0.5, 1.5, 2.0, 8.0]),
        "non_linearity": ACTIVATIONS,
        "dropout": FRACTION,
        "scaling": st.floats(min_value=0.05, max_value=4.0, allow_nan=False),
        "original_ln_after": st.booleans(),
        "use_gating": st.booleans(),
    },
)
PEFT_LORA = st.fixed_dictionaries(
    {},
    optional={
        "r": st.integers(1, 32),
        "lora_alpha": st.integers(1, 64),
        "lora_dropout": FRACTION,
        "use_rslora": st.booleans(),
        "bias": st.sampled_from(["none", "all", "lora_only"]),
    },
)


def _round_trip(folder, tmp_path, method, backend, options):
    config = get_config(method, backend=backend, **options)
    base = load_base_model(folder, ["a", "b"])
    model = get_backend(backend).attach(base, config, "toy")
    attach_meta(
        model,
        AdapterMeta.for_model(
            base, method=method, backend=backend, adapter_name="toy", base_model=folder, label_names=["a", "b"]
        ),
    )
    save_adapter(model, tmp_path / "adapter")
    loaded = from_pretrained(tmp_path / "adapter")
    return config, loaded


@SETTINGS
@given(method=st.sampled_from(["pfeiffer", "houlsby"]), options=BOTTLENECK)
def test_valid_bottleneck_configs_round_trip(tiny_model_dirs, tmp_path, method, options):
    config, loaded = _round_trip(tiny_model_dirs["bert"], tmp_path, method, "adapters", options)
    assert loaded.adapters_config.get("toy").to_dict() == config.to_dict()


@SETTINGS
@given(options=PEFT_LORA)
def test_valid_peft_lora_configs_round_trip(tiny_model_dirs, tmp_path, options):
    config, loaded = _round_trip(tiny_model_dirs["roberta"], tmp_path, "lora", "peft", options)
    saved = loaded.peft_config["default"].to_dict()
    for key, value in config.to_dict().items():
        if key not in {"base_model_name_or_path", "revision", "inference_mode"}:
            assert saved[key] == value, key


NOT_POSITIVE = st.integers(max_value=0) | st.floats(max_value=0.0) | st.floats(allow_nan=True).filter(lambda x: x != x)
NOT_A_NUMBER = st.text(max_size=5) | st.none() | st.booleans() | st.lists(st.integers(), max_size=2)
NOT_A_FRACTION = st.floats(min_value=1.0, allow_infinity=True) | st.floats(max_value=-1e-9) | NOT_A_NUMBER
OPTION_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    case=st.one_of(
        st.tuples(st.sampled_from(["pfeiffer", "houlsby"]), st.just("reduction_factor"), NOT_POSITIVE | NOT_A_NUMBER),
        st.tuples(st.sampled_from(["pfeiffer", "houlsby"]), st.just("dropout"), NOT_A_FRACTION),
        st.tuples(
            st.sampled_from(["pfeiffer", "houlsby"]),
            st.just("non_linearity"),
            st.text(max_size=8).filter(
                lambda s: (
                    s.lower()
                    not in {
                        "relu",
                        "gelu",
                        "tanh",
                        "silu",
                        "swish",
                        "mish",
                        "linear",
                        "relu6",
                        "sigmoid",
                        "prelu",
                        "laplace",
                        "relu2",
                        "xielu",
                    }
                )
            ),
        ),
        st.tuples(st.just("lora"), st.sampled_from(["r", "lora_alpha"]), NOT_POSITIVE | NOT_A_NUMBER),
        st.tuples(st.just("lora"), st.just("lora_dropout"), NOT_A_FRACTION),
    )
)
def test_invalid_values_raise_the_kits_error(case):
    method, key, value = case
    with pytest.raises(AdapterKitError, match=f"`{key}`"):
        get_config(method, **{key: value})


@settings(max_examples=40, deadline=None)
@given(method=st.sampled_from(["pfeiffer", "houlsby", "lora", "full", "head"]), name=OPTION_NAMES)
def test_unknown_option_names_raise_the_kits_error(method, name):
    from dataclasses import fields

    known = {f.name for f in fields(type(get_config(method)))}
    if name in known or name in inspect.signature(get_config).parameters:  # `backend` is get_config's own
        return
    with pytest.raises(AdapterKitError, match=rf"Unknown option\(s\) \['{name}'\]"):
        get_config(method, **{name: 1})
