"""The README's status paragraph is the first thing a manufacturer reads: it must say what
the code does, no more and no less."""

from __future__ import annotations

import re
from pathlib import Path

from cpagent.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[2]


def status_paragraph() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^Status: (.*?)\n\n", text, re.S | re.M)
    assert match, "README.md has no status paragraph"
    return " ".join(match[1].split())


def speaks_201() -> bool:
    tables = {
        "charge_point": {"id": "CP1", "vendor": "V", "model": "M"},
        "csms": {"url": "ws://127.0.0.1:9000/ocpp", "ocpp_version": "2.0.1"},
    }
    try:
        parse_config(tables)
    except ConfigError:
        return False
    return True


def test_status_says_whether_ocpp_201_works() -> None:
    status = status_paragraph()
    if speaks_201():
        assert "OCPP 2.0.1" in status and "not implemented" not in status, status
    else:
        assert "OCPP 2.0.1 is not implemented yet" in status, status


def test_status_promises_nothing_as_under_way() -> None:
    status = status_paragraph()
    assert "being built" not in status, status
    assert "make deb" in status
    assert re.search(r"^deb:", (REPO / "Makefile").read_text(), re.M)
