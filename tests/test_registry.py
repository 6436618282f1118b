"""The registry: one place that knows the methods and hands out each backend's own config object."""

from __future__ import annotations

import adapters
import peft
import pytest

from hf_adapter_kit import AdapterKitError, get_config, get_method, list_methods, register_method
from hf_adapter_kit.methods.bottleneck.peft_backend import BottleneckPeftConfig
from hf_adapter_kit.methods.full import FullFineTuningConfig
from hf_adapter_kit.methods.head import HeadOnlyConfig
from hf_adapter_kit.methods.hyperformer.adapters_backend import HyperformerConfig
from hf_adapter_kit.methods.hyperformer.peft_backend import HyperformerPeftConfig
from hf_adapter_kit.methods.parallel.adapters_backend import MultiTaskParallelConfig
from hf_adapter_kit.methods.parallel.peft_backend import ParallelPeftConfig
from hf_adapter_kit.registry import MethodSpec


EXPECTED = {
    ("pfeiffer", "adapters"): adapters.SeqBnConfig,
    ("houlsby", "adapters"): adapters.DoubleSeqBnConfig,
    ("lora", "peft"): peft.LoraConfig,
    ("lora", "adapters"): adapters.LoRAConfig,
    ("full", "transformers"): FullFineTuningConfig,
    ("head", "transformers"): HeadOnlyConfig,
    ("pfeiffer", "peft"): BottleneckPeftConfig,
    ("houlsby", "peft"): BottleneckPeftConfig,
    ("parallel", "adapters"): MultiTaskParallelConfig,
    ("parallel", "peft"): ParallelPeftConfig,
    ("hyperformer", "adapters"): HyperformerConfig,
    ("hyperformer", "peft"): HyperformerPeftConfig,
}


def test_list_methods():
    assert list_methods() == ["full", "head", "houlsby", "hyperformer", "lora", "parallel", "pfeiffer"]


@pytest.mark.parametrize(("method", "backend"), EXPECTED)
def test_get_config_returns_the_backends_own_object(method, backend):
    assert type(get_config(method, backend=backend)) is EXPECTED[method, backend]


def test_default_backend_and_overrides():
    assert isinstance(get_config("lora"), peft.LoraConfig)
    assert get_config("lora", r=16).r == 16
    assert get_config("lora").task_type == peft.TaskType.SEQ_CLS
    assert get_config("pfeiffer", reduction_factor=8).reduction_factor == 8
    assert get_config("seq_bn").reduction_factor == 16  # adapters' own name is an alias
    assert get_method("double_seq_bn").name == "houlsby"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: get_config("prefix"), r"`method`='prefix'.*'pfeiffer'"),
        (lambda: get_config("full", backend="peft"), r"`backend`='peft'.*runs on: transformers"),
        (lambda: get_config("pfeiffer", backend="torch"), r"`backend`='torch'.*'adapters'"),
        (lambda: get_config("pfeiffer", reduction=4), r"Unknown option\(s\) \['reduction'\].*reduction_factor"),
        (lambda: get_config("pfeiffer", reduction_factor=0), r"`reduction_factor`=0.*> 0"),
        (lambda: get_config("houlsby", reduction_factor=-2), r"`reduction_factor`=-2.*> 0"),
        (lambda: get_config("pfeiffer", non_linearity="sparkle"), r"`non_linearity`='sparkle'.*relu"),
        (lambda: get_config("pfeiffer", dropout=1.5), r"`dropout`=1.5"),
        (lambda: get_config("lora", r=0), r"`r`=0.*> 0"),
        (lambda: get_config("lora", lora_alpha="big"), r"`lora_alpha`='big'"),
        (lambda: get_config("full", lr=1), r"Unknown option"),
    ],
)
def test_bad_config_input(call, match):
    with pytest.raises(AdapterKitError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)


def test_names_are_unique():
    spec = MethodSpec("pfeiffer", "dup", {"transformers": FullFineTuningConfig}, "transformers", 1e-3)
    with pytest.raises(AdapterKitError, match="registered already"):
        register_method(spec)
    assert list_methods().count("pfeiffer") == 1


def test_spec_checks_backends():
    with pytest.raises(AdapterKitError, match="unknown backends"):
        MethodSpec("x", "", {"jax": dict}, "jax", 1e-3)
    with pytest.raises(AdapterKitError, match="default_backend"):
        MethodSpec("x", "", {"peft": dict}, "adapters", 1e-3)


def test_the_wheel_holds_every_package_recipe_and_template(tmp_path):
    """setup.py finds the packages: a new method folder ships without a line anywhere (docs/adding-a-method.md)."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).parent.parent
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*command, str(root)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.relative_to(root)) for p in (root / "hf_adapter_kit").rglob("__init__.py")}
    recipes = {
        f"hf_adapter_kit/recipe_files/{p.parent.name}/config.yaml" for p in (root / "recipes").glob("*/config.yaml")
    }
    assert packages | recipes | {"hf_adapter_kit/model_cards/adapter_card.md"} <= shipped


def test_every_method_names_a_recipe_that_exists():
    from pathlib import Path

    from hf_adapter_kit import list_specs

    recipes = Path(__file__).parent.parent / "recipes"
    for spec in list_specs():
        assert (recipes / spec.recipe / "config.yaml").is_file(), spec.name
