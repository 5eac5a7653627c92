"""OCPP's CiString types (id tags, key names, vendor ids) compare case-insensitively.

Only ASCII letters fold, as SQLite's NOCASE does where the store keeps id tags: a Kelvin
sign is never a k, so no name can stand in for another by Unicode case mapping.
"""

from __future__ import annotations

import string

_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(text: str) -> str:
    """``text`` as a CiString compares: two CiStrings are equal when their folds are."""
    return text.translate(_ASCII_FOLD)
