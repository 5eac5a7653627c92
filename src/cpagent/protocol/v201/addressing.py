"""Keys of the ``[ocpp201]`` tables: ``Component:instance@evseId.connectorId`` and
``Variable:instance``, both ways.

interface.md fixes the syntax: a component key is its name, optionally ``:instance``,
optionally ``@evseId`` and then optionally ``.connectorId``, in that order
(``"Controller:main@1.1"``); a variable key is its name, optionally ``:instance``. Names are
the spec's standardized ones, matched case-insensitively and returned in the spec's spelling.
:func:`component_key` and :func:`variable_key` give the reverse, for logs and reports, so
that what the agent prints is what the installer can write back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from cpagent.protocol.v201.catalogue import canonical_component, canonical_variable

_COMPONENT_KEY: Final = re.compile(
    r"(?P<name>[^:@.\s]+)(?::(?P<instance>[^@\s]+))?"
    r"(?:@(?P<evse>[0-9]+)(?:\.(?P<connector>[0-9]+))?)?"
)
_VARIABLE_KEY: Final = re.compile(r"(?P<name>[^:@\s]+)(?::(?P<instance>[^@\s]+))?")
_MAX_IDENTIFIER: Final = 50  # ComponentType.name/instance, VariableType.name/instance


class AddressError(ValueError):
    """A key is malformed or names no standardized component or variable.

    The message names the key; ``reason`` is the same without it, for a caller that names
    the key itself (``ocpp201.Nope: 'Nope' is not a standardized ...``). Built with one
    argument, the message is the reason too.
    """

    def __init__(self, key: str, reason: str | None = None) -> None:
        super().__init__(key if reason is None else f"{key}: {reason}")
        self.reason = key if reason is None else reason


@dataclass(frozen=True)
class ComponentRef:
    """A component as OCPP's ComponentType addresses it."""

    name: str
    instance: str | None = None
    evse: int | None = None
    connector: int | None = None


@dataclass(frozen=True)
class VariableRef:
    """A variable as OCPP's VariableType addresses it."""

    name: str
    instance: str | None = None


def _check_identifier(key: str, what: str, text: str | None) -> None:
    if text is not None and len(text) > _MAX_IDENTIFIER:
        raise AddressError(key, f"the {what} is longer than {_MAX_IDENTIFIER} characters")


def parse_component_key(key: str) -> ComponentRef:
    """Parse ``Name[:instance][@evseId[.connectorId]]`` into a ComponentRef.

    Raises:
        AddressError: a malformed key, an EVSE id of 0, or a name OCPP 2.0.1 does not define.
    """
    match = _COMPONENT_KEY.fullmatch(key)
    if match is None:
        raise AddressError(
            repr(key),
            "is not a component key (Name, Name:instance, Name@evseId, "
            "Name@evseId.connectorId, Name:instance@evseId.connectorId)",
        )
    raw = match["name"]
    name = canonical_component(raw)
    if name is None:
        raise AddressError(repr(key), f"{raw!r} is not a standardized OCPP 2.0.1 component")
    _check_identifier(repr(key), "instance", match["instance"])
    evse = int(match["evse"]) if match["evse"] is not None else None
    connector = int(match["connector"]) if match["connector"] is not None else None
    if evse == 0:
        raise AddressError(repr(key), "evseId starts at 1 (0 is the station itself: leave it out)")
    if connector == 0:
        raise AddressError(repr(key), "connectorId starts at 1")
    return ComponentRef(name, match["instance"], evse, connector)


def parse_variable_key(component: str, key: str) -> VariableRef:
    """Parse ``Name[:instance]`` for a (canonical) component name into a VariableRef.

    Raises:
        AddressError: a malformed key, or a name the component does not have in OCPP 2.0.1.
    """
    match = _VARIABLE_KEY.fullmatch(key)
    if match is None:
        raise AddressError(f"{component}.{key!r}", "is not a variable key (Name or Name:instance)")
    raw = match["name"]
    name = canonical_variable(component, raw)
    if name is None:
        raise AddressError(f"{component}.{key}", f"{raw!r} is not a variable of {component}")
    _check_identifier(f"{component}.{key}", "instance", match["instance"])
    return VariableRef(name, match["instance"])


def component_key(ref: ComponentRef) -> str:
    """The key of a component, as :func:`parse_component_key` reads it."""
    key = ref.name
    if ref.instance is not None:
        key += f":{ref.instance}"
    if ref.evse is not None:
        key += f"@{ref.evse}"
        if ref.connector is not None:
            key += f".{ref.connector}"
    return key


def variable_key(ref: VariableRef) -> str:
    """The key of a variable, as :func:`parse_variable_key` reads it."""
    return ref.name if ref.instance is None else f"{ref.name}:{ref.instance}"


def full_key(component: ComponentRef, variable: VariableRef) -> str:
    """``Component...Variable...`` as a log line or a report names one value."""
    return f"{component_key(component)}.{variable_key(variable)}"
