"""``hf-adapter-kit``: the command line mirrors the Python API (same dataclasses, same keys); one parser each command.

Each command imports what it needs when it runs (the Trainer, datasets, matplotlib), so that ``methods``, ``tasks``,
``recipes`` and ``--help`` answer without loading them.

train    --config pfeiffer | --method M --task T --output_dir D [--any option; --method M --help lists them]
demo     the seven-step walk-through: the pfeiffer recipe, into outputs/demo (same options as train)
compare  --task T --methods full,head,pfeiffer --output_dir D [train options]
push     ADAPTER_DIR REPO_ID [--private] [--revision R]
methods | tasks | recipes
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import AdapterKitError


def _train(argv: list[str]) -> None:
    from ..training.run import run_training
    from .parser import parse_train

    arguments, _ = parse_train(argv)
    result = run_training(*arguments)
    if os.environ.get("RANK", "0") == "0":  # under torchrun / accelerate, the main process alone reports
        print(
            f"test metrics: {result.test_metrics}\nadapter: {result.adapter_dir} ({result.adapter_size_bytes:,} bytes)"
        )


def _demo(argv: list[str]) -> None:
    """The pfeiffer recipe (or the one ``--config`` names) through the walk-through of ``workflow.run_demo``."""
    from .demo import run_demo
    from .parser import parse_train, split_config

    config, _ = split_config(argv)
    argv = argv if config is not None else ["--config", "pfeiffer", *argv]
    arguments, given = parse_train(argv, defaults={"output_dir": "outputs/demo"}, prog="hf-adapter-kit demo")
    run_demo(**_keywords(arguments, given | {"method", "task", "output_dir"}))


def _compare(argv: list[str]) -> None:
    from dataclasses import dataclass, field

    from .compare import compare
    from .parser import parse_train

    @dataclass
    class CompareArguments:
        methods: str | None = field(
            default=None, metadata={"help": "Comma-separated methods; default: every registered method."}
        )

    parsed, given = parse_train(argv, prog="hf-adapter-kit compare", extra=(CompareArguments,))
    *arguments, extra = parsed
    methods = extra.methods.split(",") if extra.methods else None
    output_dir = arguments[3].output_dir if "output_dir" in given else "outputs/compare"
    kwargs = _keywords(arguments, given - {"task", "output_dir", "method", "methods"})
    rows = compare(arguments[1].task, methods, output_dir, **kwargs)
    print((Path(output_dir) / "compare.md").read_text())
    print(f"written: {output_dir}/compare.json, compare.md, compare.png ({len(rows)} methods)")


def _push(argv: list[str]) -> None:
    from ..folders import push_to_hub

    parser = argparse.ArgumentParser(prog="hf-adapter-kit push", description="Upload an adapter folder to the Hub.")
    parser.add_argument("adapter_dir")
    parser.add_argument("repo_id")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None, help="Branch to push to (created if missing).")
    parser.add_argument("--token", default=None, help="Default: the logged-in token or HF_TOKEN.")
    parser.add_argument("--commit_message", default=None)
    options = parser.parse_args(argv)
    sha = push_to_hub(
        options.adapter_dir,
        options.repo_id,
        private=options.private,
        token=options.token,
        revision=options.revision,
        commit_message=options.commit_message,
    )
    print(f"pushed {options.adapter_dir} to {options.repo_id} (commit {sha})")


def _methods(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="hf-adapter-kit methods", description="The registered methods.").parse_args(argv)
    from ..registry import list_specs

    for spec in list_specs():
        multi = "multi-task" if spec.multi_task else ""
        print(f"{spec.name:12s} backends: {', '.join(spec.backends):22s} lr {spec.learning_rate:<8g} {multi}")


def _tasks(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="hf-adapter-kit tasks", description="The embedded tasks.").parse_args(argv)
    from ..data import list_tasks
    from ..data.embedded import EMBEDDED_TASKS
    from ..kinds import get_kind

    for name in list_tasks():
        spec = EMBEDDED_TASKS[name]
        kind = get_kind(spec.kind).description  # "text classification", "token classification"
        print(f"{name:20s} {kind:21s} {spec.description}")


def _recipes(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-adapter-kit recipes", description="The recipes installed with the kit: use --config NAME."
    )
    parser.parse_args(argv)
    from .parser import list_recipes

    for name, about in list_recipes().items():
        print(f"{name:12s} {about}")


COMMANDS = {
    "train": _train,
    "demo": _demo,
    "compare": _compare,
    "push": _push,
    "methods": _methods,
    "tasks": _tasks,
    "recipes": _recipes,
}


def _keywords(arguments, names: set[str]) -> dict:
    """The Python API's keywords for the given names, read from the parsed dataclasses."""
    values = {}
    for args in arguments:
        for name in names:
            if hasattr(args, name):
                values[name] = getattr(args, name)
    return values


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = (argv[0], argv[1:]) if argv else ("--help", [])
    if command not in COMMANDS:
        print(__doc__)
        return 0 if command in {"--help", "-h", "help"} else 2
    try:
        COMMANDS[command](rest)
    except AdapterKitError as err:
        print(f"hf-adapter-kit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C: one line, no traceback (training says where to resume from)
        print(f"hf-adapter-kit: {err or 'interrupted'}", file=sys.stderr)
        return 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
