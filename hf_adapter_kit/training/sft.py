"""Instruction tuning (SFT) of a decoder LLM with any adapter method: ``train(..., task_type="causal-lm")``.

The run, like the classification run in ``run.py``, checks everything first, then: the instruction data
(``data/instructions.py``), tokenized through the model's chat template with the loss on the completion only
(:func:`encode_chat`); the zero-shot base model measured on the test split (the baseline); the adapter attached and
trained by the same ``KitTrainer`` (the best checkpoint picked by validation loss); the trained model measured the same
way (``llm/generation.py``: accuracy of greedy generations, perplexity of the completions); the adapter saved with
``kind="causal-lm"``, which ``from_pretrained`` rebuilds with ``AutoModelForCausalLM``.

Names follow the ecosystem: ``task_type="causal-lm"`` is PEFT's ``TaskType.CAUSAL_LM`` (which the PEFT configs get),
the data are TRL's prompt/completion and messages formats, and, as TRL's ``completion_only_loss``, prompt tokens get
the label -100.
"""

from __future__ import annotations

from typing import Any

import datasets
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase, set_seed

from ..backends import get_backend
from ..data.instructions import InstructionData, load_instructions
from ..errors import AdapterKitError, invalid
from ..llm.generation import evaluate_generation
from ..metrics import IGNORED
from ..modeling import load_base_model, load_tokenizer, resolve_model_path
from ..registry import list_methods, resolve_backend
from ..saving import attach_meta, check_output_dir
from .args import DataArguments, KitTrainingArguments, MethodArguments, ModelArguments
from .trainer import KitTrainer


KIND = "causal-lm"
NOT_FOR_LLMS = ("head",)  # trains a classification head, which a causal LM does not have


def run_sft_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    method_args: MethodArguments,
    training_args: KitTrainingArguments,
):
    """Train an adapter on instruction data; return a :class:`~hf_adapter_kit.training.run.TrainResult`."""
    from .run import finish_run, new_meta, resolve_checkpoint

    # Every check runs before anything is loaded, trained or written.
    if data_args.tasks is not None:
        raise invalid(
            "tasks", data_args.tasks, "None with task_type='causal-lm': instruction tuning takes one `task`."
        )
    spec, backend_name = resolve_backend(method_args.method, method_args.backend)
    if spec.name in NOT_FOR_LLMS:
        allowed = [m for m in list_methods() if m not in NOT_FOR_LLMS]
        raise invalid("method", method_args.method, f"with task_type='causal-lm' one of {allowed}.")
    config = causal_lm_config(spec.configs[backend_name](**method_args.options()))
    output_dir = check_output_dir(training_args.output_dir)
    resolve_model_path(model_args.model_name_or_path)
    resume = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    pick_loss_for_best(training_args)
    data = load_instructions(data_args.task, **data_args.load_kwargs())
    tokenizer = chat_tokenizer(model_args.model_name_or_path)
    encoded = encode_splits(data, tokenizer, model_args.max_length)
    if training_args.learning_rate is None:
        training_args.learning_rate = spec.learning_rate

    set_seed(training_args.seed)
    base = load_base_model(
        model_args.model_name_or_path, [], kind=KIND, trust_remote_code=model_args.trust_remote_code
    )
    base_parameters = sum(p.numel() for p in base.parameters())
    measure = dict(
        tokenizer=tokenizer,
        prompts=list(data.splits["test"]["prompt"]),
        references=list(data.splits["test"]["completion"]),
        encoded=encoded["test"],
        batch_size=training_args.per_device_eval_batch_size,
        max_new_tokens=model_args.max_new_tokens,
    )
    zero_shot = evaluate_generation(base, **measure)  # the baseline, before the adapter is attached
    args = (model_args, data_args, method_args, training_args)
    meta = new_meta(base, spec.name, backend_name, args, data, data.name, data.name,
                    label_names=list(data.label_names), kind=KIND)  # fmt: skip
    adapter_name = meta.adapter_name
    model = get_backend(backend_name).attach(base, config, adapter_name)
    attach_meta(model, meta)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer = KitTrainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=completion_collator(tokenizer),
        processing_class=tokenizer,
        kit_meta=meta,
    )
    train_output = trainer.train(resume_from_checkpoint=resume)
    trained = evaluate_generation(trainer.trained_model().eval(), **measure)
    meta.metrics = {
        "accuracy": trained.accuracy,
        "perplexity": trained.perplexity,
        "zero_shot_accuracy": zero_shot.accuracy,
        "zero_shot_perplexity": zero_shot.perplexity,
    }
    return finish_run(
        trainer,
        train_output,
        meta,
        data,
        tokenizer,
        output_dir,
        trainable,
        base_parameters,
        task_description=data.description,
        test_examples=len(measure["prompts"]),
        max_new_tokens=trained.max_new_tokens,
        generation_samples=trained.samples(3),
        zero_shot_samples=zero_shot.samples(3),
    )


def causal_lm_config(config: Any) -> Any:
    """A PEFT config gets PEFT's CAUSAL_LM task type (``PeftModelForCausalLM``, which ``generate`` goes through and
    ``PeftModel.from_pretrained`` rebuilds), in place of the methods' SEQ_CLS default; other configs stay as they are."""
    if str(getattr(config, "task_type", None)) in {"SEQ_CLS", "TaskType.SEQ_CLS"}:
        config.task_type = "CAUSAL_LM"
    return config


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
