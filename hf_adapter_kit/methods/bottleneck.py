"""Bottleneck adapters: Houlsby (after attention and after the FFN) and Pfeiffer (after the FFN only).

Both insert ``h + up(act(down(h)))`` with a bottleneck of ``hidden_size / reduction_factor``. On the ``adapters``
backend they are its ``double_seq_bn`` and ``seq_bn`` configs; on PEFT, which has no bottleneck adapters, the kit's
own ``HF_ADAPTER_KIT_BOTTLENECK`` type (``hf_adapter_kit/custom/peft_tuner.py``). The PEFT version wraps each
sub-block's output projection, before the model's residual and layer norm (Houlsby et al.'s placement): exactly
``adapters``' ``double_seq_bn`` for Houlsby, and ``seq_bn`` with ``original_ln_before=False`` for Pfeiffer (``seq_bn``'s
default also applies the model's layer norm once before the adapter). ``tests/test_custom_methods.py`` checks both
weight for weight.
"""

from __future__ import annotations

from typing import Any

import adapters
from transformers.activations import ACT2FN

from ..custom.peft_tuner import BottleneckPeftConfig
from ..errors import AdapterKitError
from ..registry import MethodSpec, build_dataclass, check_fraction, check_positive, register_method


def _adapters_config(cls: type, method: str):
    def factory(**overrides: Any):
        check_positive(method, overrides, "reduction_factor", "scaling")
        check_fraction(method, overrides, "dropout")
        if "non_linearity" in overrides:
            _check_activation(method, overrides["non_linearity"])
        return build_dataclass(cls, method, {}, overrides)

    return factory


def _peft_config(method: str, positions: list[str], non_linearity: str):
    # defaults as adapters' double_seq_bn (swish) and seq_bn (relu)
    def factory(**overrides: Any) -> BottleneckPeftConfig:
        defaults = {"method": method, "positions": positions, "non_linearity": non_linearity, "task_type": "SEQ_CLS"}
        return build_dataclass(BottleneckPeftConfig, method, defaults, overrides)

    return factory


def _check_activation(method: str, name: Any) -> None:
    # adapters builds the activation with transformers' get_activation(name.lower()), plus its own "leakyrelu".
    allowed = {*ACT2FN, "leakyrelu"}
    if not isinstance(name, str) or name.lower() not in allowed:
        raise AdapterKitError(
            f"`non_linearity`={name!r} is not valid for method {method!r}: expected one of {', '.join(sorted(allowed))}."
        )


register_method(
    MethodSpec(
        name="houlsby",
        summary=(
            "Houlsby bottleneck adapters: a small down-project / non-linearity / up-project block with a residual "
            "connection, inserted after the attention and after the feed-forward sub-layer of every transformer layer. "
            "Only the adapters and the classification head are trained; the pretrained weights stay frozen."
        ),
        configs={
            "adapters": _adapters_config(adapters.DoubleSeqBnConfig, "houlsby"),
            "peft": _peft_config("houlsby", ["attention", "ffn"], "swish"),
        },
        default_backend="adapters",
        learning_rate=1e-3,
        reference="Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP",
        aliases=("double_seq_bn",),
    )
)

register_method(
    MethodSpec(
        name="pfeiffer",
        summary=(
            "Pfeiffer bottleneck adapters: one down-project / ReLU / up-project block with a residual connection "
            "after the feed-forward sub-layer of every transformer layer. "
            "Only the adapters and the classification head are trained; the pretrained weights stay frozen."
        ),
        configs={
            "adapters": _adapters_config(adapters.SeqBnConfig, "pfeiffer"),
            "peft": _peft_config("pfeiffer", ["ffn"], "relu"),
        },
        default_backend="adapters",
        learning_rate=1e-3,
        reference="Pfeiffer et al. 2021, AdapterFusion: Non-Destructive Task Composition for Transfer Learning",
        aliases=("seq_bn",),
    )
)
