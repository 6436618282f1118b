"""The arguments of a training run, as dataclasses that feed ``transformers.HfArgumentParser`` directly.

The Python API (``hf_adapter_kit.train(**kwargs)``) and the CLI (``hf-adapter-kit train --key value``) fill the same
four dataclasses, so they accept exactly the same keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

import torch
from transformers import TrainingArguments

from ..errors import AdapterKitError, choices, invalid
from ..modeling import DEFAULT_MODEL
from .probe import HEAD_INITS


# A smoke budget, for the tests that run the documentation's examples as written: with HF_ADAPTER_KIT_SMOKE=1 every
# run trains at most 2 steps on at most 64 examples and evaluates at most 64. Never for real work.
SMOKE = "HF_ADAPTER_KIT_SMOKE"
SMOKE_STEPS, SMOKE_SAMPLES = 2, 64


def smoke() -> bool:
    return os.environ.get(SMOKE, "") not in {"", "0"}


# task_type: None trains a classifier (one label per text, or per word for token tasks); "causal-lm" (PEFT's
# TaskType.CAUSAL_LM, or "CAUSAL_LM") instruction-tunes a decoder LLM (docs/llm.md); "seq2seq-lm" (PEFT's
# TaskType.SEQ_2_SEQ_LM, or "SEQ_2_SEQ_LM") trains an encoder-decoder text-to-text (docs/text2text.md);
# training/strategies/ has one each.
TASK_TYPES = {
    "causal-lm": "causal-lm",
    "CAUSAL_LM": "causal-lm",
    "seq2seq-lm": "seq2seq-lm",
    "SEQ_2_SEQ_LM": "seq2seq-lm",
}
# No encoder-decoder is embedded: a text-to-text run names one, or gets this Hub id (the recipe's, recipes/*-t5/).
DEFAULT_SEQ2SEQ_MODEL = "google-t5/t5-base"
TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "auto": "auto"}


def default_model(task_type: str | None) -> str:
    """The model a run uses when none is named: the embedded MiniLM encoder, the embedded SmolLM2 for
    task_type='causal-lm', and T5-base from the Hub for task_type='seq2seq-lm' (no encoder-decoder is embedded)."""
    if task_type == "causal-lm":
        from ..llm.embedded import DEFAULT_LLM

        return DEFAULT_LLM
    if task_type == "seq2seq-lm":
        return DEFAULT_SEQ2SEQ_MODEL
    return DEFAULT_MODEL


@dataclass
class ModelArguments:
    # typing.Optional: HfArgumentParser reads it
    model_name_or_path: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": f"Hub id or local folder of the base model; default: the embedded {DEFAULT_MODEL} (with "
            "task_type causal-lm: the embedded HuggingFaceTB/SmolLM2-135M-Instruct), which need no network; with "
            f"task_type seq2seq-lm: {DEFAULT_SEQ2SEQ_MODEL} from the Hub (no encoder-decoder is embedded)."
        },
    )
    max_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub (only if asked)."})
    task_type: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": "Unset: classification (one label per text; per word for token tasks). 'causal-lm' (PEFT's "
            "CAUSAL_LM): instruction tuning of a decoder LLM, evaluated by generation (docs/llm.md). 'seq2seq-lm' "
            "(PEFT's SEQ_2_SEQ_LM): text-to-text with an encoder-decoder (T5, BART), evaluated by generation "
            "(docs/text2text.md)."
        },
    )
    max_new_tokens: Optional[int] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": "task_type causal-lm or seq2seq-lm: most new tokens per generated test answer; default: the "
            "longest test answer's tokens plus 8."
        },
    )

    torch_dtype: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": "Load the base model's weights in this dtype: 'bfloat16', 'float16', 'float32' or 'auto' (the "
            "checkpoint's); unset: float32. Adapter weights stay float32 on a half-precision base (PEFT's "
            "autocast_adapter_dtype) and their outputs are cast to the base's dtype."
        },
    )

    @property
    def dtype(self) -> torch.dtype | str | None:
        """What ``from_pretrained(dtype=...)`` takes for ``torch_dtype``."""
        return TORCH_DTYPES[self.torch_dtype] if self.torch_dtype is not None else None

    def __post_init__(self):
        if self.torch_dtype is not None and self.torch_dtype not in TORCH_DTYPES:
            raise choices("torch_dtype", self.torch_dtype, list(TORCH_DTYPES))
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 8:
            raise AdapterKitError(f"`max_length`={self.max_length!r} is not valid: expected an integer >= 8.")
        if self.task_type is not None:
            if self.task_type not in TASK_TYPES:
                raise invalid(
                    "task_type",
                    self.task_type,
                    "'causal-lm' (or PEFT's name 'CAUSAL_LM') for instruction tuning, 'seq2seq-lm' (or "
                    "'SEQ_2_SEQ_LM') for text-to-text with an encoder-decoder, or None for classification.",
                )
            self.task_type = TASK_TYPES[self.task_type]
        if self.max_new_tokens is not None and (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, int)
            or self.max_new_tokens < 1
        ):
            raise AdapterKitError(f"`max_new_tokens`={self.max_new_tokens!r} is not valid: expected an integer >= 1.")
        if self.model_name_or_path is None:
            self.model_name_or_path = default_model(self.task_type)


@dataclass
class DataArguments:
    task: str = field(
        default="tweets-polarity",
        metadata={
            "help": "An embedded task (tweets-polarity, tweets-subjectivity, tweets-3way, rotten-tomatoes, "
            "tweets-ner; `hf-adapter-kit tasks` lists them), a Hub dataset id, or a local csv/json/jsonl/parquet "
            "file (text classification) or CoNLL-style .conll/.txt file (token classification)."
        },
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Local training file (csv/json/jsonl/parquet, or CoNLL-style .conll/.txt)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file."})
    test_file: str | None = field(default=None, metadata={"help": "Local test file."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Optional column with a second text."})
    label_column: str = field(default="label", metadata={"help": "Column holding the label (int or string)."})
    # transformers' TrainingArguments has a `label_names` field (the batch keys the Trainer reads as labels), which the
    # kit never needs (its batches carry `labels`): KitTrainingArguments hides it, and --label_names is this one.
    label_names: Optional[list[str]] = field(  # noqa: UP045 (HfArgumentParser reads typing.Optional)
        default=None,
        metadata={
            "help": "The classes of a local file or Hub dataset, in the order of their ids (default: the labels of "
            "the train split, sorted); they must include every train label, and validation/test may use only them."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap validation and test examples."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the fixed train/validation/test split."})
    tasks: Optional[list[str]] = field(  # noqa: UP045 (HfArgumentParser reads typing.Optional)
        default=None,
        metadata={
            "help": "Several tasks at once, for the multi-task methods (hyperformer, parallel); replaces `task`."
        },
    )
    temperature: float = field(
        default=10.0, metadata={"help": "Multi-task sampling: a batch's task is drawn with p_i ~ n_i^(1/T)."}
    )

    def __post_init__(self):
        if smoke():
            self.max_train_samples = min(self.max_train_samples or SMOKE_SAMPLES, SMOKE_SAMPLES)
            self.max_eval_samples = min(self.max_eval_samples or SMOKE_SAMPLES, SMOKE_SAMPLES)

    def load_kwargs(self) -> dict[str, Any]:
        skip = {"task", "split_seed", "tasks", "temperature"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip} | {"seed": self.split_seed}


@dataclass
class MethodArguments:
    method: str = field(default="pfeiffer", metadata={"help": "Adapter method; see `hf-adapter-kit methods`."})
    backend: str | None = field(default=None, metadata={"help": "adapters, peft or transformers; default per method."})
    method_options: str | None = field(
        default=None,
        metadata={"help": "The method's own options as a JSON object, e.g. '{\"reduction_factor\": 8}'."},
    )
    adapter_name: str | None = field(default=None, metadata={"help": "Name of the adapter; default: the task."})

    def options(self) -> dict[str, Any]:
        value = self.method_options
        if value is None:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise AdapterKitError(f"`method_options`={value!r} is not a JSON object: {err}.") from err
        if not isinstance(value, dict):
            raise AdapterKitError(f"`method_options`={value!r} is not valid: expected a JSON object / dict.")
        return value


@dataclass
class KitTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments with defaults that suit adapters on the embedded default."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Checkpoints go here, the adapter to ./adapter."})
    learning_rate: float | None = field(default=None, metadata={"help": "Default: the method's own (see registry)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device for training."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size per device for evaluation."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs to train."})
    warmup_ratio: float = field(default=0.06, metadata={"help": "Fraction of steps for linear warm-up."})
    eval_strategy: str = field(default="epoch", metadata={"help": "Evaluate every epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "Checkpoint (adapter only) every epoch."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept (plus the best one)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Restore the best checkpoint at the end."})
    metric_for_best_model: str | None = field(
        default=None,
        metadata={
            "help": "Metric picking the best checkpoint; default: accuracy (text classification), entity_f1 (token "
            "classification)."
        },
    )
    label_names: Optional[list[str]] = field(  # noqa: UP045
        default=None, init=False, metadata={"help": "Not an option here: --label_names names a task's classes."}
    )
    group_by_length: bool = field(default=True, metadata={"help": "Batch examples of similar length together."})
    head_init: str = field(
        default="probe",
        metadata={
            "help": "How a classification head starts: 'probe' (a logistic regression fitted on the model's features "
            "of up to 4096 training examples, then trained with the adapter: LP-FT) or 'random' (transformers' init)."
        },
    )
    length_column_name: str = field(default="length", metadata={"help": "Precomputed token counts."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    # HfArgumentParser needs typing.Union here: it cannot read "str | list[str] | None".
    dataloader_pin_memory: bool = field(
        default_factory=torch.cuda.is_available, metadata={"help": "Pinned host memory (only useful with CUDA)."}
    )
    report_to: Union[None, str, list[str]] = field(default="none", metadata={"help": "Experiment trackers."})  # noqa: UP007
    # None = chosen for the device (see device_defaults); an explicit value is kept.
    # typing.Optional, not "bool | None": HfArgumentParser then also takes a bare --bf16 as true.
    bf16: Optional[bool] = field(  # noqa: UP045
        default=None, metadata={"help": "bf16 mixed precision; default: on GPUs that have it."}
    )
    fp16: Optional[bool] = field(  # noqa: UP045
        default=None, metadata={"help": "fp16 mixed precision; default: on GPUs without bf16."}
    )
    tf32: Optional[bool] = field(  # noqa: UP045
        default=None, metadata={"help": "TF32 matmuls; default: on with bf16-capable GPUs."}
    )
    dataloader_num_workers: Optional[int] = field(  # noqa: UP045
        default=None, metadata={"help": "Data loading worker processes; default: 2 with a GPU, 0 on CPU."}
    )

    def __post_init__(self):
        if self.head_init not in HEAD_INITS:
            raise choices("head_init", self.head_init, HEAD_INITS)
        # None: the task kind's own metric, which the run picks once the kind is known (training/best_metric.py);
        # "accuracy" until then, so that transformers sets greater_is_better for a score rather than for the loss.
        self.kit_default_metric = self.metric_for_best_model is None
        if self.kit_default_metric:
            self.metric_for_best_model = "accuracy"
        cuda = torch.cuda.is_available() and not self.use_cpu
        bf16_supported = cuda and torch.cuda.is_bf16_supported()
        if self.bf16 and cuda is False and not self.use_cpu:
            raise AdapterKitError(
                "`bf16`=True is not valid on this machine: it has no GPU. Leave bf16 unset (the kit picks bf16 on GPUs "
                "that support it, fp16 on others), or add --use_cpu true to train in bf16 on the CPU."
            )
        if self.bf16 and cuda and not bf16_supported:
            raise AdapterKitError(
                f"`bf16`=True is not valid on {torch.cuda.get_device_name(0)}: it has no bf16; use --fp16 true."
            )
        for key, value in device_defaults(cuda, bf16_supported).items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if smoke():
            self.max_steps = SMOKE_STEPS
        if launched_processes() > 1 and not torch.cuda.is_available():
            # Under torchrun / accelerate launch on a machine without CUDA, accelerate builds a distributed (gloo)
            # state only when told `cpu`; otherwise it reports DistributedType.NO, the model is never wrapped in DDP
            # and each process trains its own copy on its shard of the data (measured: the ranks' weights diverged).
            self.use_cpu = True
        super().__post_init__()


def launched_processes() -> int:
    """How many processes a launcher (torchrun, accelerate launch) started for this run; 1 when run directly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def device_defaults(cuda: bool, bf16_supported: bool) -> dict[str, Any]:
    """What a run uses where the user said nothing: bf16 (fp16 on older GPUs), TF32 and data workers on GPU."""
    return {
        "bf16": bool(bf16_supported),
        "fp16": bool(cuda and not bf16_supported),
        "tf32": True if bf16_supported else None,  # TF32 exists on the same (Ampere+) GPUs as bf16
        "dataloader_num_workers": 2 if cuda else 0,
    }


ARGUMENT_CLASSES = (ModelArguments, DataArguments, MethodArguments, KitTrainingArguments)


def split_kwargs(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Route keyword arguments to the dataclass that owns them; a key of the method's own config (e.g.
    ``reduction_factor``) joins ``method_options``. Any other key is an error naming it."""
    routed: list[dict[str, Any]] = [{} for _ in ARGUMENT_CLASSES]
    owners = {f.name: i for i, cls in enumerate(ARGUMENT_CLASSES) for f in fields(cls) if f.init}
    options = _option_names(kwargs.get("method", MethodArguments.method), kwargs.get("backend"))
    unknown = sorted(k for k in kwargs if k not in owners and k not in options)
    if unknown:
        kit = sorted(name for name, i in owners.items() if i < len(ARGUMENT_CLASSES) - 1)
        raise AdapterKitError(
            f"Unknown argument(s) {unknown}: allowed are {', '.join(kit)}, the method's options "
            f"({', '.join(sorted(options))}) and any transformers.TrainingArguments field."
        )
    typed = {k: v for k, v in kwargs.items() if k not in owners}
    for key, value in kwargs.items():
        if key in owners:
            routed[owners[key]][key] = value
    if typed:
        method = routed[owners["method"]]
        method["method_options"] = {**MethodArguments(method_options=method.get("method_options")).options(), **typed}
    return routed


def _option_names(method: Any, backend: Any) -> set[str]:
    """The fields of ``method``'s config on ``backend``; none when the method or backend is unknown (refused later,
    with the list of methods)."""
    from ..registry import get_method

    try:
        spec = get_method(method)
        config = spec.configs[backend or spec.default_backend]()
    except (AdapterKitError, KeyError, TypeError):
        return set()
    return {f.name for f in fields(config) if f.init}
