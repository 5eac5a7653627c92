"""Validation of OCPP payloads against the official JSON schemas shipped with ``ocpp``.

The schemas are compiled to Python with ``fastjsonschema`` (some 25 times faster than the
library's generic validator), which is what lets a long offline queue drain at well over a
thousand messages a second. Formats (date-time) are not enforced unless asked for, as the
library does not enforce them: a CSMS answering ``currentTime`` without a zone is tolerated.
Schemas whose decimals need exact arithmetic (``multipleOf``) go through the library's
Decimal-aware validators, with precision enough for any finite float, when the payload holds
a number with a fraction (a RemoteStartTransaction without a charging profile holds none,
and is judged by the compiled validator); they (and with them jsonschema) are imported the
first time such a payload is validated, not at start. The cause of an error names the field
and (shortened) the value, never the whole payload.

One :class:`SchemaSet` per OCPP version: each version names its errors by its own rules
(OCPP-J 1.6 and 2.0.1 differ), given as ``error_for``.

Compiling a schema costs 1-27 ms (code generation, then Python's compile of the generated
source), paid on first use of each action: at start for BootNotification, in a CSMS
request's answer time for the first GetVariables. An installed agent therefore finds the
validators generated ahead, as Python modules (:mod:`cpagent.protocol.validator_build`, run
by ``make`` and the Debian package build, byte-compiled like any module), in the package
:func:`validators_package`. Each records what it was generated from (:class:`Fingerprint`):
one is used only while the schema file it would otherwise compile hashes the same, with the
same transform and fastjsonschema version; else the schema is compiled at run time as
before, so an ``ocpp`` or fastjsonschema upgraded alone never gets a stale validator.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import importlib
import json
import logging
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
from ocpp.exceptions import NotImplementedError, OCPPError

from cpagent.protocol.ocppj import MessageType

log = logging.getLogger(__name__)

ErrorFor = Callable[[Any, dict[str, str]], OCPPError]
"""The OCPPError for a broken schema rule (``type``, ``required``, ...) with its details."""

_EXACT = decimal.Context(prec=400)
"""Enough digits for ``multipleOf`` 0.1 on any finite float (up to about 1.8e308)."""
CAUSE_CHARS = 200

VALIDATORS_PACKAGE = "cpagent.protocol._validators"
"""Where the generated validators are, one sub-package per OCPP version (git-ignored)."""
WITHOUT_MULTIPLE_OF = "without_multiple_of"
"""The name a generated module records for the :func:`_without_multiple_of` transform."""


def validators_package(version: str) -> str:
    """The package of OCPP ``version``'s generated validators: ``..._validators.v201``."""
    return f"{VALIDATORS_PACKAGE}.v{version.replace('.', '')}"


@dataclass(frozen=True)
class Fingerprint:
    """What a validator was compiled from: the SHA-256 of the schema file's bytes, the
    transform applied to the parsed schema (None or :data:`WITHOUT_MULTIPLE_OF`) with the
    SHA-256 of its result as canonical JSON (None without one), and fastjsonschema's
    version. A generated module records these as ``SCHEMA_SHA256``, ``TRANSFORM``,
    ``TRANSFORMED_SHA256`` and ``FASTJSONSCHEMA_VERSION``."""

    schema_sha256: str
    transform: str | None
    transformed_sha256: str | None
    fastjsonschema_version: str

    @classmethod
    def recorded(cls, module: Any) -> Fingerprint | None:
        """The fingerprint a generated ``module`` records; None when it records none."""
        try:
            return cls(
                module.SCHEMA_SHA256,
                module.TRANSFORM,
                module.TRANSFORMED_SHA256,
                module.FASTJSONSCHEMA_VERSION,
            )
        except AttributeError:
            return None


def canonical_sha256(schema: Any) -> str:
    """The SHA-256 of ``schema`` as canonical JSON (sorted keys, no spaces, ASCII)."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def json_path(parts: Iterable[str | int]) -> str:
    """A place in a payload as text: ``a.b[0].c`` for the keys and indexes ``a, b, 0, c``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _cause(err: fastjsonschema.JsonSchemaValueException) -> str:
    name, value = err.name or "data", err.value
    if err.rule == "maxLength" and isinstance(value, str):
        return f"{name} is too long: {len(value)} characters, at most {err.rule_definition}"
    if err.rule == "enum":
        return f"{name} {value!r:.60} is not one of {err.rule_definition}"
    return err.message


def _divides_one(step: Any) -> bool:
    """Whether every integer is a multiple of ``step`` (0.1, 0.5, 1, ...)."""
    try:
        return decimal.Decimal(1) % decimal.Decimal(str(step)) == 0
    except (ArithmeticError, ValueError):
        return False


def _without_multiple_of(node: Any) -> Any:
    """A schema without its ``multipleOf`` rules that every integer meets (0.1): what an
    integer-only payload must meet besides."""
    if isinstance(node, dict):
        return {
            k: _without_multiple_of(v)
            for k, v in node.items()
            if k != "multipleOf" or not _divides_one(v)
        }
    if isinstance(node, list):
        return [_without_multiple_of(v) for v in node]
    return node


def _holds_fraction(value: Any) -> bool:
    """Whether a payload holds a number that is no integer (a float, NaN and infinities
    included)."""
    if isinstance(value, dict):
        return any(_holds_fraction(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_fraction(v) for v in value)
    return not isinstance(value, int | str | bool) and value is not None


class SchemaSet:
    """The schemas of one OCPP version: ``<Action>.json``/``<Action>Response.json`` (1.6) or
    ``<Action>Request.json``/``<Action>Response.json`` (2.0.1) in ``directory``."""

    def __init__(
        self,
        version: str,
        directory: Path,
        *,
        request_suffix: str,
        error_for: ErrorFor,
        decimal_schemas: Collection[tuple[int, str]] = (),
        validators: str | None = None,
    ) -> None:
        """``validators``: the package of the generated validators (default:
        :func:`validators_package` of ``version``)."""
        self.version = version
        self.directory = directory
        self.request_suffix = request_suffix
        self.error_for = error_for
        self.decimal_schemas = frozenset(decimal_schemas)
        self.validators = validators or validators_package(version)
        self._compiled: dict[tuple[int, str, bool], Callable[[Any], Any]] = {}
        self.date_time_fields = functools.cache(self._date_time_fields)

    def _path(self, message_type_id: int, action: str) -> Path:
        suffix = "Response" if message_type_id == MessageType.CallResult else self.request_suffix
        return self.directory / f"{action}{suffix}.json"

    def schema(self, message_type_id: int, action: str) -> dict[str, Any]:
        try:
            text = self._path(message_type_id, action).read_text(encoding="utf-8-sig")
            schema: dict[str, Any] = json.loads(text)
        except (OSError, ValueError) as err:
            raise NotImplementedError(
                details={"cause": f"no OCPP {self.version} schema for {action}"}
            ) from err
        return schema

    def entries(self) -> Iterator[tuple[Path, int, str]]:
        """Each schema file of the set, sorted, with the message type and action it is for."""
        for path in sorted(self.directory.glob("*.json")):
            name = path.stem
            if name.endswith("Response"):
                yield path, MessageType.CallResult, name.removesuffix("Response")
            elif self.request_suffix:
                yield path, MessageType.Call, name.removesuffix(self.request_suffix)
            else:
                yield path, MessageType.Call, name

    def compiled_schema(
        self, message_type_id: int, action: str
    ) -> tuple[dict[str, Any], str | None]:
        """The schema the validator of (``message_type_id``, ``action``) is compiled from,
        with the name of the transform it went through (None: the file as it is)."""
        return self._transformed(message_type_id, action, self.schema(message_type_id, action))

    def _transformed(
        self, message_type_id: int, action: str, schema: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        if (message_type_id, action) in self.decimal_schemas:
            return _without_multiple_of(schema), WITHOUT_MULTIPLE_OF
        return schema, None

    def fingerprint(self, message_type_id: int, action: str, data: bytes) -> Fingerprint:
        """What the validator of (``message_type_id``, ``action``) is compiled from, given
        the bytes ``data`` of its schema file (parsed only when a transform applies)."""
        transform = transformed = None
        if (message_type_id, action) in self.decimal_schemas:
            parsed = json.loads(data.decode("utf-8-sig"))
            schema, transform = self._transformed(message_type_id, action, parsed)
            transformed = canonical_sha256(schema)
        return Fingerprint(
            hashlib.sha256(data).hexdigest(), transform, transformed, fastjsonschema.VERSION
        )

    def _generated(self, message_type_id: int, action: str) -> Callable[[Any], Any] | None:
        """The validator generated ahead for the schema, if its module records this very
        schema file (and transform, and fastjsonschema version); None otherwise."""
        if not action.isidentifier():
            return None
        path = self._path(message_type_id, action)
        name = f"{self.validators}.{path.stem}"
        try:
            expected = self.fingerprint(message_type_id, action, path.read_bytes())
            module = importlib.import_module(name)
        except (OSError, ImportError, SyntaxError, ValueError):
            return None  # no such file (compiling says so), or no module to trust
        validate = getattr(module, "validate", None)
        if Fingerprint.recorded(module) != expected or not callable(validate):
            log.debug("%s: generated for another schema or library; compiling it", name)
            sys.modules.pop(name, None)
            return None
        return validate  # type: ignore[no-any-return]

    def _validator(self, message_type_id: int, action: str, formats: bool) -> Callable[[Any], Any]:
        key = (message_type_id, action, formats)
        validator = self._compiled.get(key)
        if validator is None:
            validator = None if formats else self._generated(message_type_id, action)
            if validator is None:
                schema, _ = self.compiled_schema(message_type_id, action)
                validator = fastjsonschema.compile(schema, use_formats=formats, use_default=False)
            self._compiled[key] = validator
        return validator

    def error(self, rule: Any, cause: str) -> OCPPError:
        return self.error_for(rule, {"cause": cause[:CAUSE_CHARS]})

    def preload(self) -> int:
        """Read every schema and load (or compile) its validator now, as :meth:`validate`
        would on first use of each action (``prepare-upgrade``: the ``ocpp`` package's files
        and the generated validators may be replaced while the agent runs on). Returns the
        number of schema files loaded."""
        count = 0
        for _, kind, action in self.entries():
            if (kind, action) in self.decimal_schemas:
                validator = self._exact_validator(kind, action)
                next(iter(validator.iter_errors({})), None)  # what jsonschema loads on first use
            self._validator(kind, action, False)
            if kind == MessageType.Call:
                self.date_time_fields(action)
            count += 1
        return count

    def _date_time_fields(self, action: str) -> tuple[str, ...]:
        """Where the request ``action`` holds RFC 3339 date-times by its schema, as dotted
        paths (``a.b``; ``a[].b``: ``b`` of each element of the array ``a``)."""
        schema = self.schema(MessageType.Call, action)
        definitions = schema.get("definitions", {})
        found: list[str] = []

        def walk(node: dict[str, Any], path: str, depth: int) -> None:
            ref = node.get("$ref", "")
            if ref.startswith("#/definitions/"):
                node = definitions[ref.removeprefix("#/definitions/")]
            if node.get("format") == "date-time":
                found.append(path)
            if depth > 16:  # 2.0.1 types may refer to each other; no message nests deeper
                return
            for name, child in node.get("properties", {}).items():
                walk(child, f"{path}.{name}" if path else name, depth + 1)
            if isinstance(node.get("items"), dict):
                walk(node["items"], f"{path}[]", depth + 1)

        walk(schema, "", 0)
        return tuple(found)

    def _exact_validator(self, message_type_id: int, action: str) -> Any:
        """The library's jsonschema validator of the schema, its decimals read as Decimal."""
        from ocpp.messages import get_validator  # imports jsonschema: only when needed

        return get_validator(message_type_id, action, self.version, parse_float=decimal.Decimal)

    def _validate_exactly(self, message_type_id: int, action: str, payload: Any) -> None:
        """Validate with the payload's decimals as Decimal (``multipleOf`` 0.1 is exact)."""
        validator = self._exact_validator(message_type_id, action)
        try:
            exact = json.loads(json.dumps(payload, allow_nan=False), parse_float=decimal.Decimal)
        except ValueError as err:  # NaN or an infinity: no JSON number
            raise self.error("type", f"data: {err}") from None
        with decimal.localcontext(_EXACT):
            error = next(iter(validator.iter_errors(exact)), None)
        if error is not None:
            where = json_path(["data", *error.absolute_path])
            raise self.error(error.validator, f"{where}: {error.message}")

    def validate(
        self, message_type_id: int, action: str, payload: dict[str, Any], *, formats: bool = False
    ) -> None:
        """Raise the OCPPError a schema violation maps to; return quietly when valid.

        ``formats=True`` also enforces the schemas' formats (RFC 3339 date-times): what a
        strict judge of the agent's own messages wants, not what an agent should demand of a
        CSMS.
        """
        if (message_type_id, action) in self.decimal_schemas:
            # Without a fraction anywhere, every number is a multiple of 0.1: the compiled
            # validator of the other rules decides. A payload with a fraction, and any it
            # refuses (for the exact validator's error), is judged exactly.
            if not _holds_fraction(payload):
                try:
                    self._validator(message_type_id, action, False)(payload)
                except fastjsonschema.JsonSchemaValueException:
                    pass
                else:
                    return
            self._validate_exactly(message_type_id, action, payload)
            return
        try:
            self._validator(message_type_id, action, formats)(payload)
        except fastjsonschema.JsonSchemaValueException as err:
            raise self.error(err.rule, _cause(err)) from None
