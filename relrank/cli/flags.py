"""Flags generated from declared fields (`relrank.config.setting`): one argparse group per field group, each
flag's help with the value it resolves to, and the resolved configuration printed with each value's source."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from relrank.config import GROUPS
from relrank.configs import Resolved


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _flag_type(kind):
    """The argparse type of a field's annotation `kind`: without Optional; tuples of ints as comma-separated lists."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    return ints if typing.get_origin(kind) is tuple else kind


def add_fields(parser: argparse.ArgumentParser, owners: list[type], shown: dict[str, str] | None = None) -> None:
    """One flag per field of `owners` (dataclasses) that has one, in its group; every flag's default is None
    (unset), so what a flag sets can be told from what is left to the recipe. `shown` gives the help's
    '(default: ...)' text per field; without it, the declared default is shown."""
    declared = [(field, hints[field.name]) for owner in owners
                for hints in [typing.get_type_hints(owner)]  # once per class: it evaluates every annotation
                for field in dataclasses.fields(owner) if field.metadata.get("flag")]
    for group, (title, about) in GROUPS.items():
        members = [(field, kind) for field, kind in declared if field.metadata["group"] == group]
        if members:
            arguments = parser.add_argument_group(title, about or None)
            for field, kind in members:
                arguments.add_argument(*_names(field), **_argument(field, kind, shown))


def _names(field: dataclasses.Field) -> list[str]:
    return [f"--{field.name}", *field.metadata.get("aliases", ())]


def _argument(field: dataclasses.Field, kind, shown: dict[str, str] | None) -> dict:
    default = (shown or {}).get(field.name) or _show(field.default)
    if default in ("", "none"):
        default = field.metadata.get("unset", "")
    text = field.metadata["help"] + (f" (default: {default})" if default else "")
    kwargs = dict(dest=field.name, default=None, help=text.replace("%", "%%"))
    if field.metadata.get("choices"):
        kwargs["choices"] = field.metadata["choices"]
    if isinstance(field.default, bool):
        return dict(kwargs, action="store_const", const=True)
    return dict(kwargs, type=_flag_type(kind), metavar=None if "choices" in kwargs else field.name.upper())


def _show(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def resolved_defaults(resolved: Resolved) -> dict[str, str]:
    """'(default: ...)' texts of the Config's flags: the resolved value, and its source unless Config's default."""
    shown = {}
    for name, value in resolved.config.flat().items():
        source = resolved.sources[name]
        text = _show(value) or "none"
        shown[name.removeprefix("spec.")] = (text if source == "default" else f"{text}, as given" if source == "flag"
                                             else f"{text}, from {source}")
    return shown


def describe(resolved: Resolved, adapts: bool) -> str:
    """Every field of the resolved Config, one per line: name, value and where it came from."""
    flat = resolved.config.flat()
    width = max(map(len, flat))
    lines = [f"{name:{width}s}  {_show(value) or repr(value):30s}  {resolved.sources[name]}"
             for name, value in flat.items()]
    header = f"{'field':{width}s}  {'value':30s}  source"
    note = ([f"recipe {resolved.config.recipe} adapts to the training pairs: values shown are those before the data "
             f"is opened (training prints the settings it chose)"] if adapts else [])
    return "\n".join([header, *lines, *note])
