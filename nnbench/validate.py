"""Strict reading of user input (TOML specs and scenarios): one line that names the bad field."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any


class SpecError(ValueError):
    """A bad field in a spec or scenario; the message names the field and what is allowed."""


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = set(allowed)
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise SpecError(f"{prefix}{unknown[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")


def enum_list(value: Any, enum: type[StrEnum], field: str) -> tuple:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise SpecError(f"{field}: must be a non-empty list of {', '.join(m.value for m in enum)}")
    return tuple(enum_value(v, enum, field) for v in items)


def enum_value(value: Any, enum: type[StrEnum], field: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise SpecError(f"{field}: unknown value {value!r}; allowed: {', '.join(m.value for m in enum)}") from None


def number(value: Any, field: str, *, integer: bool = False, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None) -> Any:
    """A finite number in range. TOML reads ``inf`` and ``nan`` as floats: a rate of ``inf`` once
    ran until the process held 7.9 GB, so neither is ever a valid field value."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise SpecError(f"{field}: must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{field}: must be a finite number, got {value!r}")
    if maximum is not None and value > maximum:
        raise SpecError(f"{field}: must be <= {maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise SpecError(f"{field}: must be >= {minimum}, got {value}")
    if above is not None and value <= above:
        raise SpecError(f"{field}: must be > {above}, got {value}")
    return value


def choice(value: Any, allowed: Iterable[str], field: str) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise SpecError(f"{field}: unknown value {value!r}; allowed: {', '.join(allowed)}")
    return value


def subtable(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``raw[key]`` as a table (empty if absent), refusing any other type by name."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{key}: must be a table, got {type(value).__name__}")
    return value


def file_name_part(value: Any, field: str) -> str:
    """A name that goes into result file names: letters, digits, '-' or '_'."""
    if not isinstance(value, str) or not value.replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"{field}: must be letters, digits, '-' or '_', got {value!r}")
    return value
