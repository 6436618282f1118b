"""The patches that register the kit's methods: each check fails loudly when PEFT or adapters change under them."""

from __future__ import annotations

import inspect

import adapters
import peft
import pytest
import torch
from adapters import composition
from adapters.configuration.adapter_config import ADAPTER_CONFIG_MAP, AdapterConfig
from adapters.context import AdapterSetup, ForwardContext
from adapters.loading import AdapterLoader
from adapters.methods.bottleneck import BottleneckLayer
from adapters.methods.modeling import Adapter, ParallelAdapter
from adapters.model_mixin import ModelAdaptersMixin
from peft import peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils.peft_types import PeftType

import hf_adapter_kit  # noqa: F401  (applies the patches)
from hf_adapter_kit.methods.hyperformer.adapters_backend import HyperformerConfig
from hf_adapter_kit.methods.parallel.adapters_backend import MultiTaskParallelConfig
from hf_adapter_kit.patches import adapters_methods, adapters_speedups, peft_methods
from hf_adapter_kit.registry import list_specs


def test_peft_is_the_version_the_patch_was_written_against():
    assert peft.__version__.startswith(peft_methods.WRITTEN_AGAINST), (
        f"patches/peft_methods.py was written against peft {peft_methods.WRITTEN_AGAINST}.x; {peft.__version__} is "
        "installed: re-check the enum extension, register_peft_method and the forward wrappers, then update it."
    )
    # the entry points the patch and the tuner rely on
    assert list(inspect.signature(peft.utils.register_peft_method).parameters) == [
        "name",
        "config_cls",
        "model_cls",
        "prefix",
        "is_mixed_compatible",
    ]
    assert list(inspect.signature(BaseTuner._create_and_replace).parameters)[1:7] == [
        "peft_config",
        "adapter_name",
        "target",
        "target_name",
        "parent",
        "current_key",
    ]
    for hook in (
        "_prepare_adapter_config",
        "_prepare_model",
        "_check_target_module_exists",
        "_replace_module",
        "_remove_adapter_name_from_key",
        "_remap_adapter_state_dict_for_load",
        "_unload_and_optionally_merge",
        "delete_adapter",
    ):
        assert callable(getattr(BaseTuner, hook)), hook
    assert {
        "adapter_layer_names",
        "set_adapter",
        "enable_adapters",
        "_move_adapter_to_device_of_base_layer",
        "_cast_input_dtype",
        "_get_available_adapters",
        "_all_available_adapter_names",
    } <= set(dir(BaseTunerLayer))
    # layers are found structurally (tuner layers' containers), and the hypernetwork must not count as shared state
    assert BaseTuner.uses_shared_state is False
    from peft.tuners import tuners_utils

    assert "BaseTunerLayer" in inspect.getsource(tuners_utils._get_tuner_state_dict_key_prefixes)
    assert "BaseTunerLayer" in inspect.getsource(tuners_utils.cast_adapter_dtype)


def test_peft_knows_the_kit_types():
    rows = {spec.peft for spec in list_specs() if spec.peft is not None}
    # <=: a method registered by a test (tests/test_adding_a_method.py) stays a PEFT type after it is forgotten
    assert {row.peft_type for row in rows} <= set(peft_methods.KIT_TYPES) and len(rows) == 3
    for row in rows:
        peft_type = PeftType(row.peft_type)
        assert PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] is row.config_cls
        assert PEFT_TYPE_TO_TUNER_MAPPING[peft_type] is row.tuner_cls
        assert row.tuner_cls.prefix.startswith("kit_") and row.tuner_cls.prefix.endswith("_")


def test_peft_forwards_take_task_ids_and_are_wrapped():
    for attribute, classes in peft_methods.WRAPPED.items():
        for name in classes:
            method = getattr(peft_model, name).__dict__[attribute]
            assert getattr(method, "__kit_patched__", False), (name, attribute)
    # PEFT itself still passes task_ids on only for its POLY method; if that changes, the wrapper may be obsolete
    source = inspect.getsource(peft_model.PeftModelForSequenceClassification.forward.__wrapped__)
    assert (
        "PeftType.POLY" in source
        and "task_ids"
        in inspect.signature(peft_model.PeftModelForSequenceClassification.forward.__wrapped__).parameters
    )


def test_adapters_is_the_version_the_patch_was_written_against():
    assert adapters_speedups.WRITTEN_AGAINST == adapters_methods.WRITTEN_AGAINST
    assert adapters.__version__.startswith(adapters_methods.WRITTEN_AGAINST), (
        f"patches/adapters_methods.py was written against adapters {adapters_methods.WRITTEN_AGAINST}.x; "
        f"{adapters.__version__} is installed: re-check the patched entry points (adapters_methods.py and "
        "adapters_speedups.py), then update both."
    )
    assert list(inspect.signature(adapters_methods._original["add_adapter"]).parameters) == [
        "self",
        "adapter_name",
        "layer_idx",
    ]
    assert list(inspect.signature(adapters_methods._original["add_adapter_weights"]).parameters) == [
        "self",
        "adapter_name",
    ]
    average = inspect.signature(adapters_methods._original["average_adapter"]).parameters
    assert list(average)[:5] == ["self", "adapter_name", "adapter_list", "weights", "combine_strategy"]
    assert "normalize_weights" in average
    assert list(inspect.signature(adapters_methods._original["vslice"]).parameters) == ["self", "state", "slice_obj"]
    assert "self.vslice(" in inspect.getsource(BottleneckLayer.compose_batch_split)  # BatchSplit slices through it
    # patch 3 hands kit modules the layer's adapters_config, where Hyperformer++ finds the active setup: a Fuse reads
    # each adapter's output alone (bottleneck_up), and Parallel / BatchSplit concatenate it
    assert "state.bottleneck_up for state in children_states" in inspect.getsource(BottleneckLayer.compose_fuse)
    assert "bottleneck_up" in inspect.getsource(BottleneckLayer.pad_and_concat)
    assert "adapter_setup = self.adapters_config.active_setup" in inspect.getsource(BottleneckLayer.get_active_setup)
    assert AdapterSetup.get_context_adapter_setup() is None  # outside any `with AdapterSetup(...)`
    # average_adapter still averages no shared weights but PHM's and VeRA's (else the wrapper may be obsolete)
    assert "_average_shared_parameters" in inspect.getsource(adapters_methods._original["average_adapter"])
    assert "task_ids" in ForwardContext.context_args  # how task_ids reach the layers
    # Adapter.pre_forward / post_forward read these flags, which the kit's modules set
    source = inspect.getsource(Adapter.pre_forward) + inspect.getsource(Adapter.post_forward)
    assert all(flag in source for flag in ("residual_before_ln", "original_ln_before", "original_ln_after"))
    assert "original_ln_after" in inspect.getsource(ParallelAdapter.post_forward)
    # shared weights are unfrozen through .values() and saved under shared_parameters.<name>.
    assert ".values()" in inspect.getsource(ModelAdaptersMixin.train_adapter)
    for name in ("filter_func", "rename_func"):  # still keyed on ".shared_parameters.<name>." (leading dot)
        assert '".shared_parameters.{}."' in inspect.getsource(adapters_methods._original[name])


def test_adapters_knows_the_kit_configs():
    assert BottleneckLayer.add_adapter.__kit_patched__ and ModelAdaptersMixin._add_adapter_weights.__kit_patched__
    loader = AdapterLoader(None)
    assert loader.filter_func("mt")("shared_parameters.mt.projector.0.weight")  # bare encoders too
    assert loader.rename_func("mt", "x")("shared_parameters.mt.a") == "shared_parameters.x.a"
    assert loader.rename_func("mt", "x")("bert.shared_parameters.mt.a") == "bert.shared_parameters.x.a"
    assert isinstance(ADAPTER_CONFIG_MAP["hyperformer"], HyperformerConfig)
    assert isinstance(ADAPTER_CONFIG_MAP["multitask_parallel"], MultiTaskParallelConfig)
    assert isinstance(ADAPTER_CONFIG_MAP["parallel"], adapters.ParBnConfig)  # adapters' own name is left alone
    round_trip = AdapterConfig.load(HyperformerConfig(tasks=["a", "b"]).to_dict())
    assert isinstance(round_trip, HyperformerConfig) and list(round_trip.tasks) == ["a", "b"]
    assert AdapterConfig.load({"architecture": "lora"}).__class__ is adapters.LoRAConfig  # others go to adapters


def test_trainer_private_overrides_match_transformers():
    import transformers
    from transformers import Trainer

    from hf_adapter_kit.training import trainer

    assert transformers.__version__.startswith(trainer.WRITTEN_AGAINST), (
        f"training/trainer.py overrides private Trainer methods written against transformers {trainer.WRITTEN_AGAINST}"
        f".x; {transformers.__version__} is installed: re-check {trainer.PRIVATE_OVERRIDES}, then update it."
    )
    expected = {
        "_save": ["self", "output_dir", "state_dict"],
        "_load_from_checkpoint": ["self", "resume_from_checkpoint", "model"],
        "_load_best_model": ["self"],
        "_get_train_sampler": ["self", "train_dataset"],
        "_set_signature_columns_if_needed": ["self"],
        "_save_checkpoint": ["self", "model", "trial"],
        "_get_output_dir": ["self", "trial"],
    }
    assert set(expected) == set(trainer.PRIVATE_OVERRIDES)
    for name, params in expected.items():
        assert list(inspect.signature(getattr(Trainer, name)).parameters) == params, name
        assert name in trainer.KitTrainer.__dict__, name
    # the Trainer still reaches them: save_model -> _save, the training loop -> both loads, the loader -> the sampler
    assert "self._save(" in inspect.getsource(Trainer.save_model)
    loop = inspect.getsource(Trainer._inner_training_loop) + inspect.getsource(Trainer.train)
    assert "self._load_from_checkpoint(" in loop and "self._load_best_model()" in loop
    assert "sampler_fn=self._get_train_sampler" in inspect.getsource(Trainer.get_train_dataloader)
    # checkpoints are staged: the checkpoint save asks _get_output_dir for its folder, the loop reaches the save
    assert "self._get_output_dir(trial=trial)" in inspect.getsource(Trainer._save_checkpoint)
    assert "self._save_checkpoint(model, trial)" in inspect.getsource(Trainer._maybe_log_save_evaluate)
    remove = inspect.getsource(Trainer._remove_unused_columns)  # the columns it keeps are read after the call
    assert "self._set_signature_columns_if_needed()" in remove and "self._signature_columns" in remove


def test_adapters_decoders_still_take_the_cache_by_its_old_name():
    """Patch 9 is needed as long as adapters' decoder classes take ``past_key_value`` where transformers' own take
    (and pass) ``past_key_values``; when adapters renames it, this fails: remove the patch. The import leaves the
    classes as they are (the switch, tests/test_import_side_effects.py, patches them)."""
    import transformers

    for cls in adapters_speedups.cache_keyword_classes():
        assert not getattr(cls.forward, "__kit_patched__", False), cls
        ours = inspect.signature(cls.forward).parameters
        parent = next(
            b for b in cls.__mro__[1:] if b.__module__.startswith("transformers") and "forward" in b.__dict__
        )
        theirs = inspect.signature(parent.forward).parameters
        assert "past_key_value" in ours and "past_key_values" not in ours, cls
        assert "past_key_values" in theirs and "past_key_value" not in theirs, (cls, transformers.__version__)


def _decoder(arch: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64)
    sizes["num_hidden_layers"] = 2
    if arch == "gpt2":
        sizes = dict(vocab_size=120, n_embd=32, n_head=4, n_layer=2, n_positions=64, initializer_range=0.3)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, **sizes))


def _with_seq_bn(model):
    adapters.init(model)
    model.add_adapter("x", config="seq_bn")
    model.set_active_adapters("x")
    _off_identity(model)
    return model.eval()


def _off_identity(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".x." in name or ".adapters." in name:
                p.add_(torch.randn_like(p) * 0.05)


IDS = torch.tensor([[5, 6, 7, 8, 9, 10]])


def _cached_tokens(model) -> int:
    with torch.no_grad():
        return model(input_ids=IDS, use_cache=True).past_key_values.get_seq_length()


def _generates_with_the_cache_as_without(model) -> None:
    """Greedy generation with the cache equals generation without it and the argmax of full forward passes."""
    settings = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    cached = model.generate(input_ids=IDS, use_cache=True, **settings)
    sequence = IDS
    with torch.no_grad():
        for _ in range(8):
            sequence = torch.cat([sequence, model(input_ids=sequence).logits[:, -1:].argmax(-1)], dim=1)
    assert len(set(sequence[0, 6:].tolist())) > 2  # not one token repeated, which any context would give
    assert torch.equal(cached, sequence)
    assert torch.equal(model.generate(input_ids=IDS, use_cache=False, **settings), sequence)


@pytest.mark.parametrize("arch", ["llama", "mistral", "gpt2"])
def test_adapters_decoders_generate_with_the_cache_as_without(arch):
    """A plain ``adapters`` model keeps the library's code after the import: on Llama and Mistral its cache stays
    empty (adapters issue #824; when it fills, patch 9 is obsolete). ``pass_cache_on``, which the kit applies to its
    own models, makes that model generate with the cache as without, and leaves another model of the process alone."""
    model = _with_seq_bn(_decoder(arch))
    broken = arch in ("llama", "mistral")
    assert _cached_tokens(model) == (0 if broken else IDS.shape[1])
    adapters_speedups.pass_cache_on(model)
    assert _cached_tokens(model) == IDS.shape[1]  # the cache holds every token it has seen
    _generates_with_the_cache_as_without(model)
    other = _with_seq_bn(_decoder(arch))
    assert _cached_tokens(other) == (0 if broken else IDS.shape[1])
    assert not any("forward" in vars(module) for module in other.modules())


def test_kit_models_on_adapters_generate_with_the_cache():
    """Patch 9 on what the kit builds or loads (the ``adapters`` backend) and on a model a kit method is added to
    through ``adapters``' own API; without the switch, nothing else."""
    from hf_adapter_kit import get_config
    from hf_adapter_kit.backends import get_backend

    built = get_backend("adapters").attach(_decoder("llama"), get_config("pfeiffer"), "x")
    _off_identity(built)
    assert _cached_tokens(built.eval()) == IDS.shape[1]
    _generates_with_the_cache_as_without(built)
    own_api = _decoder("llama")
    adapters.init(own_api)
    own_api.add_adapter("x", config=get_config("parallel", backend="adapters", tasks=["a"]))
    own_api.set_active_adapters("x")  # at its identity start: moved off it, this tiny model repeats one token
    assert _cached_tokens(own_api.eval()) == IDS.shape[1]
    _generates_with_the_cache_as_without(own_api)
    assert _cached_tokens(_with_seq_bn(_decoder("llama"))) == 0  # a plain model of the same process


def test_adapters_attention_still_copies_what_it_need_not():
    """Patch 10 is needed as long as ``match_attn_matrices_for_parallel`` copies with ``repeat`` whatever the batch
    sizes; when adapters skips matched shapes itself, this fails: remove the patch."""
    original = adapters_speedups._original["match_attn"]
    source = inspect.getsource(original)
    assert ".repeat(" in source and "if " not in source
    assert list(inspect.signature(original).parameters) == ["query", "key", "value"]
    # the modeling modules import it by name (what the switch rebinds), and init_adapters imports them
    from adapters.models.bert import modeling_bert

    assert "match_attn_matrices_for_parallel(" in inspect.getsource(modeling_bert)
    assert "init_adapters" in inspect.getsource(adapters.init)
    # the import binds nothing (tests/test_import_side_effects.py checks the switch)
    assert composition.match_attn_matrices_for_parallel is original and not adapters_speedups.applied()


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_adapters_attention_without_copies_computes_the_same(arch, monkeypatch):
    """Patch 10's wrapper gives the outputs of the original, with the same batch sizes and with a ``Parallel``
    block's."""
    import importlib

    from adapters.composition import Parallel
    from transformers import AutoConfig, AutoModel

    sizes = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2)
    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.for_model(arch, **sizes)).eval()
    adapters.init(model)
    module = importlib.import_module(f"adapters.models.{arch}.modeling_{arch}")
    assert module.match_attn_matrices_for_parallel is adapters_speedups._original["match_attn"]
    for name in ("a", "b"):
        model.add_adapter(name, config="seq_bn")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".adapters." in name:
                p.add_(torch.randn_like(p) * 0.05)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    outputs = {}
    for setup in ("a", Parallel("a", "b")):  # matched batch sizes; a batch the Parallel block replicates
        model.set_active_adapters(setup)
        for patched in (True, False):
            wrapper = adapters_speedups._match_without_copies
            monkeypatch.setattr(
                module,
                "match_attn_matrices_for_parallel",
                wrapper if patched else adapters_speedups._original["match_attn"],
            )
            with torch.no_grad():
                outputs[str(setup), patched] = model(input_ids=ids).last_hidden_state
        torch.testing.assert_close(outputs[str(setup), True], outputs[str(setup), False], rtol=0, atol=0)
    assert outputs[str(Parallel("a", "b")), True].shape[0] == 2 * ids.shape[0]
    q = torch.randn(2, 3, 4)
    assert adapters_speedups._match_without_copies(q, q, q)[0] is q
