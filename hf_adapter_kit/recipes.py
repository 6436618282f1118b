"""Recipe files: a YAML mapping of the same keys as the command line (TRL's ``--config`` habit).

``hf-adapter-kit train --config recipes/pfeiffer/config.yaml --learning_rate 0.0005``: the YAML becomes
``--key value`` arguments placed before the command line's own, so the same parser converts both and the command
line wins. An unknown key is refused with the list of keys allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import AdapterKitError
from .training.args import split_kwargs


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe's keys and values, checked against the training dataclasses."""
    file = Path(path)
    if not file.is_file():
        raise AdapterKitError(f"`config`={str(path)!r} does not exist or is not a file: give a recipe YAML file.")
    try:
        values = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise AdapterKitError(f"`config`={str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise AdapterKitError(
            f"`config`={str(path)!r} must hold a mapping of option: value, not {type(values).__name__}."
        )
    split_kwargs(values)  # raises on unknown keys, naming them and the keys allowed
    return values


def recipe_argv(values: dict[str, Any]) -> list[str]:
    """The recipe as command-line arguments for ``HfArgumentParser``."""
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        elif isinstance(value, list):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, bool):
            argv += [f"--{key}", str(value).lower()]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def expand_config(argv: list[str]) -> list[str]:
    """Replace ``--config FILE`` (or ``--config=FILE``) in ``argv`` by the recipe's arguments, placed first."""
    rest, recipe = [], []
    args = iter(argv)
    for arg in args:
        if arg == "--config" or arg.startswith("--config="):
            path = arg.split("=", 1)[1] if "=" in arg else next(args, None)
            if path is None:
                raise AdapterKitError("`--config` needs a file: --config recipes/<method>/config.yaml")
            recipe += recipe_argv(load_recipe(path))
        else:
            rest.append(arg)
    return recipe + rest
