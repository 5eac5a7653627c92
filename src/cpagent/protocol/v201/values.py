"""Device-model values: parsing from TOML and from the wire, validation, rendering.

A value is kept as its *canonical wire string* (``"true"``, ``"300"``,
``"Energy.Active.Import.Register,SoC"``), because that is what GetVariables and NotifyReport
send and what the store will persist; :func:`from_toml` and :func:`from_wire` turn the
config's TOML value and SetVariables' attributeValue into that form after checking it against
the variable's characteristics, or raise :class:`ValueRejected` with a message naming the
component, the variable and why.

A WriteOnly value (BasicAuthPassword) is held in a :class:`Secret`, whose ``repr`` and
``str`` never show it, so that a log line or a traceback cannot leak it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

from cpagent.protocol.v201.catalogue import (
    MAX_SET_VALUE_LENGTH,
    DataType,
    Mutability,
    VariableSpec,
)

_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_DECIMAL: Final = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
_LISTS: Final = (DataType.MEMBER_LIST, DataType.SEQUENCE_LIST)


class ValueRejected(ValueError):
    """A value does not fit its variable; the message names the variable and the reason."""


class Secret:
    """A WriteOnly value: usable by :meth:`reveal`, never shown by ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the one place that needs it (the connection's credentials)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


#: A stored value: its wire string, or a Secret for a WriteOnly variable.
Stored = str | Secret


def _reject(where: str, why: str) -> ValueRejected:
    return ValueRejected(f"{where}: {why}")


def _render_decimal(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "+0") else text


def _check_limits(where: str, spec: VariableSpec, number: float | Decimal) -> None:
    if spec.min_limit is not None and number < Decimal(str(spec.min_limit)):
        raise _reject(where, f"{number} is below the minimum {_num(spec.min_limit)}")
    if spec.max_limit is not None and number > Decimal(str(spec.max_limit)):
        raise _reject(where, f"{number} is above the maximum {_num(spec.max_limit)}")


def _num(limit: float) -> str:
    return str(int(limit)) if float(limit).is_integer() else str(limit)


def _check_length(where: str, spec: VariableSpec, text: str) -> None:
    """maxLimit of a string or list is its maximum length (VariableCharacteristicsType)."""
    if spec.max_limit is not None and len(text) > spec.max_limit:
        raise _reject(where, f"is {len(text)} characters, more than {_num(spec.max_limit)}")
    too_short = spec.min_limit is not None and len(text) < spec.min_limit
    if spec.data_type is DataType.STRING and too_short:
        assert spec.min_limit is not None
        raise _reject(where, f"is {len(text)} characters, fewer than {_num(spec.min_limit)}")


def _check_text(where: str, spec: VariableSpec, text: str) -> str:
    """Validate a wire string against dataType, valuesList and limits; return it canonical."""
    kind = spec.data_type
    if kind is DataType.INTEGER:
        if not _INTEGER.fullmatch(text.strip()):
            raise _reject(where, f"{text!r} is not an integer")
        number = int(text.strip())
        _check_limits(where, spec, number)
        return str(number)
    if kind is DataType.DECIMAL:
        if not _DECIMAL.fullmatch(text.strip()):
            raise _reject(where, f"{text!r} is not a decimal number")
        try:
            value = Decimal(text.strip())
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
            raise _reject(where, f"{text!r} is not a decimal number") from exc
        _check_limits(where, spec, value)
        return _render_decimal(value)
    if kind is DataType.BOOLEAN:
        folded = text.strip().casefold()
        if folded not in ("true", "false"):
            raise _reject(where, f"{text!r} is not true or false")
        return folded
    if kind is DataType.DATETIME:
        return render_datetime(parse_datetime(where, text))
    if kind is DataType.OPTION_LIST:
        if text not in spec.values_list:
            raise _reject(where, f"{text!r} is not one of {','.join(spec.values_list)}")
        return text
    if kind in _LISTS:
        members = [m.strip() for m in text.split(",")] if text.strip() else []
        unknown = [m for m in members if m not in spec.values_list]
        if unknown:
            raise _reject(where, f"{','.join(unknown)} not among {','.join(spec.values_list)}")
        if len(set(members)) != len(members):
            raise _reject(where, "names a member twice")
        canonical = ",".join(members)
        _check_length(where, spec, canonical)
        return canonical
    _check_length(where, spec, text)
    return text


def parse_datetime(where: str, text: str) -> dt.datetime:
    """An RFC 3339 date-time with a zone offset (dateTime); a naive one is refused."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise _reject(where, f"{text!r} is not an RFC 3339 date-time") from exc
    if moment.tzinfo is None:
        raise _reject(where, f"{text!r} has no time zone")
    return moment


def render_datetime(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with the ``Z`` suffix and milliseconds, as every OCPP timestamp."""
    utc = moment.astimezone(dt.UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def from_wire(where: str, spec: VariableSpec, text: str) -> Stored:
    """Validate SetVariables' attributeValue for ``spec``; the canonical stored value.

    ``where`` names the variable in messages (``"OCPPCommCtrlr.HeartbeatInterval"``).
    """
    if len(text) > MAX_SET_VALUE_LENGTH:
        raise _reject(where, f"is longer than {MAX_SET_VALUE_LENGTH} characters")
    canonical = _check_text(where, spec, text)
    return Secret(canonical) if spec.mutability is Mutability.WRITE_ONLY else canonical


def from_toml(where: str, spec: VariableSpec, value: object) -> Stored:
    """Validate a value of the config's ``[ocpp201]`` tables; the canonical stored value.

    TOML gives int, float, bool, str or datetime; each dataType accepts the TOML type that
    means it (an integer accepts an int, not a bool or a float; a decimal an int or float;
    lists are strings written as on the wire). A string is accepted for any type and read
    as the wire would read it, because a value copied from a CSMS report is a string.
    """
    kind = spec.data_type
    if isinstance(value, str):
        return from_wire(where, spec, value)
    if isinstance(value, bool):
        if kind is not DataType.BOOLEAN:
            raise _reject(where, f"expects {kind.value}, got a boolean")
        text = "true" if value else "false"
    elif isinstance(value, int):
        if kind not in (DataType.INTEGER, DataType.DECIMAL):
            raise _reject(where, f"expects {kind.value}, got a number")
        text = str(value)
    elif isinstance(value, float):
        if kind is not DataType.DECIMAL:
            raise _reject(where, f"expects {kind.value}, got {value}")
        if not math.isfinite(value):
            raise _reject(where, f"{value} is not a finite number")
        text = _render_decimal(Decimal(repr(value)))
    elif isinstance(value, dt.datetime):
        if kind is not DataType.DATETIME:
            raise _reject(where, f"expects {kind.value}, got a date-time")
        if value.tzinfo is None:
            raise _reject(where, "a date-time needs a time zone")
        text = render_datetime(value)
    else:
        raise _reject(where, f"expects {kind.value}, got a {type(value).__name__}")
    return from_wire(where, spec, text)


def render(value: Stored) -> str:
    """The wire string of a readable stored value; a Secret is never rendered.

    Raises:
        PermissionError: for a Secret (a WriteOnly value), which no reader may see.
    """
    if isinstance(value, Secret):
        raise PermissionError("a WriteOnly value is never read back")
    return value
