"""Schema verdicts on the items of a list payload, remembered instead of recomputed.

A GetVariables request is one array of GetVariableData, its answer one array of
GetVariableResult, and their schemas say nothing about the items together but that there is
one at least: no ``maxItems``, no ``uniqueItems``. A payload ``{field: [a, b, ...]}`` is then
valid exactly when the array is not empty and each item is valid on its own. A CSMS reads the
same variables again and again (a dashboard polling fifty of them), and the compiled validator
spends some 3 µs on each item, in the request and again in the answer: most of what answering
such a request costs.

:class:`ItemVerdicts` runs the validator as before on every payload it has not seen the like
of, and remembers the items of each payload the validator passed, by their key
(:func:`item_key`): a payload of remembered items only is valid without asking the validator
again. Everything else (an
item not remembered, another key beside the array, an empty array, a schema of another form)
goes to the validator, whose verdict and error are the ones given. So every verdict is the
validator's, item by item.

An item's key is its :mod:`marshal` encoding (format 2: no references between objects, so
the bytes depend on the value alone), which tells the values of a JSON payload apart exactly,
their types included (``1``, ``1.0``, ``True`` and ``"1"`` differ; keys come in their
order, so another order is only another item to check), at some two fifths of what ``repr``
costs. The payloads judged here hold nothing else: a request as
:func:`cpagent.protocol.intake.read_frame` parsed it, an answer built of strings, integers,
dicts and lists by its handler; a payload holding anything marshal cannot encode is simply
validated whole.

:meth:`ItemVerdicts.passed` names the items of the payload just passed that way, so that
an answer's frame can be written from the text of each item written before (the v201
charge point's ``_result_frame``): the same key, the same JSON text.

Whether a schema has that form is read from the schema itself, the first time its action is
judged: a schema of another form (one that an upgrade of the ``ocpp`` package might bring)
is simply validated whole every time.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Mapping
from typing import Any

from ocpp.exceptions import OCPPError

Validate = Callable[[int, str, dict[str, Any]], None]
"""Raises for a payload its schema refuses (``SchemaSet.validate``)."""
SchemaOf = Callable[[int, str], dict[str, Any]]
"""The schema of a message type and action (``SchemaSet.schema``; OCPPError when none)."""

KEPT = 1024
"""Items remembered per message type and action, beyond which the memory starts afresh: far
more than a station has variables, in the few spellings a CSMS uses (a value that changes,
DateTime, makes an answer item new each time; it is one item in each answer)."""

_TOP_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "id",
        "comment",
        "description",
        "javaType",
        "definitions",
        "type",
        "additionalProperties",
        "properties",
        "required",
    }
)
_ARRAY_KEYWORDS = frozenset(
    {"description", "javaType", "type", "items", "additionalItems", "minItems"}
)


KEY_FORMAT = 2
"""The marshal format of item keys: the last without references (format 3 added them)."""


def item_key(item: Any) -> bytes:
    """An item's key (see the module docstring); ValueError for a value marshal cannot
    encode."""
    return marshal.dumps(item, KEY_FORMAT)


def decomposes(schema: Mapping[str, Any], field: str) -> bool:
    """Whether ``schema`` holds a payload ``{field: [items]}`` with at least one item valid
    exactly when each item is valid by itself: an object schema with nothing but properties,
    ``required`` and ``additionalProperties``, ``field`` an array whose ``items`` is one
    schema for every item and whose only other rule is ``minItems`` of at most 1."""
    if not set(schema) <= _TOP_KEYWORDS or schema.get("type") != "object":
        return False
    properties = schema.get("properties")
    array = properties.get(field) if isinstance(properties, Mapping) else None
    if not isinstance(array, Mapping) or not set(array) <= _ARRAY_KEYWORDS:
        return False
    if array.get("type") != "array" or not isinstance(array.get("items"), Mapping):
        return False
    minimum = array.get("minItems", 0)
    return isinstance(minimum, int) and minimum <= 1


class ItemVerdicts:
    """``validate`` for every payload, with the items of the list payloads named in
    ``fields`` (``(message type, action) -> the array's key``) remembered as described in
    the module docstring."""

    def __init__(
        self,
        validate: Validate,
        schema_of: SchemaOf,
        fields: Mapping[tuple[int, str], str],
        *,
        kept: int = KEPT,
    ) -> None:
        self._validate = validate
        self._schema_of = schema_of
        self._fields = dict(fields)
        self._kept = kept
        self._valid: dict[tuple[int, str], set[bytes] | None] = {}
        self._passed: tuple[dict[str, Any], str, list[bytes]] | None = None

    def _remembered(self, kind: tuple[int, str], field: str) -> set[bytes] | None:
        """The items remembered for ``kind``; None when its schema is not of the form."""
        if kind not in self._valid:
            try:
                fits = decomposes(self._schema_of(*kind), field)
            except OCPPError:  # no schema: the validator says what is wrong, every time
                fits = False
            self._valid[kind] = set() if fits else None
        return self._valid[kind]

    def prepare(self) -> None:
        """Read now whether each schema has the form (``prepare-upgrade``: the ``ocpp``
        package's files may be replaced while the agent runs on)."""
        for kind, field in self._fields.items():
            self._remembered(kind, field)

    def validate(self, message_type_id: int, action: str, payload: dict[str, Any]) -> None:
        """Raise what ``validate`` raises for ``payload``; return quietly when it is valid."""
        self._passed = None
        kind = (message_type_id, action)
        field = self._fields.get(kind)
        if field is None:
            self._validate(message_type_id, action, payload)
            return
        remembered = self._remembered(kind, field)
        items = payload.get(field) if type(payload) is dict and len(payload) == 1 else None
        if remembered is None or type(items) is not list or not items:
            self._validate(message_type_id, action, payload)
            return
        try:
            keys = [item_key(item) for item in items]
        except ValueError:
            self._validate(message_type_id, action, payload)
            return
        if not remembered.issuperset(keys):
            self._validate(message_type_id, action, payload)
            if len(remembered) + len(keys) > self._kept:
                remembered.clear()
            remembered.update(keys[: self._kept])
        self._passed = (payload, field, keys)

    def passed(self, payload: dict[str, Any]) -> tuple[str, list[bytes]] | None:
        """When ``payload`` is the very object :meth:`validate` last judged, valid, by its
        items: the name of its array and the key of each item; None otherwise."""
        if self._passed is None or self._passed[0] is not payload:
            return None
        return self._passed[1], self._passed[2]
