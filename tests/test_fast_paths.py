"""The shortcuts the kit's layers take on every decoding step give the same answers as the long way round.

- Forward-pass tokens (``methods/hyperformer/passes.py``): Hyperformer++'s serving engine checks its bank once per
  pass, so a parameter changed between two passes is still seen by the next one, on both backends; training and
  autograd get no token.
- A few rows are layer-normed by ``F.layer_norm``, many by the folded form (``packed.FOLD_FROM_ROWS``): the same
  adapter (tests/test_custom_methods.py checks both against the adapter as written).
- The parameters the caches depend on, read by name for speed, are every parameter of the hypernetwork.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from hf_adapter_kit import get_config, task_context
from hf_adapter_kit.backends import get_backend
from hf_adapter_kit.methods.hyperformer import serving
from hf_adapter_kit.methods.hyperformer.hypernet import HyperNetwork
from hf_adapter_kit.methods.hyperformer.passes import current_pass, track_passes, untrack_passes
from hf_adapter_kit.routing import Routing
from tests.conftest import perturb


class Recorder(nn.Module):
    """Records the pass token its forward sees; raises when asked to."""

    def __init__(self, inner: nn.Module | None = None):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, fail: bool = False):
        self.seen.append(current_pass())
        if self.inner is not None:
            self.inner()
        if fail:
            raise RuntimeError("in forward")


def test_every_serving_call_of_a_tracked_model_has_its_own_token():
    inner = Recorder()
    outer = Recorder(inner).eval()
    track_passes(outer)
    track_passes(inner)
    track_passes(outer)  # once only
    assert len(outer._forward_pre_hooks) == 1 and len(outer._forward_hooks) == 1
    assert current_pass() is None
    with torch.no_grad():
        outer()
        outer()
        assert None not in outer.seen and outer.seen[0] is not outer.seen[1]
        assert inner.seen[0] not in outer.seen  # a nested tracked model runs in a pass of its own
        assert current_pass() is None  # and each pass ends with its call
        with pytest.raises(RuntimeError):
            outer(fail=True)
        assert current_pass() is None  # on error too
        outer.train()
        outer()  # training: the paper's adapter, which reads no token
    outer.eval()
    outer()  # autograd: likewise
    assert outer.seen[-2:] == [None, None] and current_pass() is None


def test_untracking_removes_the_hooks_from_the_model_and_from_its_copies():
    model = Recorder()
    track_passes(model)
    twin = copy.deepcopy(model)
    untrack_passes(model)
    untrack_passes(twin)
    for module in (model, twin):
        assert not module._forward_pre_hooks and not module._forward_hooks
        assert not module._forward_hooks_always_called
        module()
    assert model.seen == [None] and twin.seen == [None]


def test_the_cache_check_runs_once_per_pass_token(monkeypatch):
    net = HyperNetwork(hidden_size=8, bottleneck_size=2, num_layers=3, tasks=["a", "b"], projected_dim=4).eval()
    reads = []
    original = serving.params_state
    monkeypatch.setattr(serving, "params_state", lambda params: reads.append(len(params)) or original(params))
    hidden = torch.randn(1, 1, 8)
    with torch.no_grad():
        for token in (object(), object()):
            one = Routing(torch.tensor([1]))  # a model's layers share their pass's routing
            for layer in range(3):
                for position in ("attention", "ffn"):
                    net.adapter(hidden, layer, position, one, token)
        assert len(reads) == 2 * 2  # per pass, not per layer and position: the shared parameters and the task's
        for layer in range(3):
            net.adapter(hidden, layer, "ffn", Routing(torch.tensor([1])))
        assert len(reads) == 4 + 3 * 2  # no token: every call reads
        mixed, token = Routing(torch.tensor([0, 1])), object()
        for layer in range(3):
            net.adapter(torch.randn(2, 1, 8), layer, "ffn", mixed, token)
        assert len(reads) == 10 + 3  # a mixed batch: the shared parameters and each task's, once per pass


MULTI = [("hyperformer", "peft"), ("hyperformer", "adapters")]


@pytest.mark.parametrize(("method", "backend"), MULTI, ids=[b for _, b in MULTI])
@pytest.mark.parametrize("tasks", [["b"], ["a", "b"]], ids=["one task", "mixed"])
def test_a_parameter_changed_between_passes_reaches_the_next_pass(tiny_llm_dir, method, backend, tasks):
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    config = get_config(method, backend, tasks=["a", "b"])
    model = perturb(get_backend(backend).attach(base, config, "x", kind="causal-lm")).eval()
    ids = torch.randint(3, 200, (len(tasks), 6), generator=torch.Generator().manual_seed(0))
    # a generator and the projector, both read by the serving bank
    changed = [p for n, p in model.named_parameters() if n.endswith(("up_weight.weight", "projector.0.weight"))]
    assert len(changed) == 2
    with task_context(tasks), torch.no_grad():
        before = model(input_ids=ids).logits
        assert torch.equal(model(input_ids=ids).logits, before)  # served from the caches
        for param in changed:  # e.g. a reload into the same tensors, between two requests
            param.add_(0.5)
        after = model(input_ids=ids).logits
        with torch.enable_grad():  # autograd never caches: the reference
            expected = model(input_ids=ids).logits.detach()
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, expected)


def test_peft_unload_removes_the_pass_hooks(tiny_llm_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model = get_backend("peft").attach(base, get_config("hyperformer", "peft"), "x", kind="causal-lm")
    assert len(model.get_base_model()._forward_pre_hooks) == 1
    plain = model.unload()
    assert not plain._forward_pre_hooks and not plain._forward_hooks


@pytest.mark.parametrize("conditional_layer_norm", [True, False])
def test_the_cache_keys_are_every_parameter_but_the_task_embeddings(conditional_layer_norm):
    net = HyperNetwork(hidden_size=8, bottleneck_size=2, num_layers=2, tasks=["a", "b"], projected_dim=4,
                       conditional_layer_norm=conditional_layer_norm)  # fmt: skip
    shared = {id(p) for n, p in net.named_parameters() if not n.startswith("task_embeddings.")}
    assert {id(p) for p in serving.shared_params(net)} == shared
    assert len(serving.shared_params(net)) == len(shared)


def _parallel_reference(block, hidden: torch.Tensor, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The multi-task parallel adapter as its docstring writes it, one example at a time."""
    rows = []
    for x, task, s in zip(hidden, ids.tolist(), scale, strict=True):
        down = block.act(x @ block.down_weight[task].T + block.down_bias[task])
        rows.append(s * (down @ block.up_weight[task].T + block.up_bias[task]))
    return torch.stack(rows)


def test_the_parallel_serving_pack_follows_every_change_of_its_parameters():
    """Without autograd a mixed batch reads one packed copy of the four stacks: an in-place change (an optimizer
    step), a replaced parameter (a load) and a cast must each reach the next batch."""
    from hf_adapter_kit.methods.parallel.layer import MultiTaskBottleneck

    torch.manual_seed(0)
    block = MultiTaskBottleneck(5, 16, 4, "relu", "bert")
    perturb(block)
    hidden, ids, scale = torch.randn(6, 3, 16), torch.tensor([0, 4, 2, 2, 1, 0]), torch.rand(6)
    routing = Routing(ids)
    for change in ("first", "in place", "replaced", "cast"):
        if change == "in place":
            with torch.no_grad():
                block.up_weight.add_(0.5)
        elif change == "replaced":
            block.down_bias = nn.Parameter(torch.randn(5, 4))
        elif change == "cast":
            block.double()
            hidden, scale = hidden.double(), scale.double()
        with torch.no_grad():
            served = block(hidden, routing, scale)
            expected = _parallel_reference(block, hidden, ids, scale)
        torch.testing.assert_close(served, expected, msg=f"after {change}")
    with torch.inference_mode():  # serving under inference mode, into a tensor it may overwrite
        into = torch.randn(6, 3, 16, dtype=torch.float64)
        expected = into + _parallel_reference(block, hidden, ids, scale)
        torch.testing.assert_close(block(hidden, routing, scale, into=into, overwrite=True), expected)


def test_the_parallel_serving_pack_is_kept_by_eval_and_dropped_by_train():
    """``eval()`` before each request keeps the pack (made once); training mode drops it (its memory is not kept)."""
    from hf_adapter_kit.methods.parallel.layer import MultiTaskBottleneck

    block = MultiTaskBottleneck(3, 8, 2, "relu", "bert").eval()
    routing = Routing(torch.tensor([0, 2]))
    with torch.no_grad():
        block(torch.randn(2, 3, 8), routing)
        pack = block.__dict__["_pack"][1]
        block.eval()
        block(torch.randn(2, 3, 8), routing)
        assert block.__dict__["_pack"][1] is pack
        block.train()
    assert "_pack" not in block.__dict__
