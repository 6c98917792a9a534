"""Command-line flags derived from config dataclasses, so that each default and help text is written once.

`add_flags(parser, Config, ["epochs", "lr"])` adds `--epochs` and `--lr` with the field's type (`Literal`
fields get choices, `list[int]` fields take comma-separated values, `bool` fields get `--x/--no-x`), the
field's trailing `# comment` (or a comment on the line above it) as help and its default shown, not set: a flag
left out is None, so a YAML section or the dataclass's default decides. `flag_values(args)` returns what was
given, nested by section (`{"dit": {"conditioning": "pre"}}`), ready for `config.build`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing

FLAGS_KEY = "_padirec_flags"  # the parser default that records (dest, section path) of generated flags


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """`name -> comment` for fields written `name: type = default  # comment` (the comment on the last line), or
    with the comment alone on the line above (for help too long to trail)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}  # line -> a trailing comment
    alone: dict[int, str] = {}  # line -> a comment with nothing else on its line
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            (alone if token.line.lstrip().startswith("#") else comments)[token.start[0]] = text
    lines: dict[int, str] = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines[node.target.id] = comments.get(node.end_lineno) or alone.get(node.lineno - 1, "")
    return lines


def _unwrap_optional(hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def comma_list(cast):
    def parse(text: str) -> list:
        try:
            return [cast(x.strip()) for x in text.split(",") if x.strip()]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected comma-separated {cast.__name__} values, got {text!r}") from err
    parse.__name__ = f"comma-separated {cast.__name__}"
    return parse


def _default_text(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if value in ("", None):
        return "none"
    return str(value)


def _fields(cls: type) -> dict[str, tuple[object, object, str]]:
    """`name -> (type hint, default, help)` of a dataclass or a pydantic model."""
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        comments = field_comments(cls)
        out = {}
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out[f.name] = (hints[f.name], None if default is dataclasses.MISSING else default, comments.get(f.name, ""))
        return out
    return {name: (info.annotation, info.get_default(call_default_factory=True), info.description or "")
            for name, info in cls.model_fields.items()}  # a pydantic model


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, names: list[str] | None = None,
              *, section: str = "", flags: dict[str, str] | None = None, helps: dict[str, str] | None = None,
              required: tuple[str, ...] = ()) -> None:
    """Flags for the fields `names` of `cls` (all of its plain fields if None).

    `section` nests the values (`"dit"`: `--conditioning` lands in `{"dit": {"conditioning": ...}}`); `flags`
    renames a flag (`{"kind": "--dataset"}`); `helps` replaces a field's help where the command means more."""
    spec = _fields(cls)
    flags, helps = flags or {}, helps or {}
    recorded = parser.get_default(FLAGS_KEY) or []  # an argument group shares its parser's defaults
    for name in names if names is not None else list(spec):
        if name not in spec:
            raise KeyError(f"{cls.__name__} has no field {name!r}")
        hint, default, help_text = spec[name]
        hint = _unwrap_optional(hint)
        if dataclasses.is_dataclass(hint):
            if names is None:
                continue
            raise TypeError(f"{cls.__name__}.{name} is a section: add its fields with section={name!r}")
        flag = flags.get(name, "--" + name.replace("_", "-"))
        dest = f"{section}.{name}" if section else name
        help_text = helps.get(name, help_text)
        kwargs: dict = {"dest": dest, "default": None}
        origin = typing.get_origin(hint)
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is typing.Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif origin is list:
            (item,) = typing.get_args(hint)
            kwargs["type"], kwargs["metavar"] = comma_list(item), "A,B,..."
        elif hint in (int, float, str):
            kwargs["type"], kwargs["metavar"] = hint, flag.lstrip("-").replace("-", "_").upper()
        else:
            raise TypeError(f"no flag type for {cls.__name__}.{name}: {hint}")
        if name in required:
            kwargs["required"] = True
        shown = "" if name in required else f"(default: {_default_text(default)})"
        kwargs["help"] = f"{help_text} {shown}".strip().replace("%", "%%")
        parser.add_argument(flag, **kwargs)
        recorded.append((dest, tuple(dest.split("."))))
    parser.set_defaults(**{FLAGS_KEY: recorded})


def flag_values(args: argparse.Namespace) -> dict:
    """The generated flags that were given, as a nested dict (sections as sub-dicts)."""
    values: dict = {}
    for dest, path in getattr(args, FLAGS_KEY, None) or []:
        value = getattr(args, dest, None)
        if value is None:
            continue
        node = values
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return values
