"""What the CSMS sends, bounded and checked before the charge point acts on it.

Two stages, on either side of the schema validation (:mod:`.schemas`):

* :func:`read_frame` turns a websocket message into an OCPP-J message. Its size and its
  nesting depth are bounded by a cheap scan before it is parsed, so no frame, however
  large or deep, can exhaust the parser or the stack; it must be JSON as RFC 8259 defines
  it, and carry a message id that is a string (OCPP-J 1.6 §4.1.3).
* :func:`check_request` takes a CALL whose payload passed its schema and refuses what a
  handler could not act on, with the OCPP-J code that names the problem: a handler only
  ever sees values it can use.

Both OCPP versions share them; each passes where its schemas hold date-times.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC
from itertools import accumulate
from typing import Any

from ocpp.exceptions import (
    FormatViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
)

from cpagent.protocol.ocppj import Call, CallError, CallResult, MessageType
from cpagent.protocol.schemas import json_path
from cpagent.timeutil import parse_iso

MAX_FRAME_CHARS = 2**20
"""The longest frame parsed. Ample for OCPP: the largest requests (a SendLocalList of
SendLocalListMaxLength entries, a certificate chain) stay well below it."""
MAX_DEPTH = 32
"""The deepest nesting of arrays and objects parsed; OCPP messages need about 10."""
MAX_ID_CHARS = 36
"""OCPP-J 1.6 §4.1.3, 2.0.1 Part 4 §4.1.3: a message id is a string of at most 36
characters."""
NUMBER_LIMIT = 2**31
"""No number in a CSMS request may reach this magnitude: OCPP's integers are 32-bit, and
no current, power or count of seconds comes near it. A larger one is refused rather than
handed to code that would overflow on it."""


class FrameError(Exception):
    """A frame the charge point does not take. ``reply_to`` is the id of the CALL to answer
    with ``error``; None when there is none to answer (the frame is ignored)."""

    def __init__(self, error: OCPPError, reply_to: str | None) -> None:
        super().__init__(error.description)
        self.error = error
        self.reply_to = reply_to


# --------------------------------------------------------------------------- frames

_CALL_HEAD = re.compile(r'\s*\[\s*2\s*,\s*("(?:[^"\\\x00-\x1f]|\\.){0,200}")\s*,', re.DOTALL)
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_NOT_A_BRACKET = re.compile(r'"[^"]*"|[^\[\]{}"]+')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1, '"': 0}


def _call_id(text: str) -> str | None:
    """The id of the CALL ``text`` starts with, read without parsing the rest; None when
    it is no CALL or its id is no string."""
    match = _CALL_HEAD.match(text)
    if match is None:
        return None
    try:
        unique_id = json.loads(match.group(1))
    except ValueError:
        return None
    return unique_id if isinstance(unique_id, str) else None


_NESTING = str.maketrans(
    {chr(c): "(" if chr(c) in "[{" else ")" if chr(c) in "]}" else None for c in range(128)}
    | {'"': '"'}
)
"""An ASCII text's brackets as ``(`` and ``)``, its quotes kept, all else dropped."""


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than :data:`MAX_DEPTH` in ``text`` (JSON or
    not), found in linear time: escapes, then strings and everything else but brackets are
    dropped, and the brackets counted. A text with fewer opening brackets is not scanned.

    Most frames are answered sooner, and alike: ASCII JSON whose strings hold no bracket
    (its quotes, once all else is dropped, come in adjacent pairs), with brackets that
    close within :data:`MAX_DEPTH` rounds of dropping the innermost pairs, is no deeper
    than that. Every other text is counted as described."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    if text.isascii():
        marks = _ESCAPE.sub("", text).translate(_NESTING).replace('""', "")
        if '"' not in marks:
            for _ in range(MAX_DEPTH):
                marks = marks.replace("()", "")
                if not marks:
                    return False
    return _nesting(text) > MAX_DEPTH


def _nesting(text: str) -> int:
    """How deep the brackets of ``text`` nest outside its strings (:func:`_too_deep`)."""
    brackets = _NOT_A_BRACKET.sub("", _ESCAPE.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is no JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond what a 64-bit float holds")
    return value


def _malformed(description: str, reply_to: str | None) -> FrameError:
    return FrameError(FormatViolationError(description=description), reply_to)


def read_frame(raw: str | bytes) -> Call | CallResult | CallError:
    """The OCPP-J message in ``raw``, or :class:`FrameError`.

    A frame longer than :data:`MAX_FRAME_CHARS`, nested deeper than :data:`MAX_DEPTH`, or
    not JSON (NaN and infinities are not JSON numbers, RFC 8259 §6) is a FormationViolation,
    answered when it starts like a CALL with a string id. A message whose id is no string
    cannot be answered (OCPP-J answers with the CALL's id) and is ignored; a CALL whose id
    is longer than :data:`MAX_ID_CHARS` is refused, not executed.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("a binary frame that is no UTF-8 text", None) from None
    if len(raw) > MAX_FRAME_CHARS:
        raise _malformed(
            f"a frame of {len(raw)} characters; at most {MAX_FRAME_CHARS} are read",
            _call_id(raw[:300]),
        )
    if _too_deep(raw):
        raise _malformed(f"nested deeper than {MAX_DEPTH} levels", _call_id(raw))
    try:
        frame = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except ValueError as err:
        raise _malformed(f"not JSON: {str(err)[:100]}", _call_id(raw)) from None
    return _message(frame)


def _message(frame: Any) -> Call | CallResult | CallError:
    if not isinstance(frame, list) or not frame:
        raise _malformed("not an OCPP-J message (a JSON array)", None)
    kind = frame[0]
    unique_id = frame[1] if len(frame) > 1 else None
    if not isinstance(unique_id, str):
        raise _malformed(
            f"no usable message id ({json.dumps(unique_id)[:40]}): OCPP-J wants a string",
            None,
        )
    sizes = {MessageType.Call: 4, MessageType.CallResult: 3, MessageType.CallError: 5}
    if isinstance(kind, bool) or kind not in sizes:
        raise _malformed(f"message type {json.dumps(kind)[:20]} is not 2, 3 or 4", None)
    reply_to = unique_id if kind == MessageType.Call else None
    if len(frame) != sizes[kind]:
        raise FrameError(
            ProtocolError(description=f"{len(frame)} elements, not {sizes[kind]}"), reply_to
        )
    if kind == MessageType.Call:
        if len(unique_id) > MAX_ID_CHARS:
            raise _malformed(f"a message id longer than {MAX_ID_CHARS} characters", reply_to)
        return Call(unique_id, frame[2], frame[3])
    if kind == MessageType.CallResult:
        return CallResult(unique_id, frame[2])
    return CallError(unique_id, frame[2], frame[3], frame[4])


# ------------------------------------------------------------------------- requests


def check_request(action: str, payload: dict[str, Any], date_time_fields: tuple[str, ...]) -> None:
    """Raise the CALLERROR for a request, valid by its schema, that a handler could not act
    on. PropertyConstraintViolation: a number of :data:`NUMBER_LIMIT` or more in magnitude,
    text that is not Unicode (a lone surrogate, which JSON's ``\\u`` escapes can spell), a
    date-time that UTC cannot express (``0001-01-01T00:00:00+01:00``). FormatViolation
    (FormationViolation in 1.6): a date-time, at one of ``date_time_fields``, that is not
    RFC 3339."""
    _check_values(payload)
    for field in date_time_fields:
        for path, value in _at(payload, field):
            _check_date_time(path, value)


def _check_date_time(path: str, value: str) -> None:
    try:
        when = parse_iso(value)
    except ValueError:
        raise FormatViolationError(
            description=f"{path} {value!r:.60} is not an RFC 3339 date-time"
        ) from None
    try:
        when.astimezone(UTC)
    except OverflowError:
        raise PropertyConstraintViolationError(
            description=f"{path} {value!r:.60} is out of range: no date-time in UTC"
        ) from None


def _at(payload: Any, field: str) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every value ``field`` names in ``payload`` (absent: none)."""
    found: list[tuple[str, Any]] = [("", payload)]
    for part in field.split("."):
        name, each = part.removesuffix("[]"), part.endswith("[]")
        step = []
        for path, value in found:
            if not isinstance(value, dict) or value.get(name) is None:
                continue
            path = f"{path}.{name}" if path else name
            if each:
                step += [(f"{path}[{i}]", item) for i, item in enumerate(value[name])]
            else:
                step.append((path, value[name]))
        found = step
    yield from found


def _check_values(payload: dict[str, Any]) -> None:
    found = _unusable(payload)
    if found is not None:
        path, why = found
        raise PropertyConstraintViolationError(description=f"{json_path(path)} {why}")


def _unusable(value: Any) -> tuple[list[str | int], str] | None:
    """Where in ``value`` (a path) there is a number or a text no handler can use, and why."""
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        why = _unusable_leaf(value)
        return None if why is None else ([], why)
    for key, item in items:
        if type(item) is str and item.isascii():  # most of a payload, checked in O(1)
            continue
        found = _unusable(item)
        if found is not None:
            found[0].insert(0, key)
            return found
    return None


def _unusable_leaf(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if abs(value) >= NUMBER_LIMIT:
            text = repr(value)
            shown = text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"
            return f"{shown} is out of range (at most {NUMBER_LIMIT - 1} in magnitude)"
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            return f"is no Unicode text: a lone surrogate at character {err.start}"
    return None
