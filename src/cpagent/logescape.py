"""One log record, one line: text from outside the agent is logged with visible escapes.

An idTag, a vendorId, a URL, a frame, an error message from a server: whatever the CSMS or
another party sends may hold a line break that would forge a log line, a NUL byte, a lone
surrogate that cannot be written as UTF-8, or other characters that reorder or hide what a
reader sees. :data:`ESCAPE_CONTROLS`, a filter on every handler the agent logs through,
rewrites each record before it is formatted:

* the arguments of the message (``record.args``) are shown escaped, whatever the call
  site, while the agent's own format string keeps its line breaks;
* an exception's message is escaped in the traceback, whose own lines stay as they are.

The journal handler escapes its structured fields with :func:`escape_controls` too
(:mod:`cpagent.systemd`). A character is escaped exactly when ``repr`` would escape it
(not :meth:`str.isprintable`): ``\\n``, ``\\r``, ``\\t``, ``\\x00``, ``\\x85``, ``\\u2028``,
``\\udc80``... Backslashes are left alone, so an escape is visible but not unambiguous.
"""

from __future__ import annotations

import io
import logging
import numbers
import traceback
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any

__all__ = ["ESCAPE_CONTROLS", "EscapeControls", "escape_controls"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """``text`` with every character that is not printable written as its escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


class _EscapedText(str):
    """A string argument, escaped for ``%s``; ``%r`` shows the original's repr (which
    escapes the same characters)."""

    original: str

    def __new__(cls, original: str) -> _EscapedText:
        self = super().__new__(cls, escape_controls(original))
        self.original = original
        return self

    def __repr__(self) -> str:
        return repr(self.original)


class _EscapedObject:
    """Any other argument (an exception, a path, None): its ``str`` and ``repr``, escaped."""

    __slots__ = ("_wrapped",)

    def __init__(self, wrapped: object) -> None:
        self._wrapped = wrapped

    def __str__(self) -> str:
        return escape_controls(str(self._wrapped))

    def __repr__(self) -> str:
        return escape_controls(repr(self._wrapped))


def _escaped(arg: object) -> object:
    if isinstance(arg, numbers.Number | _EscapedText | _EscapedObject):
        return arg  # %d, %f and friends need the number itself
    if isinstance(arg, str):
        return arg if arg.isprintable() else _EscapedText(arg)
    return _EscapedObject(arg)


class _OneLineMessages(traceback.TracebackException):
    """A traceback whose exception messages are escaped, each on its own one line."""

    def format_exception_only(self, *args: Any, **kwargs: Any) -> Generator[str, None, None]:
        for chunk in super().format_exception_only(*args, **kwargs):
            yield escape_controls(chunk.removesuffix("\n")) + "\n"


def _format_exception(
    exc_type: type[BaseException] | None,
    value: BaseException | None,
    tb: TracebackType | None,
) -> str:
    """What :meth:`logging.Formatter.formatException` writes, with the messages escaped."""
    head = _OneLineMessages(exc_type, value, tb, compact=True)  # type: ignore[arg-type]
    # The chained exceptions are plain TracebackExceptions: give them the same formatting.
    pending: list[traceback.TracebackException] = [head]
    seen: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        node.__class__ = _OneLineMessages
        pending += [n for n in (node.__cause__, node.__context__) if n is not None]
        pending += getattr(node, "exceptions", None) or []
    out = io.StringIO()
    for chunk in head.format():
        out.write(chunk)
    return out.getvalue().removesuffix("\n")


class EscapeControls(logging.Filter):
    """Escape what a record carries from outside (see the module's docstring); never drops
    a record. Applying it twice changes nothing more."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping):
            record.args = {key: _escaped(value) for key, value in args.items()}
        elif args:
            record.args = tuple(_escaped(arg) for arg in args)
        if not isinstance(record.msg, str):
            record.msg = _escaped(record.msg)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = _format_exception(*record.exc_info)
        return True


ESCAPE_CONTROLS = EscapeControls()
"""The one instance handlers share (``addFilter`` adds it to a handler only once)."""
