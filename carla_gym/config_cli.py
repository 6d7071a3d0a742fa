"""Command-line flags derived from config dataclasses, so a new option is one field, not four edits.

Modelled on simple-parsing, tyro and transformers' HfArgumentParser, on argparse alone:

- `ConfigFlags` adds one flag per field: the name from the field (`extra_towns` -> `--extra-towns`, with an
  optional prefix or rename), the type from the annotation (int, float, str, bool as `--x / --no-x`,
  fixed-length tuples, `X | None`), the help from `field(metadata={"help": ...})` unless overridden.
- `PerStageFlags` does the same for a dataclass there is one of per stage: each flag takes one value per
  stage (`--epochs 7,11,4,4,2`), `stage=value` pairs (`--bptt drive=20`) or a single value.
- `from_dict` builds a dataclass back from its `dataclasses.asdict` JSON (a saved config), types checked.

A flag that is not given is absent from the parsed namespace (argparse.SUPPRESS), so whatever the values
land on (a preset, a saved config) keeps its own values for everything the command line leaves alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .cli import StoreTuple

BOOL_WORDS: dict[str, bool] = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, (annotation, False) otherwise."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def parse_value(text: str, annotation: Any) -> Any:
    """`text` as a value of `annotation`: int, float, str, a bool word (true/false, yes/no, on/off, 1/0), or
    `none` for an `X | None` field. Raises ValueError naming what was expected."""
    base, optional = unwrap_optional(annotation)
    word = text.strip()
    if optional and word.lower() == "none":
        return None
    if base is bool:
        if word.lower() not in BOOL_WORDS:
            raise ValueError(f"expected true or false, got {text!r}")
        return BOOL_WORDS[word.lower()]
    if base in (int, float, str):
        try:
            return base(word)
        except ValueError:
            raise ValueError(f"expected {'a number' if base is float else 'an integer'}, got {text!r}") from None
    raise TypeError(f"no command-line form for {annotation!r}")


def field_help(cls: type, name: str, override: Mapping[str, str] | None = None) -> str:
    """A field's help text: `override[name]` when given, else its `metadata["help"]` ('' when it has none)."""
    meta: Mapping[str, Any] = next((f.metadata for f in dataclasses.fields(cls) if f.name == name), {})
    return str((override or {}).get(name) or meta.get("help", ""))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return " ".join(map(_shown, value))
    return str(value)


def _with_default(help_text: str, default: str | None) -> str:
    text = help_text.replace("%", "%%")
    return f"{text} (default: {default})" if default else text


@dataclasses.dataclass(frozen=True)
class Flag:
    """One field's flag: the field it sets, its option string and the namespace attribute it fills."""

    field: str
    option: str
    dest: str
    annotation: Any


class ConfigFlags:
    """One flag per field of dataclass `cls` (less `skip`), named `--{prefix}{field}` with `_` as `-` unless
    `rename` gives the option string. `defaults` (an instance, optional) shows its values in the help after
    `default_label` (e.g. "the preset's; lite"); `help` overrides the fields' own help texts;
    `metavars` names the values (a tuple field takes one name per element)."""

    def __init__(
        self,
        cls: type,
        *,
        prefix: str = "",
        rename: Mapping[str, str] | None = None,
        skip: Iterable[str] = (),
        help: Mapping[str, str] | None = None,
        metavars: Mapping[str, str | tuple[str, ...]] | None = None,
        defaults: Any = None,
        default_label: str = "",
    ) -> None:
        self.cls, self.help, self.metavars = cls, dict(help or {}), dict(metavars or {})
        self.defaults, self.default_label = defaults, default_label
        hints = typing.get_type_hints(cls)
        rename, skipped = dict(rename or {}), set(skip)
        self.flags = [
            Flag(f.name, option, option.lstrip("-").replace("-", "_"), hints[f.name])
            for f in dataclasses.fields(cls)
            if f.name not in skipped
            for option in [rename.get(f.name, f"--{prefix}{f.name.replace('_', '-')}")]
        ]

    def option(self, field: str) -> str:
        """The option string of `field`'s flag."""
        return next(f.option for f in self.flags if f.field == field)

    def _default(self, field: str) -> str | None:
        if self.defaults is None:
            return None
        return f"{self.default_label}{' ' if self.default_label else ''}{_shown(getattr(self.defaults, field))}"

    def add_to(
        self, parser: argparse.ArgumentParser | argparse._ArgumentGroup, only: Iterable[str] | None = None
    ) -> None:
        """Add the flags (of the fields `only`, when given) to `parser` or an argument group, each defaulting to
        "not given"."""
        chosen = None if only is None else set(only)
        for f in self.flags:
            if chosen is not None and f.field not in chosen:
                continue
            base, _ = unwrap_optional(f.annotation)
            text = _with_default(field_help(self.cls, f.field, self.help), self._default(f.field))
            kwargs: dict[str, Any] = {"dest": f.dest, "default": argparse.SUPPRESS, "help": text}
            if f.field in self.metavars:
                kwargs["metavar"] = self.metavars[f.field]
            elif base in (int, float):
                kwargs["metavar"] = "N"
            if base is bool:
                parser.add_argument(f.option, action=argparse.BooleanOptionalAction, **kwargs)
            elif typing.get_origin(base) is tuple:
                elements = typing.get_args(base)
                if len(set(elements)) != 1 or Ellipsis in elements:
                    raise TypeError(f"{self.cls.__name__}.{f.field}: only fixed-length tuples of one type")
                parser.add_argument(
                    f.option, nargs=len(elements), type=_converter(elements[0]), action=StoreTuple, **kwargs
                )
            else:
                parser.add_argument(f.option, type=_converter(f.annotation), **kwargs)

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """The fields whose flags the command line gave, with their values."""
        return {f.field: getattr(args, f.dest) for f in self.flags if hasattr(args, f.dest)}


def _converter(annotation: Any) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse_value(text, annotation)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


@dataclasses.dataclass(frozen=True)
class PerStage:
    """A per-stage flag's value as given: `by_stage` (stage name -> value), or one value for the stages the
    flag's single value goes to (`single`); `text` is the command line's spelling, for messages."""

    text: str
    by_stage: dict[str, Any] | None = None
    single: Any = None

    def value_for(self, stage: str, takes_single: bool) -> tuple[bool, Any]:
        """(True, value) when this sets `stage` (`takes_single`: whether a single value goes to it)."""
        if self.by_stage is not None:
            return stage in self.by_stage, self.by_stage.get(stage)
        return takes_single, self.single


class PerStageFlags:
    """One flag per field of `cls`, a dataclass there is one of per stage (in the order `stages`). Each flag
    takes one value per stage, comma-separated in that order (`--epochs 7,11,4,4,2`), or `stage=value` pairs
    (`--bptt drive=20`, `--lr ego=1e-4,seq=3e-5`), or a single value for every stage; `single` names the stages a
    field's single value goes to when not every stage (`--bptt 20`: the memory stages). Options, help and
    defaults as in `ConfigFlags`; `defaults` is one instance per stage."""

    def __init__(
        self,
        cls: type,
        stages: Sequence[str],
        *,
        rename: Mapping[str, str] | None = None,
        skip: Iterable[str] = (),
        help: Mapping[str, str] | None = None,
        single: Mapping[str, str] | None = None,
        defaults: Sequence[Any] = (),
        default_label: str = "",
    ) -> None:
        self.stages, self.single = tuple(stages), dict(single or {})
        self.fields = ConfigFlags(cls, rename=rename, skip=skip, help=help)
        self.defaults, self.default_label = list(defaults), default_label

    @property
    def flags(self) -> list[Flag]:
        return self.fields.flags

    def option(self, field: str) -> str:
        return self.fields.option(field)

    def parse(self, text: str, flag: Flag) -> PerStage:
        """`text` as a `PerStage` value of `flag`; argparse.ArgumentTypeError for bad text."""
        parts = [p.strip() for p in text.split(",")]
        try:
            if any("=" in p for p in parts):
                by_stage = {}
                for part in parts:
                    name, sep, value = (s.strip() for s in part.partition("="))
                    if not sep:
                        raise ValueError(f"{part!r} is not stage=value")
                    if name not in self.stages:
                        raise ValueError(f"unknown stage {name!r} (known: {', '.join(self.stages)})")
                    by_stage[name] = parse_value(value, flag.annotation)
                return PerStage(text, by_stage=by_stage)
            if len(parts) == len(self.stages):
                values = [parse_value(p, flag.annotation) for p in parts]
                return PerStage(text, by_stage=dict(zip(self.stages, values, strict=True)))
            if len(parts) == 1:
                return PerStage(text, single=parse_value(parts[0], flag.annotation))
            raise ValueError(f"got {len(parts)} values")
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                f"{flag.option} takes one value, {len(self.stages)} comma-separated values ({','.join(self.stages)}) "
                f"or stage=value pairs: {e} in {text!r}"
            ) from None

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        for f in self.flags:
            text = field_help(self.fields.cls, f.field, self.fields.help)
            if f.field in self.single:
                text += f"; a single value sets {self.single[f.field]}"
            shown = ",".join(_shown(getattr(d, f.field)).lower() for d in self.defaults) if self.defaults else None
            default = f"{self.default_label}{' ' if self.default_label else ''}{shown}" if shown else None
            base, optional = unwrap_optional(f.annotation)
            kind = "BOOL" if base is bool else "N" if base in (int, float) else "X"
            parser.add_argument(
                f.option,
                dest=f.dest,
                default=argparse.SUPPRESS,
                type=functools.partial(self.parse, flag=f),
                metavar=f"{kind}[,{kind}...]" if not optional else f"{kind}|none[,...]",
                help=_with_default(text, default),
            )

    def given(self, args: argparse.Namespace) -> dict[str, PerStage]:
        """The fields whose flags the command line gave, with their `PerStage` values."""
        return self.fields.given(args)


def from_dict(cls: type, data: Any, where: str, unknown: list[str] | None = None) -> Any:
    """An instance of dataclass `cls` from `data` (its `dataclasses.asdict`, read back from JSON): nested
    dataclasses, lists and tuples rebuilt, each value's type checked. A key `cls` lacks is collected in
    `unknown` when given (a setting removed since the file was written), else an error; a field the data
    lacks keeps its default. Raises ValueError naming the place (`where`, e.g. the file and key) and value."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    extra = [k for k in data if k not in names]
    if extra and unknown is None:
        raise ValueError(f"{where}.{extra[0]}: no such setting (known: {', '.join(sorted(names))})")
    (unknown if unknown is not None else []).extend(f"{where}.{k}" for k in extra)
    values = {k: _from_json(hints[k], v, f"{where}.{k}", unknown) for k, v in data.items() if k in names}
    try:
        return cls(**values)
    except TypeError as e:  # a required field missing
        raise ValueError(f"{where}: {e}") from None


def _from_json(annotation: Any, value: Any, where: str, unknown: list[str] | None) -> Any:
    base, optional = unwrap_optional(annotation)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if value is None and optional:
        return None
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        return from_dict(base, value, where, unknown)
    if origin is list and isinstance(value, list):
        return [_from_json(args[0], v, f"{where}[{i}]", unknown) for i, v in enumerate(value)]
    if origin is tuple and isinstance(value, list | tuple) and len(value) == len(args):
        return tuple(
            _from_json(a, v, f"{where}[{i}]", unknown) for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if base is float and type(value) in (int, float):
        return float(value)
    if base in (int, str, bool) and type(value) is base:
        return value
    raise ValueError(f"{where}: expected {getattr(base, '__name__', base)}, got {value!r}")
