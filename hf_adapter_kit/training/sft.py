"""Instruction tuning (SFT) of a decoder LLM with any adapter method: ``train(..., task_type="causal-lm")``.

The run, like the classification run in ``run.py``, checks everything first, then: the instruction data
(``data/instructions.py``), tokenized through the model's chat template with the loss on the completion only
(:func:`encode_chat`); the zero-shot base model measured on the test split (the baseline); the adapter attached and
trained by the same ``KitTrainer`` (the best checkpoint picked by validation loss); the trained model measured the same
way (``llm/generation.py``: accuracy of greedy generations, perplexity of the completions); the adapter saved with
``kind="causal-lm"``, which ``from_pretrained`` rebuilds with ``AutoModelForCausalLM``.

With ``tasks=[...]`` and a multi-task method (Hyperformer++, parallel), one adapter learns several instruction tasks:
every example carries its ``task_ids``, batches come one task at a time with temperature sampling
(:class:`MultiTaskSFTTrainer`), and each task is measured on its own test split, the adapter routed to it through
:func:`~hf_adapter_kit.methods.common.routing.task_context`.

Names follow the ecosystem: ``task_type="causal-lm"`` is PEFT's ``TaskType.CAUSAL_LM`` (which the PEFT configs get),
the data are TRL's prompt/completion and messages formats, and, as TRL's ``completion_only_loss``, prompt tokens get
the label -100.
"""

from __future__ import annotations

import datasets
import numpy as np
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase, set_seed

from ..backends import get_backend
from ..data.instructions import InstructionData, load_instructions
from ..errors import AdapterKitError, invalid
from ..folders import attach_meta, check_output_dir
from ..llm.generation import evaluate_generation
from ..metrics import IGNORED
from ..modeling import load_base_model, load_tokenizer, resolve_model_path
from ..registry import names_where, resolve_backend
from ..routing import task_context
from .args import DataArguments, KitTrainingArguments, MethodArguments, ModelArguments
from .multitask import TemperatureBatchSampler, check_multitask_arguments
from .trainer import KitTrainer


KIND = "causal-lm"


def run_sft_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    method_args: MethodArguments,
    training_args: KitTrainingArguments,
):
    """Train an adapter on instruction data; return a :class:`~hf_adapter_kit.training.run.TrainResult`."""
    from .run import finish_run, new_meta, resolve_checkpoint

    # Every check runs before anything is loaded, trained or written.
    spec, backend_name = resolve_backend(method_args.method, method_args.backend)
    if not spec.causal_lm:
        allowed = names_where(lambda s: s.causal_lm)
        raise invalid("method", method_args.method, f"with task_type='causal-lm' one of {allowed}.")
    # several tasks: a multi-task adapter
    names = None if data_args.tasks is None else check_multitask_arguments(spec, data_args, method_args)
    options = method_args.options() | ({"tasks": names} if names else {})
    config = spec.configs[backend_name](**options)
    output_dir = check_output_dir(training_args.output_dir)
    resolve_model_path(model_args.model_name_or_path)
    resume = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    pick_loss_for_best(training_args)
    load_kwargs = data_args.load_kwargs()
    sources = [load_instructions(name, **load_kwargs) for name in names or [data_args.task]]
    tokenizer = chat_tokenizer(model_args.model_name_or_path)
    encoded = [encode_splits(data, tokenizer, model_args.max_length) for data in sources]
    for index, splits in enumerate(encoded if names else []):  # each example's task, which the model routes by
        for split in splits:
            splits[split] = splits[split].add_column("task_ids", [index] * splits[split].num_rows)
    if training_args.learning_rate is None:
        training_args.learning_rate = spec.learning_rate

    set_seed(training_args.seed)
    base = load_base_model(
        model_args.model_name_or_path,
        [],
        kind=KIND,
        dtype=model_args.dtype,
        trust_remote_code=model_args.trust_remote_code,
    )
    base_parameters = sum(p.numel() for p in base.parameters())
    measures = {
        data.name: dict(
            tokenizer=tokenizer,
            prompts=list(data.splits["test"]["prompt"]),
            references=list(data.splits["test"]["completion"]),
            encoded=splits["test"],
            batch_size=training_args.per_device_eval_batch_size,
            max_new_tokens=model_args.max_new_tokens,
        )
        for data, splits in zip(sources, encoded, strict=True)
    }
    zero_shot = {name: evaluate_generation(base, **m) for name, m in measures.items()}  # before the adapter
    args = (model_args, data_args, method_args, training_args)
    first = sources[0]
    if names:
        tasks = [{"name": d.name, "label_names": list(d.label_names)} for d in sources]
        meta = new_meta(base, spec.name, backend_name, args, first, ", ".join(names), "_".join(names),
                        label_names=[], kind=KIND, tasks=tasks)  # fmt: skip
    else:
        meta = new_meta(base, spec.name, backend_name, args, first, first.name, first.name,
                        label_names=list(first.label_names), kind=KIND)  # fmt: skip
    model = get_backend(backend_name).attach(base, config, meta.adapter_name, kind=KIND)
    attach_meta(model, meta)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    settings = dict(
        model=model,
        args=training_args,
        train_dataset=datasets.concatenate_datasets([splits["train"] for splits in encoded]),
        eval_dataset=datasets.concatenate_datasets([splits["validation"] for splits in encoded]),
        data_collator=completion_collator(tokenizer),
        processing_class=tokenizer,
        kit_meta=meta,
    )
    if names:
        sizes = [splits["train"].num_rows for splits in encoded]
        trainer = MultiTaskSFTTrainer(**settings, task_sizes=sizes, temperature=data_args.temperature)
    else:
        trainer = KitTrainer(**settings)
    train_output = trainer.train(resume_from_checkpoint=resume)
    trained_model = trainer.trained_model().eval()
    trained = {}
    for name, measure in measures.items():
        with task_context(name if names else None):  # the adapter's layers read the task of every example
            trained[name] = evaluate_generation(trained_model, **measure)
    per_task = {
        name: {
            "accuracy": trained[name].accuracy,
            "perplexity": trained[name].perplexity,
            "zero_shot_accuracy": zero_shot[name].accuracy,
            "zero_shot_perplexity": zero_shot[name].perplexity,
        }
        for name in measures
    }
    # several tasks: each metric's mean over the tasks; every task's own in the training record
    meta.metrics = {key: float(np.mean([m[key] for m in per_task.values()])) for key in per_task[first.name]}
    record = dict(task_metrics=per_task, temperature=data_args.temperature) if names else {}
    if names:
        record["train_examples"] = {
            name: splits["train"].num_rows for name, splits in zip(names, encoded, strict=True)
        }
    return finish_run(
        trainer,
        train_output,
        meta,
        first,
        tokenizer,
        output_dir,
        trainable,
        base_parameters,
        task_description="; ".join(d.description for d in sources if d.description),
        test_examples=sum(len(m["prompts"]) for m in measures.values()),
        max_new_tokens=max(r.max_new_tokens for r in trained.values()),
        generation_samples=trained[first.name].samples(3),
        zero_shot_samples=zero_shot[first.name].samples(3),
        **record,
    )


class MultiTaskSFTTrainer(KitTrainer):
    """Instruction tuning of a multi-task adapter: each batch from one task, the task drawn with probability
    ``n_i ** (1 / temperature)`` (as multi-task classification, ``multitask.TemperatureBatchSampler``), and each
    example's ``task_ids`` handed to the model, whose adapter routes by them."""

    def __init__(self, *args, task_sizes: list[int], temperature: float, **kwargs):
        self.task_sizes, self.temperature = task_sizes, temperature
        super().__init__(*args, model_columns=("task_ids",), **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        seed = self.args.data_seed or self.args.seed
        return TemperatureBatchSampler(self.task_sizes, self.args.train_batch_size, self.temperature, seed)


def pick_loss_for_best(training_args: KitTrainingArguments) -> None:
    """The best checkpoint is the one of lowest validation loss (on completion tokens): the only metric evaluated
    while training; generation is measured once, on the test split, at the end."""
    if getattr(training_args, "kit_default_metric", False):
        training_args.metric_for_best_model = "loss"
        training_args.greater_is_better = False
        return
    metric = training_args.metric_for_best_model
    if metric is not None and metric not in {"loss", "eval_loss"}:
        raise invalid(
            "metric_for_best_model",
            metric,
            "'loss' (or unset) with task_type='causal-lm': validation loss picks the best checkpoint.",
        )


def chat_tokenizer(model_name_or_path: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, which must have a chat template and an eos token; padding set (eos when it has none)."""
    tokenizer = load_tokenizer(model_name_or_path)
    if not getattr(tokenizer, "chat_template", None):
        raise invalid(
            "model_name_or_path",
            model_name_or_path,
            "a model whose tokenizer has a chat template with task_type='causal-lm' (an instruct/chat model, e.g. "
            "'HuggingFaceTB/SmolLM2-135M-Instruct'); this one has none.",
        )
    if tokenizer.eos_token is None:
        raise invalid("model_name_or_path", model_name_or_path, "a model whose tokenizer has an eos token.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # training batches; generation pads on the left itself
    return tokenizer


def encode_chat(
    tokenizer: PreTrainedTokenizerBase, prompt: list[dict[str, str]], completion: str, max_length: int
) -> dict[str, list[int]]:
    """Token ids of the whole conversation through the chat template, with ``labels`` -100 on the prompt's tokens
    (the template's generation prompt included) and the ids of the answer and its end-of-turn tokens after it.

    Longer than ``max_length``: the prompt loses its first tokens, so that the answer stays whole (an answer longer
    than ``max_length - 1`` tokens keeps its beginning).
    """
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}], tokenize=True)
    if full[: len(prompt_ids)] != prompt_ids:
        raise AdapterKitError(
            f"The chat template of {tokenizer.name_or_path!r} renders a conversation that does not start with its "
            "own generation prompt, so the answer's tokens cannot be told from the prompt's."
        )
    answer = full[len(prompt_ids) :][: max_length - 1]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - (max_length - len(answer))) :]
    ids = prompt_ids + answer
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": [IGNORED] * len(prompt_ids) + answer,
        "length": len(ids),
    }


def encode_splits(data: InstructionData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> datasets.DatasetDict:
    def encode(example):
        return encode_chat(tokenizer, example["prompt"], example["completion"], max_length)

    columns = data.splits["train"].column_names
    return data.splits.map(encode, remove_columns=columns, desc="Tokenizing")


def completion_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
    """Pads ids with the pad token, attention with 0 and labels with -100, on the right."""
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORED)
