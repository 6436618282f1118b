"""One argument parser for the command line and the recipes, in TRL's style (``TrlParser``).

``KitArgumentParser`` is ``transformers.HfArgumentParser`` over the run's dataclasses. ``--config`` names a recipe
(a name such as ``pfeiffer``, from the recipes installed with the package, or a YAML file): its keys become the
parser's defaults, the command line wins, and an unknown key (in the file or on the command line) is refused with
the list of keys allowed. A method's own options are typed flags, built from the method's config class for the
chosen ``--method`` / ``--backend``: ``hf-adapter-kit train --method pfeiffer --help`` lists them.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml
from transformers import HfArgumentParser

from ..errors import AdapterKitError, choices, invalid
from ..registry import resolve_backend
from ..training.args import ARGUMENT_CLASSES, MethodArguments
from ..training.validate import check_values


# Fields of the libraries' configs that the kit sets itself, or that describe a saved adapter, not a choice.
_NOT_OPTIONS = {
    "peft_type",
    "task_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
    "method",
    "architecture",
    "modules_to_save",
}


# -- recipes --------------------------------------------------------------------------------------------------------
def recipes_folder():
    """The recipes installed with the package (the repository's top-level ``recipes/``)."""
    return resources.files("hf_adapter_kit.recipe_files")


def list_recipes() -> dict[str, str]:
    """Recipe name -> its first comment line, for every installed ``recipes/<name>/config.yaml``."""
    found = {}
    for folder in sorted(recipes_folder().iterdir(), key=lambda p: p.name):
        file = folder / "config.yaml"
        if folder.is_dir() and file.is_file():
            lines = file.read_text().splitlines()
            found[folder.name] = lines[0].lstrip("# ").strip() if lines else ""
    return found


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe name (``pfeiffer``) or a YAML file path, as a readable file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or len(path.parts) > 1:
        if not path.is_file():
            raise invalid("config", str(name_or_path), "an existing recipe YAML file, or a recipe name.")
        return path
    packaged = recipes_folder() / str(name_or_path) / "config.yaml"
    if not packaged.is_file():
        raise choices("config", str(name_or_path), list_recipes())
    return Path(str(packaged))


def recipe_lines(name_or_path: str | Path) -> dict[str, int]:
    """The line of each key in a recipe (``method_options``' keys too), for messages that point into the file."""
    try:
        root = yaml.compose(recipe_path(name_or_path).read_text())
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    for key, value in getattr(root, "value", []) if isinstance(root, yaml.MappingNode) else []:
        lines[key.value] = key.start_mark.line + 1
        if key.value == "method_options" and isinstance(value, yaml.MappingNode):
            lines.update({inner.value: inner.start_mark.line + 1 for inner, _ in value.value})
    return lines


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """The recipe's keys and values. A ``method_options`` mapping (older recipes) is spread into plain keys."""
    path = recipe_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise AdapterKitError(f"`config`={str(name_or_path)!r} is not valid YAML: {problem}{where}.") from err
    if not isinstance(values, dict):
        raise AdapterKitError(
            f"`config`={str(name_or_path)!r} must hold a mapping of option: value, not {type(values).__name__}."
        )
    options = values.pop("method_options", None) or {}
    if not isinstance(options, dict):
        raise invalid("method_options", options, "a mapping of the method's options, in a recipe.")
    return {**values, **options}


# -- the method's options as typed flags ----------------------------------------------------------------------------
def _flag_type(field: dataclasses.Field, value: Any):
    annotation = str(field.type)
    if isinstance(value, bool):
        return bool
    if isinstance(value, int) and "float" not in annotation:
        return int
    if isinstance(value, int | float):
        return float
    if isinstance(value, str):
        return str
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list[str]
    if value is None and "list[str]" in annotation:
        return list[str]
    return None  # not a value a flag can hold (mappings, callables, nested configs): method_options only


def method_options_class(method: str, backend: str | None, taken: set[str]) -> type:
    """A dataclass with one optional, typed field per option of the method's config on ``backend``.

    Every field defaults to ``None`` (unset: the method's default holds). Names that another argument class already
    uses (``taken``) stay reachable through ``method_options``.
    """
    spec, backend = resolve_backend(method, backend)
    config = spec.configs[backend]()
    made = []
    for field in dataclasses.fields(config):
        if not field.init or field.name in _NOT_OPTIONS or field.name in taken or field.name.startswith("_"):
            continue
        value = getattr(config, field.name, None)
        kind = _flag_type(field, value)
        if kind is None:
            continue
        about = field.metadata.get("help") or f"{spec.name} option"
        metadata = {"help": f"{about} (default for {spec.name}: {value!r})"}
        made.append((field.name, Optional[kind], dataclasses.field(default=None, metadata=metadata)))  # noqa: UP045
    return dataclasses.make_dataclass(f"{spec.name.title()}Options", made)


def options_given(options: Any) -> dict[str, Any]:
    return {
        f.name: getattr(options, f.name) for f in dataclasses.fields(options) if getattr(options, f.name) is not None
    }


# -- the parser ------------------------------------------------------------------------------------------------------
class KitArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` that takes ``--config`` (recipe defaults; the command line wins; unknown keys refused)."""

    def parse(self, argv: list[str], defaults: dict[str, Any] | None = None) -> tuple[tuple, set[str]]:
        """The dataclass instances, and the keys the recipe, ``defaults`` or the command line set."""
        config, argv = split_config(argv)
        values = dict(defaults or {})
        recipe = load_recipe(config) if config is not None else {}
        values.update(recipe)
        actions = {action.dest: action for action in self._actions if action.dest != "help"}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            where = f" in the recipe {str(config)!r}" if set(unknown) & set(recipe) else ""
            raise AdapterKitError(
                f"Unknown argument(s) {unknown}{where}: allowed are {', '.join(sorted(actions))}. "
                "See `hf-adapter-kit train --method <method> --help`."
            )
        for key, value in recipe.items():
            _check_recipe_value(actions[key], value, config)
        self.set_defaults(**values)
        namespace, rest = self.parse_known_args(argv)
        if rest:
            raise AdapterKitError(
                f"Unknown argument(s) {rest}: run `{self.prog} --help` (with --method <method> for its options)."
            )
        given = set(values) | {arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")}
        if any(dtype.__name__ == "KitTrainingArguments" for dtype in self.dataclass_types):
            # before the dataclasses: transformers' TrainingArguments refuses some values with plain ValueErrors
            try:
                check_values({k: v for k, v in vars(namespace).items() if k != "config"}, complete=True)
            except AdapterKitError as err:  # a value the recipe set (and the command line kept): say where it is
                key = re.match(r"`(\w+)`", str(err))
                if key and key.group(1) in recipe and getattr(namespace, key.group(1)) == recipe[key.group(1)]:
                    raise AdapterKitError(f"{_place(config, key.group(1))}: {err}") from err
                raise
        outputs = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            outputs.append(dtype(**{k: v for k, v in vars(namespace).items() if k in names}))
        return tuple(outputs), given & set(actions)


def _check_recipe_value(action: argparse.Action, value: Any, config: str) -> None:
    """A recipe's value must be what the command line would accept for its key; refused naming the file, the line and
    the key (argparse would print its whole usage, then a line that names neither)."""
    expected = None
    if isinstance(value, str) and action.type not in (None, str):
        try:
            value = action.type(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            expected = getattr(action.type, "__name__", str(action.type)).replace("string_to_bool", "true or false")
    if expected is None and action.choices is not None and value not in action.choices:
        expected = f"one of {', '.join(map(str, action.choices))}"
    if expected is not None:
        raise AdapterKitError(
            f"{_place(config, action.dest)}: `{action.dest}`={value!r} is not valid: expected {expected}."
        )


def _place(config: str, key: str) -> str:
    """Where a recipe sets ``key``: the file, and the line when it can be found."""
    line = recipe_lines(config).get(key)
    return f"{recipe_path(config)}" + (f", line {line}" if line else "")


def split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--config X`` / ``--config=X`` out of ``argv``: (X or None, the rest)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    if "--config" in argv and known.config is None:
        raise invalid("config", None, "a recipe name (see `hf-adapter-kit recipes`) or a YAML file.")
    return known.config, rest


def chosen_method(argv: list[str]) -> tuple[str, str | None]:
    """The ``--method`` / ``--backend`` a command line asks for, from its flags or its recipe."""
    config, rest = split_config(argv)
    recipe = load_recipe(config) if config is not None else {}
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default=recipe.get("method", MethodArguments.method))
    pre.add_argument("--backend", default=recipe.get("backend"))
    known, _ = pre.parse_known_args(rest)
    return known.method, known.backend


def train_parser(argv: list[str], prog: str = "hf-adapter-kit train", extra: tuple = ()) -> KitArgumentParser:
    """The parser of ``train`` (and ``demo``, ``compare``): the run's dataclasses and the method's typed options."""
    method, backend = chosen_method(argv)
    classes = (*ARGUMENT_CLASSES, *extra)
    taken = {f.name for cls in classes for f in dataclasses.fields(cls)} | {"config"}
    options = method_options_class(method, backend, taken)
    parser = KitArgumentParser((*classes, options), prog=prog)
    parser.add_argument("--config", default=None, help="A recipe name (`hf-adapter-kit recipes`) or a YAML file.")
    return parser


def parse_train(argv: list[str], defaults: dict[str, Any] | None = None, prog: str = "hf-adapter-kit train", extra=()):
    """``(model_args, data_args, method_args, training_args, *extra), given``: typed options go to method_options."""
    parser = train_parser(argv, prog, extra)
    parsed, given = parser.parse(argv, defaults)
    *arguments, options = parsed
    typed = options_given(options)
    if typed:
        method_args = arguments[2]
        method_args.method_options = {**method_args.options(), **typed}
    given = {key for key in given if key not in {f.name for f in dataclasses.fields(options)}}
    return tuple(arguments), given | ({"method_options"} if typed else set())
