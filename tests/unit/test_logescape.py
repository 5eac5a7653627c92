"""What a log line shows of text from outside: escapes, never a raw control character."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpagent.logescape import ESCAPE_CONTROLS, escape_controls


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing ``message`` lines to a string, through the agent's filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(ESCAPE_CONTROLS)
    logger = logging.getLogger(f"cpagent.test.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    yield logger, out
    logger.removeHandler(handler)


def test_escapes_are_visible_and_printable_text_stays() -> None:
    assert escape_controls("Zürich €5 ✓ tag-1") == "Zürich €5 ✓ tag-1"
    assert escape_controls("a\nb\rc\td\x00e\x1bf\x7fg\x85h\u2028i\udc80j\U000e0001") == (
        "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x85h\\u2028i\\udc80j\\U000e0001"
    )


def test_every_format_of_an_argument_is_escaped(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    tag = "T1\nINFO forged"
    logger.info("%s|%r|%.6s|%d|%.1f|%s", tag, tag, tag, 7, 1.25, ValueError("x\ny"))
    logger.info("%(tag)s %(n)d", {"tag": tag, "n": 3})
    logger.info("%s and %r", Path("/tmp/a\nb"), Path("/tmp/a\nb"))
    logger.info(ValueError("not a format\nstring"))
    assert out.getvalue().splitlines() == [
        "INFO T1\\nINFO forged|'T1\\nINFO forged'|T1\\nIN|7|1.2|x\\ny",
        "INFO T1\\nINFO forged 3",
        "INFO /tmp/a\\nb and PosixPath('/tmp/a\\nb')",
        "INFO not a format\\nstring",
    ]


def test_the_agents_own_format_keeps_its_lines(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    logger.info("problems:\n  %s\n  %s", "one", "two\nthree")
    assert out.getvalue() == "INFO problems:\n  one\n  two\\nthree\n"


def test_two_handlers_see_the_same_escaped_record(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    second = io.StringIO()
    handler = logging.StreamHandler(second)
    handler.addFilter(ESCAPE_CONTROLS)
    logger.addHandler(handler)
    try:
        logger.warning("card %s", "a\x00b")
    finally:
        logger.removeHandler(handler)
    assert out.getvalue() == "WARNING card a\\x00b\n"
    assert second.getvalue() == "card a\\x00b\n"
