"""The kinds of field a typed config is made of, and turning plain data into those dataclasses.

Numbers carry the range a run can use (``bounded``); fields that name a file or folder are marked
(``path_field``: the web app confines them); ``build_dataclass`` rejects unknown keys and wrong types,
naming the field (``train.crop_size: must be ...``). ``duda_engine.config`` defines the fields of a run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config value is wrong; ``field`` is its dotted path (``train.crop_size``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)



@dataclass(frozen=True)
class Range:
    """The values a number may take, both ends included unless open."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, kind: type) -> str:
        if kind is int:
            return f"{self.low}..{self.high}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def bounded(default: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    """A number, or a list of numbers (nested lists too), each of which must lie in the range."""
    metadata = {"range": Range(low, high, low_open, high_open)}
    if isinstance(default, list):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def path_field(default: str = "") -> Any:
    """A path on the machine that runs the engine (a list of paths for a list field). The CLI takes any;
    the web app never lets a user name one (``webapp.runs.confine``)."""
    return field(default=default, metadata={"path": True})


def path_list_field() -> Any:
    return field(default_factory=list, metadata={"path": True})


def _shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python converts to text
        return "an integer too large to show"
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a mapping, got {type(value).__name__}")
        return build_dataclass(annotation, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"must be a list, got {type(value).__name__}")
        (item_type,) = typing.get_args(annotation)[:1] or (Any,)
        return [_convert(v, item_type, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unions are not supported in config fields ({path})")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {_shown(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"must be an integer, got {_shown(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {_shown(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(path, f"must be a finite number, got {_shown(value)}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {_shown(value)}")
        if any(unicodedata.category(char) == "Cc" for char in value):  # NUL, tab, newline, escape, ...
            raise ConfigError(path, "must not contain control characters (every config string is one line)")
        return value
    return value


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """``cls`` from a mapping; raises ConfigError naming the first unknown key or wrong value."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(where, f"unknown key (known: {', '.join(sorted(known))})")
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _convert(value, hints[key], where)
    return cls(**kwargs)


@dataclass(frozen=True)
class Leaf:
    """One field of the config that holds a value rather than a section."""

    name: str  # dotted: "train.crop_size"
    annotation: Any  # int, str, list[int], list[list[int]], ...
    field: dataclasses.Field

    @property
    def scalar(self) -> Any:
        """The type of each value: ``int`` for ``list[list[int]]``."""
        kind = self.annotation
        while typing.get_origin(kind) in (list, tuple):
            kind = typing.get_args(kind)[0]
        return kind

    @property
    def range(self) -> Range | None:
        return self.field.metadata.get("range")

    @property
    def is_path(self) -> bool:
        return bool(self.field.metadata.get("path"))
