"""``hf-adapter-kit``: the command line mirrors the Python API (same dataclasses, same keys).

hf-adapter-kit train --method pfeiffer --task tweets-polarity --output_dir out [--any TrainingArguments field]
hf-adapter-kit demo [same options; defaults sized for a few minutes on 2 CPU cores]
hf-adapter-kit compare --task tweets-polarity --methods full,head,pfeiffer,lora --output_dir out [train options]
hf-adapter-kit methods | tasks
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import HfArgumentParser

from .errors import AdapterKitError


# `make demo`: 300 steps of batch 32, evaluated and checkpointed each epoch, a few minutes on 2 CPU cores.
DEMO_DEFAULTS = {
    "output_dir": "outputs/demo",
    "max_train_samples": 4800,
    "num_train_epochs": 2,
    "max_length": 64,
}


def _parse(argv: list[str], defaults: dict | None = None):
    from .recipes import expand_config
    from .training.args import ARGUMENT_CLASSES

    argv = expand_config(argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    if defaults:
        parser.set_defaults(**defaults)
    parsed, unknown = parser.parse_known_args(argv)
    if unknown:
        raise AdapterKitError(
            f"Unknown argument(s) {unknown}: run `hf-adapter-kit train --help` for the keys allowed."
        )
    return [cls(**{k: v for k, v in vars(parsed).items() if k in _names(cls)}) for cls in ARGUMENT_CLASSES]


def _names(cls) -> set[str]:
    from dataclasses import fields

    return {f.name for f in fields(cls) if f.init}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = (argv[0], argv[1:]) if argv else ("--help", [])
    try:
        if command == "train":
            from .training.run import run_training

            result = run_training(*_parse(rest))
            print(
                f"test metrics: {result.test_metrics}\nadapter: {result.adapter_dir} ({result.adapter_size_bytes:,} bytes)"
            )
        elif command == "demo":
            from .recipes import expand_config
            from .workflow import run_demo

            given = expand_config(rest)  # what the recipe and the command line set, for the Python API
            model_args, data_args, method_args, training_args = _parse(given, DEMO_DEFAULTS)
            run_demo(**_as_kwargs(model_args, data_args, method_args, training_args, given))
        elif command == "compare":
            from .compare import compare

            task, methods, output_dir, kwargs = _compare_arguments(rest)
            rows = compare(task, methods, output_dir, **kwargs)
            print((Path(output_dir) / "compare.md").read_text())
            print(f"written: {output_dir}/compare.json, compare.md, compare.png ({len(rows)} methods)")
        elif command == "push":
            from .hub import push_to_hub

            options = _push_parser().parse_args(rest)
            sha = push_to_hub(
                options.adapter_dir,
                options.repo_id,
                private=options.private,
                token=options.token,
                revision=options.revision,
                commit_message=options.commit_message,
            )
            print(f"pushed {options.adapter_dir} to {options.repo_id} (commit {sha})")
        elif command == "methods":
            from .registry import get_method, list_methods

            for name in list_methods():
                spec = get_method(name)
                print(f"{name:10s} backends: {', '.join(spec.backends):22s} default lr {spec.learning_rate:g}")
        elif command == "tasks":
            from .data import list_tasks

            print("\n".join(list_tasks()))
        else:
            print(__doc__)
            return 0 if command in {"--help", "-h", "help"} else 2
    except AdapterKitError as err:
        print(f"hf-adapter-kit: error: {err}", file=sys.stderr)
        return 2
    return 0


def _compare_arguments(argv: list[str]):
    """``--task``, ``--methods a,b,c`` and ``--output_dir`` for compare; the other keys are train() keywords."""
    given = _given(argv)
    model_args, data_args, method_args, training_args = _parse(_without(argv, "--methods"))
    methods = _value(argv, "--methods")
    methods = methods.split(",") if methods else None
    kwargs = {}
    for args in (model_args, data_args, method_args, training_args):
        for name in _names(type(args)):
            if name in given and name not in {"task", "output_dir", "method", "methods"}:
                kwargs[name] = getattr(args, name)
    output_dir = training_args.output_dir if "output_dir" in given else "outputs/compare"
    return data_args.task, methods, output_dir, kwargs


def _given(argv: list[str]) -> set[str]:
    return {arg.lstrip("-").split("=", 1)[0] for arg in argv if arg.startswith("--")}


def _value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _without(argv: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out


def _push_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="hf-adapter-kit push", description="Upload an adapter folder to the Hub.")
    parser.add_argument("adapter_dir")
    parser.add_argument("repo_id")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None, help="Branch to push to (created if missing).")
    parser.add_argument("--token", default=None, help="Default: the logged-in token or HF_TOKEN.")
    parser.add_argument("--commit_message", default=None)
    return parser


def _as_kwargs(model_args, data_args, method_args, training_args, argv) -> dict:
    """The demo takes the Python API's keywords: the demo defaults plus whatever the command line set."""
    given = _given(argv)
    values = {}
    for args in (model_args, data_args, method_args, training_args):
        for name in _names(type(args)):
            if name in given or name in DEMO_DEFAULTS or name in {"method", "task"}:
                values[name] = getattr(args, name)
    return values


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
