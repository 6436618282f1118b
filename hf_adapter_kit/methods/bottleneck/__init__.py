"""Bottleneck adapters: Houlsby (after attention and after the FFN) and Pfeiffer (after the FFN only).

Both insert ``h + up(act(down(h)))`` with a bottleneck of ``hidden_size / reduction_factor``. On the ``adapters``
backend they are its own ``double_seq_bn`` and ``seq_bn``; on PEFT, which has no bottleneck adapters, the kit's
``HF_ADAPTER_KIT_BOTTLENECK`` (``peft_backend.py``). Two methods, one PEFT type: two registrations.
"""

from __future__ import annotations

import adapters

from ...registry import MethodSpec, PeftMethod, register_method
from ..common import checks
from .peft_backend import BottleneckPeftConfig, BottleneckTuner


PEFT = PeftMethod("HF_ADAPTER_KIT_BOTTLENECK", BottleneckPeftConfig, BottleneckTuner)
MARKERS = {"adapters": "adapters.{adapter_name}"}  # adapters keeps each layer's bottleneck under its name


def _bottleneck(config, *, attention: bool) -> bool:
    """A plain ``adapters`` sequential bottleneck config (its saved dict) with or without the attention adapter."""
    return (
        config.get("architecture") in (None, "bottleneck")
        and bool(config.get("mh_adapter")) == attention
        and bool(config.get("output_adapter"))
        and not config.get("is_parallel")
    )


def _adapters_config(cls: type, method: str):
    def factory(**options):
        for name in ("reduction_factor", "scaling"):
            if name in options:
                checks.positive(name, options[name])
        if "dropout" in options:
            checks.fraction("dropout", options["dropout"])
        if "non_linearity" in options:  # adapters builds it with get_activation(name.lower()), plus "leakyrelu"
            checks.activation("non_linearity", options["non_linearity"], extra=("leakyrelu",))
        return checks.build_config(cls, method, {}, options)

    return factory


def _peft_config(method: str, positions: list[str], non_linearity: str):
    # defaults as adapters' double_seq_bn (swish) and seq_bn (relu)
    def factory(**options) -> BottleneckPeftConfig:
        defaults = {"method": method, "positions": positions, "non_linearity": non_linearity, "task_type": "SEQ_CLS"}
        return checks.build_config(BottleneckPeftConfig, method, defaults, options)

    return factory


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
        peft=PEFT,
        recipe="houlsby",
        reads_foreign={"adapters": lambda config: _bottleneck(config, attention=True)},
        markers=MARKERS,
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
        peft=PEFT,
        recipe="pfeiffer",
        reads_foreign={"adapters": lambda config: _bottleneck(config, attention=False)},
        markers=MARKERS,
    )
)
