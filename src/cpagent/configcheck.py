"""Reading one TOML table with every problem collected, and the value checks it uses.

Shared by the configuration sections (``cpagent.config`` and the hardware
description in ``cpagent.hal.hardware_config``) so every option, wherever it is
declared, is reported the same way: one ``dotted.key: reason`` line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TypeVar


class Invalid(ValueError):
    """Internal: a value failed its check; the message is the reason phrase."""


T = TypeVar("T")
MISSING = object()


class Table:
    """One TOML table being read: hands out checked values, records problems.

    Each getter returns the checked value, or ``None`` when the value is missing
    and required, or invalid; the problem has then been recorded under the
    key's dotted name. :meth:`done` reports every key nobody asked for.
    """

    def __init__(self, data: object, prefix: str, problems: list[str]) -> None:
        self._prefix = prefix
        self._problems = problems
        self._seen: set[str] = set()
        self._data: Mapping[str, object]
        if data is MISSING:
            self._data = {}
        elif isinstance(data, Mapping):
            self._data = data
        else:
            self._data = {}
            problems.append(f"{prefix}: must be a table")

    def path(self, key: str) -> str:
        return f"{self._prefix}.{key}" if self._prefix else key

    def problem(self, key: str, reason: str) -> None:
        self._problems.append(f"{self.path(key)}: {reason}")

    def table(self, key: str) -> Table:
        self._seen.add(key)
        return Table(self._data.get(key, MISSING), self.path(key), self._problems)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present (without marking it as read)."""
        return key in self._data

    def raw(self) -> Mapping[str, object]:
        """The table's entries, all marked as seen; for tables with open-ended keys."""
        self._seen.update(self._data)
        return self._data

    def get(self, key: str, check: Callable[[object], T], default: T | None) -> T | None:
        """Check ``key`` with ``check``; a missing key gives ``default`` (``None`` = required)."""
        self._seen.add(key)
        if key not in self._data:
            if default is None:
                self.problem(key, "required")
            return default
        try:
            return check(self._data[key])
        except Invalid as err:
            self.problem(key, str(err))
            return None

    def optional(self, key: str, check: Callable[[object], T]) -> tuple[bool, T | None]:
        """Check an optional ``key`` without a default: (valid, value or None when absent)."""
        self._seen.add(key)
        if key not in self._data:
            return True, None
        try:
            return True, check(self._data[key])
        except Invalid as err:
            self.problem(key, str(err))
            return False, None

    def done(self) -> None:
        for key in self._data:
            if key not in self._seen:
                self.problem(key, "unknown key")


# -- value checks: each returns the typed value or raises Invalid(reason) ---------------


def flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def text(low: int, high: int) -> Callable[[object], str]:
    reason = f"must be {low} to {high} characters" if low else f"must be at most {high} characters"

    def check(value: object) -> str:
        if not isinstance(value, str) or not low <= len(value) <= high:
            raise Invalid(reason)
        return value

    return check


def nonempty_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("must be a non-empty string")
    return value


def integer(low: int, high: int | None = None) -> Callable[[object], int]:
    reason = (
        f"must be an integer between {low} and {high}"
        if high is not None
        else f"must be an integer >= {low}"
    )

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(reason)
        if value < low or (high is not None and value > high):
            raise Invalid(reason)
        return value

    return check


def as_float(value: object, reason: str) -> float:
    """A finite number; TOML ints are fine for float fields, bools never are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(reason)
    number = float(value)
    if not math.isfinite(number):
        raise Invalid(reason)
    return number


def number_between(low: float, high: float) -> Callable[[object], float]:
    reason = f"must be a number between {low:g} and {high:g}"

    def check(value: object) -> float:
        number = as_float(value, reason)
        if not low <= number <= high:
            raise Invalid(reason)
        return number

    return check


def positive_number(value: object) -> float:
    reason = "must be a number > 0"
    number = as_float(value, reason)
    if number <= 0:
        raise Invalid(reason)
    return number
