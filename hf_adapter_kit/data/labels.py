"""Labels of local files and Hub datasets: which classes a task has, in which order, and each example's class id.

- Every label is first turned into its name: a string stays as it is; an integer is its decimal form (``3`` ->
  ``"3"``), or, for a Hub dataset whose label column is a ``ClassLabel``, the name it has there.
- The classes are the distinct names present in the train split, sorted (integers by value: ``-1, 2, 10``), so a
  ``stars`` column holding 1, 3 and 5 gives three classes named ``"1"``, ``"3"``, ``"5"`` with the ids 0, 1, 2.
  A Hub ``ClassLabel`` keeps its own names and order.
- ``label_names`` (``--label_names``) names the classes in the order of their ids instead; it must list every label
  of the train split and may list more (classes that train lacks but validation or test may hold).
- A label in validation or test that is not a class is an error naming the label, the split and the classes, raised
  while loading, before anything is trained or written.

Labels must be strings or integers (floats with no fraction, as pandas reads integer columns with gaps, count as
integers); the train split may not mix the two, and must hold at least two classes. Token classification (CoNLL
files) applies the same rules to tags.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import AdapterKitError, invalid


def check_label_names(label_names: Any) -> list[str] | None:
    """``label_names`` as a list of distinct non-empty strings, or None; anything else is an error naming it."""
    if label_names is None:
        return None
    allowed = (
        "a list of distinct, non-empty class names (strings, e.g. ['1', '3', '5'] for integer labels), in id order."
    )
    if isinstance(label_names, str) or not isinstance(label_names, Sequence) or not label_names:
        raise invalid("label_names", label_names, allowed)
    names = list(label_names)
    if not all(isinstance(name, str) and name.strip() for name in names) or len(set(names)) != len(names):
        raise invalid("label_names", label_names, allowed)
    return names


Where = Callable[[int], str]  # the position of a label (row, or sentence and token) in a split, for errors


def label_values(values: Sequence[Any], where: Where) -> list[str | int]:
    """The labels as strings or ints; anything else is an error saying where it is (``where(i)``)."""
    out = []
    for index, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
            continue
        held = f"{where(index)} holds {value!r}"
        if value is None:
            raise AdapterKitError(f"{held}: a missing label; every row needs a string or integer label.")
        if isinstance(value, bool | np.bool_):
            raise AdapterKitError(f"{held}; booleans are not labels: use strings or integers.")
        if isinstance(value, float | np.floating):
            if math.isnan(value) or not float(value).is_integer():
                raise AdapterKitError(
                    f"{held}; labels must be class names or integers (regression is not supported yet)."
                )
        elif not isinstance(value, int | np.integer):
            raise AdapterKitError(f"{held} ({type(value).__name__}); labels must be strings or integers.")
        out.append(int(value))
    return out


def label_name(value: str | int, class_names: Sequence[str] | None, where: str) -> str:
    """The class name of a checked label value (see the module docstring)."""
    if isinstance(value, str):
        return value
    if class_names is None:
        return str(value)
    if not 0 <= value < len(class_names):
        raise AdapterKitError(
            f"{where} holds {value}, which is not a class id of the dataset's ClassLabel (0..{len(class_names) - 1}: "
            f"{list(class_names)})."
        )
    return class_names[value]


def _names(values: Sequence[str | int], where: Where, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:  # the common case, without a Python call per label
        return [value if isinstance(value, str) else str(value) for value in values]
    return [label_name(value, class_names, where(i)) for i, value in enumerate(values)]


def class_list(
    values: Sequence[str | int],
    where: Where,
    class_names: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
) -> list[str]:
    """The classes of a task, in id order, from the checked label values of its train split."""
    if not values:
        raise AdapterKitError("The train split holds no labels.")
    kind = type(values[0])
    mixed = next((i for i, value in enumerate(values) if type(value) is not kind), None)
    if mixed is not None:
        raise AdapterKitError(
            f"The train labels mix types: {where(0)} holds {values[0]!r}, {where(mixed)} holds {values[mixed]!r}; "
            "use all strings or all integers."
        )
    names = _names(values, where, class_names)
    if len(set(names)) < 2:
        raise AdapterKitError(
            f"The train split's labels are all {names[0]!r} (`label_column`): a classifier learns nothing from one "
            "class, and its accuracy would read 1.0. Check the column, or give training data of at least two classes."
        )
    if label_names is not None:
        allowed = set(label_names)
        missing = next((i for i, name in enumerate(names) if name not in allowed), None)
        if missing is not None:
            present = sorted(set(names), key=_order(values, names))
            raise AdapterKitError(
                f"`label_names`={list(label_names)} lacks the label {names[missing]!r} ({where(missing)}); list "
                f"every label of the train split: {present}."
            )
        return list(label_names)
    if class_names is not None and kind is int:
        return list(class_names)
    return sorted(set(names), key=_order(values, names))


def _order(values: Sequence[str | int], names: Sequence[str]):
    """Sort key of class names: integers by value, strings as strings."""
    if values and isinstance(values[0], int):
        by_name = dict(zip(names, values, strict=True))
        return lambda name: by_name[name]
    return lambda name: name


def encode(
    values: Sequence[str | int],
    where: Where,
    classes: Sequence[str],
    class_names: Sequence[str] | None,
    split: str,
    given: bool,
) -> list[int]:
    """Class ids of checked label values; a label that is not a class is an error naming it, the split and the
    classes."""
    ids = {name: i for i, name in enumerate(classes)}
    names = _names(values, where, class_names)
    unknown = next((i for i, name in enumerate(names) if name not in ids), None)
    if unknown is not None:
        source = "`label_names`" if given else "the train split"
        raise AdapterKitError(
            f"{where(unknown)} holds the label {values[unknown]!r}, which is not a class of this task: the {split} "
            f"split may only hold the labels of {source}: {list(classes)}."
            + ("" if given else " Name every class with `label_names` to allow labels that train lacks.")
        )
    return [ids[name] for name in names]
