"""Frozen dataclasses ⇄ JSON, strictly: the JSON edge refuses what the TOML edge refuses.

``decode(Type, data, where)`` builds ``Type`` from parsed JSON and raises ``RecordError`` naming the
first unknown field, missing field or wrongly typed value by its path (``rows[3].timing.median_s``).
``encode(value)`` is the inverse: enums become their strings, tuples lists, NaN and infinity
``null`` (JSON has neither, and a NaN figure never passes a tolerance, so null reads the same).

A field whose JSON name is not a Python name (``p99.9_ms``) says so in its metadata:
``field(metadata={"key": "p99.9_ms"})``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union

T = TypeVar("T")


class RecordError(ValueError):
    """A result file that does not have the shape its kind and version promise."""


def key_of(field: dataclasses.Field) -> str:
    return field.metadata.get("key", field.name)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(cls: type[T], data: Any, where: str) -> T:
    """``cls`` from ``data``; every field must be present (a writer always writes all of them)."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: must be an object, got {type(data).__name__}")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    keys = {key_of(f) for f in fields}
    unknown = sorted(set(data) - keys)
    if unknown:
        raise RecordError(f"{where}.{unknown[0]}: unknown field; {cls.__name__} has {', '.join(sorted(keys))}")
    missing = [key_of(f) for f in fields if key_of(f) not in data]
    if missing:
        raise RecordError(f"{where}.{missing[0]}: missing field of {cls.__name__}")
    hints = _hints(cls)  # type: ignore[arg-type]  # a class is hashable
    return cls(**{f.name: decode_value(hints[f.name], data[key_of(f)], f"{where}.{key_of(f)}") for f in fields})


def decode_value(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise RecordError(f"{where}: must not be null")
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return decode_value(option, value, where)
            except RecordError as exc:
                errors.append(str(exc))
        raise RecordError(errors[0] if len(errors) == 1 else f"{where}: matches none of {options}: {value!r}")
    if value is None:
        raise RecordError(f"{where}: must not be null")
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, list):
            raise RecordError(f"{where}: must be a list, got {type(value).__name__}")
        return tuple(decode_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: must be an object, got {type(value).__name__}")
        return {decode_value(args[0], k, f"{where} key"): decode_value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise RecordError(f"{where}: unknown value {value!r}; allowed: {', '.join(map(str, args))}")
        return value
    if hint is Any:
        return value
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in hint)
            raise RecordError(f"{where}: unknown value {value!r}; allowed: {allowed}") from None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if hint is int or hint is bool or hint is str:
        if type(value) is not hint:
            raise RecordError(f"{where}: must be {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"{where}: schema type {hint!r} has no decoder")  # a bug in a record type, not in a file


def encode(value: Any) -> Any:
    """Plain JSON values from a (nested) frozen dataclass."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {key_of(f): encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {encode(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value
