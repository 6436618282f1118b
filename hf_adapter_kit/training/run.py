"""``hf_adapter_kit.train``: the whole run, from a method and a task name to a saved, evaluated adapter.

:func:`run_training` is the one training pipeline: the same sixteen steps for every task shape, once and in order.

1. check: the argument values (``validate.py``);
2. backend: the method and its backend, then the strategy's own checks;
3. config: the method's config;
4. output dir: checked, not yet made;
5. model path: checked, and the method against the model's family (its config, no weights yet);
6. checkpoint: the one to resume from (``checkpoints.py``);
7. data, and the best-model metric once the kind is known (``best_metric.py``);
8. tokenizer, and the encoded splits;
9. seed;
10. model: the base model;
11. meta: the adapter's metadata;
12. attach: the adapter on the model;
13. Trainer;
14. train (Ctrl-C stops it with one line naming the checkpoint to resume from);
15. evaluate: on the test split;
16. finish: the record completed, the adapter saved, the result described (``result.py``).

Steps 1-6 only check: a bad value is refused before anything is loaded or written. What differs between task shapes
(their checks, data loading and encoding, model building and attaching, Trainer class and arguments, evaluation and
the record it adds) is a strategy's (``strategies/``), chosen from ``task_type`` and whether ``tasks`` is given:
:func:`~hf_adapter_kit.training.strategies.choose_strategy`. A new task shape registers a new strategy there; this
module does not change.
"""

from __future__ import annotations

from typing import Any

from transformers import set_seed

from ..backends import get_backend
from ..folders import attach_meta, check_output_dir
from ..modeling import load_config
from ..registry import resolve_backend
from .args import ARGUMENT_CLASSES, DataArguments, KitTrainingArguments, MethodArguments, ModelArguments, split_kwargs
from .checkpoints import resolve_checkpoint, resumable_on_ctrl_c
from .result import TrainResult, finish_run, new_meta
from .strategies import RunArguments, choose_strategy
from .validate import check_arguments, check_values


def train(
    method: str = "pfeiffer", task: str = "tweets-polarity", output_dir: str = "outputs/run", **kwargs: Any
) -> TrainResult:
    """Train ``method`` on ``task`` and save the adapter to ``output_dir/adapter``.

    Keyword arguments are those of the CLI: model/data/method options and any ``transformers.TrainingArguments``
    field, e.g. ``train("lora", "tweets-polarity", "out", max_train_samples=2000, num_train_epochs=1)``.
    """
    given = {"method": method, "task": task, "output_dir": output_dir, **kwargs}
    routed = split_kwargs(given)
    check_values(given)  # before the dataclasses, whose own checks (transformers') raise plain ValueErrors
    return run_training(*(cls(**values) for cls, values in zip(ARGUMENT_CLASSES, routed, strict=True)))


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    method_args: MethodArguments,
    training_args: KitTrainingArguments,
) -> TrainResult:
    """The sixteen steps of every run (see the module docstring); the run's strategy supplies what its shape needs."""
    args = RunArguments(model_args, data_args, method_args, training_args)
    check_arguments(*args)  # 1. bad values refused before anything runs
    strategy = choose_strategy(model_args.task_type, data_args.tasks)(args)
    spec, backend = resolve_backend(method_args.method, method_args.backend)  # 2.
    strategy.check(spec)
    config = spec.configs[backend](**(method_args.options() | strategy.config_options()))  # 3.
    output_dir = check_output_dir(training_args.output_dir)  # 4.
    model_config = load_config(model_args.model_name_or_path, model_args.trust_remote_code)  # 5.
    if model_config is not None:  # what the backend can put on this family, before any weight loads
        get_backend(backend).check_config(config, model_config)
    resume = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)  # 6.

    strategy.load_data()  # 7.
    if training_args.learning_rate is None:
        training_args.learning_rate = spec.learning_rate
    tokenizer = strategy.encode()  # 8.
    set_seed(training_args.seed)  # 9.
    base = strategy.load_model()  # 10.
    base_parameters = sum(p.numel() for p in base.parameters())
    meta = new_meta(base, spec.name, backend, args, **strategy.meta_fields())  # 11.
    model = strategy.attach(base, config, backend, meta.adapter_name)  # 12.
    attach_meta(model, meta)
    if resume is None:  # a resumed run's head comes from its checkpoint
        meta.training.update(strategy.start_head(model))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer = strategy.trainer(model=model, args=training_args, processing_class=tokenizer, kit_meta=meta)  # 13.
    with resumable_on_ctrl_c(trainer, output_dir):  # 14.
        train_output = trainer.train(resume_from_checkpoint=resume)
    meta.metrics, record = strategy.evaluate(trainer)  # 15.
    first = strategy.tasks[0]
    return finish_run(
        trainer, train_output, meta, first, tokenizer, output_dir, trainable, base_parameters, **record
    )  # 16.


__all__ = ["TrainResult", "run_training", "train"]
