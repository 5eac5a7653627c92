"""The OCPP 2.0.1 secrets a frame may carry, hidden before the frame is logged.

A SetVariables setting SecurityCtrlr.BasicAuthPassword (WriteOnly) carries the password as
an ``attributeValue`` beside the variable's name, in any order of fields and in any case: a
frame that names the variable (or holds a ``\\u`` escape, which could spell it) is read as
JSON and every ``attributeValue`` next to that variable is replaced. A frame that does not
parse (or nests too deep to) is logged with every ``attributeValue`` hidden.
"""

from __future__ import annotations

import json
import re
from typing import Any

SECRET_VARIABLES = frozenset({"basicauthpassword"})
"""The WriteOnly variables of the catalogue, compared without regard to case."""
_MENTION = re.compile("|".join(SECRET_VARIABLES), re.IGNORECASE)
_ANY_VALUE = re.compile(r'("attributeValue"\s*:\s*")(?:[^"\\]|\\.)*"')


def _hide(node: Any) -> bool:
    """Hide the secrets under ``node`` in place; whether any was found."""
    found = False
    if isinstance(node, dict):
        variable = node.get("variable")
        name = variable.get("name") if isinstance(variable, dict) else None
        secret = isinstance(name, str) and name.casefold() in SECRET_VARIABLES
        if secret and "attributeValue" in node:
            node["attributeValue"] = "***"
            found = True
        for child in node.values():
            found = _hide(child) or found
    elif isinstance(node, list):
        for child in node:
            found = _hide(child) or found
    return found


def redact(frame: str) -> str:
    if not _MENTION.search(frame) and "\\u" not in frame:  # an escape may spell the name
        return frame
    try:
        message = json.loads(frame)
        found = _hide(message)
    except (ValueError, RecursionError):
        return _ANY_VALUE.sub(r'\1***"', frame)
    if not found:
        return frame
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
