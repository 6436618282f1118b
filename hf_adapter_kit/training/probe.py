"""The classification head's start: a linear probe of the model it sits on (``head_init="probe"``, the default).

Why: a new head starts at random, and the features it reads can be poorly scaled for gradient descent. The embedded
MiniLM was trained for mean pooling, so its BERT pooler (the features a sequence head reads) is close to untrained:
its outputs vary little between inputs, around a common offset. A random head on them moved so slowly that the head
alone and Hyperformer++ stayed at the majority class on Rotten Tomatoes for a whole run (docs/benchmarks.md, "Quality
at the defaults"), while a logistic regression on the same features, fitted to convergence, is far above it.

What: before the first step, the head's last linear layer is set to a multinomial logistic regression fitted on the
features that layer receives from the model as it starts (the adapter is the identity then), for up to
:data:`EXAMPLES` training examples (centred and scaled features, L-BFGS, :func:`fit`), the result written back in the
raw features' scale. Training then starts from the probe: linear probing then fine-tuning (LP-FT, Kumar et al. 2022,
"Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"). Only the head's weights change,
so every way of saving and loading an adapter is unaffected. A resumed run skips it (its head comes from the
checkpoint); ``head_init="random"`` keeps transformers' random start.

Token classification fits on the tokens that carry a label (a word's first sub-word); a decoder's sequence head on
each input's last token, the one it classifies from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdapterKitError
from ..metrics import IGNORED


EXAMPLES = 4096  # training examples the probe reads at most
STEPS = 100  # L-BFGS iterations
BATCH = 64
HEAD_INITS = ("probe", "random")


@torch.no_grad()
def features(
    model: nn.Module, head: nn.Linear, batches: Iterable[dict], last_token: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``head`` receives for each labelled position of ``batches`` (dicts of model inputs with ``labels``), and
    those labels; ``last_token``: a sequence label is read at each input's last non-padding token."""
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    rows, targets = [], []
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            labels = batch.pop("labels")
            seen.clear()
            model(**batch)
            if not seen:
                raise AdapterKitError("`head_init`='probe': the model's forward never reached its head.")
            found = seen[-1].float()
            if found.dim() == 3 and labels.dim() == 1:  # a decoder's score over every token: its last one counts
                last = batch["attention_mask"].sum(1) - 1
                found = found[torch.arange(found.shape[0], device=found.device), last]
            if found.dim() == 2 and labels.dim() == 2:  # a sequence label in a multi-task batch's label list
                labels = labels[:, 0]
            kept = labels != IGNORED
            rows.append(found[kept].cpu())
            targets.append(labels[kept].cpu())
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(rows), torch.cat(targets)


def fit(head: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    """Set ``head`` to the logistic regression of ``y`` on ``x``; returns its accuracy on them.

    The features are centred and scaled by one number (their overall spread), not per feature: a feature that hardly
    varies would otherwise get a weight large enough to swamp the head as soon as training moves it. The L2 penalty is
    scikit-learn's default (``C=1``: half the squared weights over the examples), so a handful of examples, which a
    line separates, give a moderate probe rather than one that leaves nothing for training to learn from."""
    mean = x.mean(0)
    scale = (x - mean).std().clamp_min(1e-6)
    z = (x - mean) / scale
    weight = torch.zeros(head.out_features, x.shape[1], requires_grad=True)
    bias = torch.zeros(head.out_features, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=STEPS, line_search_fn="strong_wolfe")
    penalty = 1 / (2 * len(y))

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(z @ weight.T + bias, y) + penalty * weight.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    with torch.no_grad():
        head.weight.copy_((weight / scale).to(head.weight))
        if head.bias is not None:
            head.bias.copy_((bias - weight @ mean / scale).to(head.bias))
        return float(((z @ weight.T + bias).argmax(1) == y).float().mean())


def probe(model: nn.Module, head: nn.Linear, batches: Callable[[], Iterable[dict]], last_token: bool = False) -> float:
    """Fit ``head`` on what it receives from ``model`` over ``batches()``; returns the probe's training accuracy."""
    x, y = features(model, head, batches(), last_token)
    if y.numel() == 0 or y.unique().numel() < 2:
        raise AdapterKitError("`head_init`='probe': the probe's training examples hold fewer than two classes.")
    return fit(head, x, y)


def batches(dataset, collator: Callable, **extra) -> Callable[[], Iterable[dict]]:
    """The probe's batches: the first :data:`EXAMPLES` rows of ``dataset`` as the model takes them (its input columns
    and ``labels``, collated), each with ``extra`` (a multi-task model's ``task_ids``)."""
    inputs = {"input_ids", "attention_mask", "token_type_ids", "labels"}
    rows = dataset.select(range(min(EXAMPLES, dataset.num_rows)))
    rows = rows.remove_columns([column for column in rows.column_names if column not in inputs])

    def make() -> Iterable[dict]:
        for start in range(0, rows.num_rows, BATCH):
            chunk = rows.select(range(start, min(start + BATCH, rows.num_rows)))
            yield {**collator([chunk[i] for i in range(chunk.num_rows)]), **extra}

    return make


def last_linear(model: nn.Module, under: Iterable[str], num_labels: int) -> nn.Linear:
    """The trainable linear layer with ``num_labels`` outputs that a head (a top-level module named in ``under``,
    or PEFT's trainable copy of it) ends with."""
    prefixes = set(under)
    found = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and module.out_features == num_labels
        and module.weight.requires_grad
        and prefixes & set(name.split("."))
    ]
    if not found:
        raise AdapterKitError(f"`head_init`='probe': no trainable head layer with {num_labels} outputs under {under}.")
    return found[-1]


__all__ = ["EXAMPLES", "HEAD_INITS", "batches", "features", "fit", "last_linear", "probe"]
