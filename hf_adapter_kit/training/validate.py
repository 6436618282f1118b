"""Every value of a training run that torch or transformers would refuse later, refused before anything happens.

Without these checks a negative learning rate reaches torch's optimizer (a plain ``ValueError`` after the model has
loaded and the output folder has been created), a zero batch size reaches the DataLoader, a negative seed NumPy,
``gradient_accumulation_steps=0`` a division, and some values train nothing without a word (``num_train_epochs=-1``).
Here each is an :class:`AdapterKitError` naming the argument, its value and what is allowed, raised before a model is
loaded or a file written. Written against transformers 4.57 (its ``TrainingArguments.__post_init__`` checks, which
raise plain ``ValueError``s, are repeated so that :func:`check_values` can run before the dataclass is built).

``check_values`` takes the run's keyword arguments (what ``train()`` and the command line take);
``check_arguments`` the four argument dataclasses once built. Both also check that ``output_dir`` is, or can be
made, a writable folder.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

import torch
from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType

from ..errors import AdapterKitError, choices, invalid
from ..folders import check_output_dir
from ..kinds import KINDS


SEED_MAX = 2**32 - 1  # NumPy's limit; transformers.set_seed seeds NumPy too
MIN_MAX_LENGTH = 8  # as ModelArguments


def check_arguments(*arguments: Any) -> None:
    """Check the run's argument dataclasses (model, data, method, training), as built."""
    values: dict[str, Any] = {}
    for argument in arguments:
        values.update({f.name: getattr(argument, f.name) for f in fields(argument) if f.init})
    check_values(values, complete=True)


def check_values(values: Mapping[str, Any], *, complete: bool = False) -> None:
    """Check the run's keyword arguments; keys not given take the argument dataclasses' defaults.

    Keys that are not arguments of a run (a method's own options) are left to the method's config.
    """
    v = dict(values) if complete else {**_defaults(), **values}
    _check_numbers(v)
    _check_schedule(v)
    _check_strategies(v)
    _check_adapter_name(v)
    output_dir = check_output_dir(v["output_dir"])
    adapter_dir = output_dir / "adapter"
    if adapter_dir.exists() and not adapter_dir.is_dir():
        raise invalid(
            "output_dir",
            str(v["output_dir"]),
            f"a folder where the adapter can be saved as adapter/; {str(adapter_dir)!r} is a file.",
        )


def _defaults() -> dict[str, Any]:
    from .args import ARGUMENT_CLASSES

    defaults = {}
    for cls in ARGUMENT_CLASSES:
        for f in fields(cls):
            if f.init and f.default is not MISSING:
                defaults[f.name] = f.default
            elif f.init and f.default_factory is not MISSING:
                defaults[f.name] = f.default_factory()
    return defaults


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _integer(v: dict[str, Any], name: str, low: int, allowed: str, *, optional: bool = False) -> None:
    value = v.get(name)
    if value is None and optional:
        return
    if not _is_int(value) or value < low:
        raise invalid(name, value, allowed)


def _number(
    v: dict[str, Any], name: str, allowed: str, *, low: float, high: float = math.inf, open_low=False, open_high=False
) -> None:
    value = v.get(name)
    if not _is_number(value):
        raise invalid(name, value, allowed)
    if value < low or (open_low and value == low) or value > high or (open_high and value == high):
        raise invalid(name, value, allowed)


def _check_numbers(v: dict[str, Any]) -> None:
    if v.get("learning_rate") is not None:
        _number(
            v, "learning_rate", "a number > 0 (e.g. 1e-4), or unset for the method's default.", low=0, open_low=True
        )
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        _integer(v, name, 1, "an integer >= 1 (examples per device and step).")
    _integer(v, "gradient_accumulation_steps", 1, "an integer >= 1 (1: update after every batch).")
    _integer(v, "eval_accumulation_steps", 1, "an integer >= 1, or None.", optional=True)
    _number(v, "warmup_ratio", "a number from 0 to 1 (the fraction of the steps spent warming up).", low=0, high=1)
    _integer(v, "warmup_steps", 0, "an integer >= 0 (0: use warmup_ratio).")
    _number(v, "weight_decay", "a number >= 0 (0: no weight decay).", low=0)
    for name in ("adam_beta1", "adam_beta2"):
        _number(v, name, "a number >= 0 and < 1.", low=0, high=1, open_high=True)
    _number(v, "adam_epsilon", "a number >= 0 (e.g. 1e-8).", low=0)
    if v.get("max_grad_norm") is not None:
        _number(v, "max_grad_norm", "a number >= 0 (0: no gradient clipping).", low=0)
    _number(
        v, "label_smoothing_factor", "a number >= 0 and < 1 (0: no label smoothing).", low=0, high=1, open_high=True
    )
    for name, optional in (("seed", False), ("data_seed", True), ("split_seed", False)):
        value = v.get(name)
        if not (value is None and optional) and (not _is_int(value) or not 0 <= value <= SEED_MAX):
            raise invalid(name, value, f"an integer from 0 to {SEED_MAX}{', or None' if optional else ''}.")
    _integer(
        v, "dataloader_num_workers", 0, "an integer >= 0 (0: load data in the main process), or None.", optional=True
    )
    _integer(v, "save_total_limit", 0, "an integer >= 0 (checkpoints kept; 0 or None: all).", optional=True)
    _integer(v, "max_length", MIN_MAX_LENGTH, f"an integer >= {MIN_MAX_LENGTH} (tokens kept per example).")
    if v.get("tasks") is not None:
        _number(v, "temperature", "a number > 0 (1: by task size; 10: nearly uniform).", low=0, open_low=True)
    if v.get("fp16") and v.get("bf16"):
        raise invalid("fp16", v["fp16"], "False when bf16=True: one mixed precision at a time.")


def _check_schedule(v: dict[str, Any]) -> None:
    _number(v, "num_train_epochs", "a number >= 0 (e.g. 3; fractions allowed).", low=0)
    allowed = "an integer >= 1, or -1 to train for num_train_epochs."
    _integer(v, "max_steps", -1, allowed)
    if v["max_steps"] <= 0 and v["num_train_epochs"] == 0:
        raise invalid(
            "num_train_epochs", v["num_train_epochs"], "a number > 0 when max_steps is not set: nothing would train."
        )
    if v["max_steps"] == 0:  # transformers would train one step and save an untrained adapter
        raise invalid("max_steps", 0, allowed)
    scheduler = _value(v.get("lr_scheduler_type"))
    if scheduler not in {s.value for s in SchedulerType}:
        raise choices("lr_scheduler_type", scheduler, [s.value for s in SchedulerType])


def _value(value: Any) -> Any:
    """An enum member (transformers turns strategy strings into enums) as its plain value."""
    return getattr(value, "value", value)


def _check_strategies(v: dict[str, Any]) -> None:
    strategies = {}
    for name, allowed in (
        ("logging_strategy", IntervalStrategy),
        ("eval_strategy", IntervalStrategy),
        ("save_strategy", SaveStrategy),
    ):
        value = _value(v.get(name))
        if value not in {s.value for s in allowed}:
            raise choices(name, value, [s.value for s in allowed])
        strategies[name] = value
    logging_steps = _steps(v, "logging_steps", strategies["logging_strategy"])
    eval_steps = _steps(v, "eval_steps", strategies["eval_strategy"], fallback=logging_steps)
    save_steps = _steps(v, "save_steps", strategies["save_strategy"])
    evaluation, saving = strategies["eval_strategy"], strategies["save_strategy"]
    if _value(v.get("lr_scheduler_type")) == "reduce_lr_on_plateau" and evaluation == "no":
        raise invalid("lr_scheduler_type", "reduce_lr_on_plateau", "another scheduler when eval_strategy='no'.")
    single_task = v.get("tasks") is None  # with `tasks` the strategy decides (multi-task classification: its score)
    metric = v.get("metric_for_best_model")
    if single_task and metric is not None:  # None: the task's own (accuracy, or entity_f1 for token tasks)
        known = {key for kind in KINDS.values() for key in kind.best_metrics()}
        allowed = sorted(known | {f"eval_{m}" for m in known})
        if metric not in allowed:
            raise choices("metric_for_best_model", metric, allowed)
    if not v.get("load_best_model_at_end") or saving == "best":
        return
    if evaluation != saving:
        raise invalid(
            "eval_strategy",
            evaluation,
            f"the same as save_strategy={saving!r} while load_best_model_at_end=True (the kit's default: the best "
            "checkpoint is restored at the end); or set load_best_model_at_end=False.",
        )
    if evaluation == "steps" and not _multiple(save_steps, eval_steps):
        raise invalid(
            "save_steps",
            save_steps,
            f"a multiple of eval_steps={eval_steps} while load_best_model_at_end=True (each checkpoint must have been "
            "evaluated).",
        )


MODULE_DICT = torch.nn.ModuleDict()  # whose attributes an adapters adapter may not be named after


def _check_adapter_name(v: dict[str, Any]) -> None:
    """On the ``adapters`` backend the name becomes a key of the torch ``ModuleDict`` in every adapted layer, where
    torch refuses a dot and any name the dict has as an attribute (a raw ``KeyError`` once the data and model have
    loaded). PEFT knows every adapter as ``default``: any name does there."""
    name = v.get("adapter_name")
    if name is None or name == "":  # unset: named after the task
        return
    if not isinstance(name, str):
        raise invalid("adapter_name", name, "a name (a string), or unset to name the adapter after the task.")
    if _backend(v) == "adapters" and ("." in name or hasattr(MODULE_DICT, name)):
        suggestion = re.sub(r"[^A-Za-z0-9_]", "_", name)
        suggestion = f"{suggestion}_adapter" if hasattr(MODULE_DICT, suggestion) else suggestion
        raise invalid(
            "adapter_name",
            name,
            "a name without '.' that is not an attribute of torch's ModuleDict (such as 'forward', 'keys', "
            f"'training'): the adapters backend makes it a torch module name; e.g. {suggestion!r}.",
        )


def _backend(v: dict[str, Any]) -> str | None:
    """The backend the run will use (the method's default unless named); None for an unknown method, which the
    pipeline refuses with the list of methods."""
    from ..registry import get_method

    try:
        spec = get_method(v.get("method"))
    except (AdapterKitError, TypeError):
        return None
    return v.get("backend") or spec.default_backend


def _steps(v: dict[str, Any], name: str, strategy: str, fallback: float | None = None) -> float | None:
    """``*_steps`` when its strategy is 'steps': > 0, a whole number if > 1 (a fraction <= 1: of the total steps)."""
    value = v.get(name)
    if strategy != "steps":
        return value
    if value is None and fallback is not None:  # eval_steps unset: transformers evaluates every logging_steps
        return fallback
    strategy_name = name.replace("_steps", "_strategy")
    allowed = f"a number > 0 while {strategy_name}='steps': a whole number of steps, or a fraction <= 1 of all steps."
    if not _is_number(value) or value <= 0 or (value > 1 and value != int(value)):
        raise invalid(name, value, allowed)
    return int(value) if value > 1 else value


def _multiple(save: float, evaluate: float) -> bool:
    if save >= 1 and evaluate >= 1:
        return save % evaluate == 0
    if (save < 1) != (evaluate < 1):
        return False
    ratio = save / evaluate
    return abs(ratio - round(ratio)) < 1e-6


__all__ = ["check_arguments", "check_values"]
