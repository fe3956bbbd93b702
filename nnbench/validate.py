"""Strict reading of user input (TOML specs and scenarios): one line that names the bad field."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from nnbench.vocab import is_device


class SpecError(ValueError):
    """A bad field in a spec or scenario; the message names the field and what is allowed."""


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        "TOML files are UTF-8") from None
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


# ---- the field table: one rule per key, shared by scenarios, sweep specs and suites ----------


class Rule(Protocol):
    def __call__(self, value: Any, where: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Num:
    """A finite number in range; an integer where a count is meant."""

    integer: bool = False
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None

    def __call__(self, value: Any, where: str) -> Any:
        v = number(value, where, integer=self.integer, minimum=self.minimum, above=self.above, maximum=self.maximum)
        return v if self.integer else float(v)


@dataclass(frozen=True, slots=True)
class Positives:
    """A non-empty list of numbers > 0 (rates, user counts)."""

    integer: bool = False

    def __call__(self, value: Any, where: str) -> tuple:
        if not isinstance(value, list) or not value:
            raise SpecError(f"{where}: must be a non-empty list of numbers > 0")
        return tuple(Num(self.integer, above=0)(v, where) for v in value)


@dataclass(frozen=True, slots=True)
class Flag:
    def __call__(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where}: must be true or false, got {value!r}")
        return value


@dataclass(frozen=True, slots=True)
class Text:
    def __call__(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise SpecError(f"{where}: must be a string")
        return value


@dataclass(frozen=True, slots=True)
class OneOf:
    choices: tuple[str, ...]

    def __call__(self, value: Any, where: str) -> str:
        return choice(value, self.choices, where)


@dataclass(frozen=True, slots=True)
class ListOf:
    """A non-empty list of ``choices`` (a single string counts as a list of one)."""

    choices: tuple[str, ...]

    def __call__(self, value: Any, where: str) -> tuple[str, ...]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}: must be a non-empty list of {', '.join(self.choices)}")
        return tuple(choice(v, self.choices, where) for v in values)


@dataclass(frozen=True, slots=True)
class Enums:
    """A non-empty list of an enum's values."""

    enum: type[StrEnum]

    def __call__(self, value: Any, where: str) -> tuple:
        return enum_list(value, self.enum, where)


@dataclass(frozen=True, slots=True)
class EnumOf:
    """One of an enum's values, as the enum member."""

    enum: type[StrEnum]

    def __call__(self, value: Any, where: str) -> Any:
        return enum_value(value, self.enum, where)


@dataclass(frozen=True, slots=True)
class Device:
    def __call__(self, value: Any, where: str) -> str:
        if not is_device(value):
            raise SpecError(f"{where}: must be 'cpu' or 'cuda[:N]', got {value!r}")
        return value


@dataclass(frozen=True, slots=True)
class Paths:
    """A list of file paths (strings), possibly empty."""

    def __call__(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise SpecError(f"{where}: must be a list of scenario file paths")
        return tuple(value)


@dataclass(frozen=True, slots=True)
class Maybe:
    """``rule``, or absent when the value is None (a record's spec writes unset fields as null)."""

    rule: Rule

    def __call__(self, value: Any, where: str) -> Any:
        return None if value is None else self.rule(value, where)


def read_table(table: Mapping[str, Any], where: str, rules: Mapping[str, Rule]) -> dict[str, Any]:
    """The table's keys, each read by its rule; an unknown key is refused naming the allowed ones.
    Keys left out keep their defaults (so do keys given as null to a ``Maybe`` rule)."""
    check_keys(table, rules, where)
    prefix = f"{where}." if where else ""
    read = {name: rules[name](value, prefix + name) for name, value in table.items()}
    return {name: value for name, value in read.items() if not (value is None and isinstance(rules[name], Maybe))}


def require_device(device: str, where: str = "--device") -> None:
    """A device this machine has, checked before any run folder or engine: ``cuda`` on a CPU-only
    torch failed deep in the first cell with "Torch not compiled with CUDA enabled"; ``tpu`` ran and
    judged 272 of 272 probes NO_REFERENCE."""
    from nnbench.vocab import is_device

    if not is_device(device):
        raise SpecError(f"{where}: must be 'cpu' or 'cuda[:N]', got {device!r}")
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise SpecError(f"{where} {device}: this machine has no CUDA device (torch {torch.__version__}, {build}); "
                        "choose cpu, or run on a GPU machine")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise SpecError(f"{where} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
