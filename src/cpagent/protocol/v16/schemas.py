"""Validation of OCPP 1.6 payloads against the official JSON schemas shipped with ``ocpp``.

The schemas are compiled to Python with ``fastjsonschema`` (some 25 times faster than the
library's generic validator), which is what lets a long offline queue drain at well over a
thousand messages a second. Errors are the library's OCPPError classes, chosen as the library
chooses them, so a CALLERROR carries the same code either way. Formats (date-time) are not
enforced, as the library does not enforce them: a CSMS answering ``currentTime`` without a
zone is tolerated. The three schemas whose decimals need exact arithmetic go through the
library's Decimal-aware validators, with precision enough for any finite float. The cause
of an error names the field and (shortened) the value, never the whole payload.
"""

from __future__ import annotations

import decimal
import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
from ocpp.exceptions import (
    FormatViolationError,
    NotImplementedError,
    OCPPError,
    ProtocolError,
    TypeConstraintViolationError,
)
from ocpp.messages import MessageType, get_validator

SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"
_DECIMAL_SCHEMAS = {
    (MessageType.Call, "SetChargingProfile"),
    (MessageType.Call, "RemoteStartTransaction"),
    (MessageType.CallResult, "GetCompositeSchedule"),
}
_compiled: dict[tuple[int, str, bool], Callable[[Any], Any]] = {}
_EXACT = decimal.Context(prec=400)
"""Enough digits for ``multipleOf`` 0.1 on any finite float (up to about 1.8e308)."""
_CAUSE_CHARS = 200


def _schema(message_type_id: int, action: str) -> dict[str, Any]:
    suffix = "Response" if message_type_id == MessageType.CallResult else ""
    path = SCHEMA_DIR / f"{action}{suffix}.json"
    try:
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as err:
        raise NotImplementedError(details={"cause": f"no OCPP 1.6 schema for {action}"}) from err
    return schema


def _validator(message_type_id: int, action: str, formats: bool) -> Callable[[Any], Any]:
    key = (message_type_id, action, formats)
    validator = _compiled.get(key)
    if validator is None:
        validator = fastjsonschema.compile(_schema(message_type_id, action), use_formats=formats)
        _compiled[key] = validator
    return validator


def preload() -> int:
    """Read and compile every OCPP 1.6 schema now, as :func:`validate` would on first use of
    each action (``prepare-upgrade``: the ``ocpp`` package's files may be replaced while
    the agent runs on). Returns the number of schema files loaded."""
    count = 0
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        name = path.stem
        kind = MessageType.CallResult if name.endswith("Response") else MessageType.Call
        action = name.removesuffix("Response")
        if (kind, action) in _DECIMAL_SCHEMAS:
            validator = get_validator(kind, action, "1.6", parse_float=decimal.Decimal)
            next(iter(validator.iter_errors({})), None)  # what jsonschema loads on first use
        else:
            _validator(kind, action, False)
        if kind == MessageType.Call:
            date_time_fields(action)
        count += 1
    return count


@functools.cache
def date_time_fields(action: str) -> tuple[str, ...]:
    """Where the request ``action`` holds RFC 3339 date-times by its schema, as dotted
    paths (``a.b``; ``a[].b``: ``b`` of each element of the array ``a``)."""
    schema = _schema(MessageType.Call, action)
    found: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        ref = node.get("$ref", "")
        if ref.startswith("#/definitions/"):
            node = schema["definitions"][ref.removeprefix("#/definitions/")]
        if node.get("format") == "date-time":
            found.append(path)
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}" if path else name)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    return tuple(found)


def _error(rule: Any, cause: str) -> OCPPError:
    """The OCPPError for a broken schema ``rule``, chosen as the ``ocpp`` library does."""
    details = {"cause": cause[:_CAUSE_CHARS]}
    if rule in ("type", "maxLength"):
        return TypeConstraintViolationError(details=details)
    if rule == "required":
        return ProtocolError(details=details)
    return FormatViolationError(details=details)


def _cause(err: fastjsonschema.JsonSchemaValueException) -> str:
    name, value = err.name or "data", err.value
    if err.rule == "maxLength" and isinstance(value, str):
        return f"{name} is too long: {len(value)} characters, at most {err.rule_definition}"
    if err.rule == "enum":
        return f"{name} {value!r:.60} is not one of {err.rule_definition}"
    return err.message


def json_path(parts: Iterable[str | int]) -> str:
    """A place in a payload as text: ``a.b[0].c`` for the keys and indexes ``a, b, 0, c``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _validate_exactly(message_type_id: int, action: str, payload: Any) -> None:
    """Validate with the payload's decimals as Decimal (``multipleOf`` 0.1 is exact)."""
    validator = get_validator(message_type_id, action, "1.6", parse_float=decimal.Decimal)
    try:
        exact = json.loads(json.dumps(payload, allow_nan=False), parse_float=decimal.Decimal)
    except ValueError as err:  # NaN or an infinity: no JSON number
        raise _error("type", f"data: {err}") from None
    with decimal.localcontext(_EXACT):
        error = next(iter(validator.iter_errors(exact)), None)
    if error is not None:
        where = json_path(["data", *error.absolute_path])
        raise _error(error.validator, f"{where}: {error.message}")


def validate(
    message_type_id: int, action: str, payload: dict[str, Any], *, formats: bool = False
) -> None:
    """Raise the OCPPError a schema violation maps to; return quietly when valid.

    ``formats=True`` also enforces the schemas' formats (RFC 3339 date-times): what a strict
    judge of the agent's own messages wants, not what an agent should demand of a CSMS.
    """
    if (message_type_id, action) in _DECIMAL_SCHEMAS:
        _validate_exactly(message_type_id, action, payload)
        return
    try:
        _validator(message_type_id, action, formats)(payload)
    except fastjsonschema.JsonSchemaValueException as err:
        raise _error(err.rule, _cause(err)) from None
