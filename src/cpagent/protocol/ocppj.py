"""OCPP-J messages as the ``ocpp`` library models them, without the library's validation.

The library's ``ocpp.messages`` (and with it ``ocpp.charge_point`` and every ``ocpp.v16`` /
``ocpp.v201`` module, whose packages import its ChargePoint) imports jsonschema, referencing,
attrs and rpds at start: some 40 ms and 3.4 MB on a small board for a validator the agent
does not use, since it validates with its compiled schemas (:mod:`.schemas`). The classes
and helpers here behave as the library's do (ocpp 2.1, MIT licence): the same attributes,
the same JSON text (a Decimal is written with one decimal place), the same case conversion,
so a frame on the wire is the one the library would have written. The library's
exceptions (``ocpp.exceptions``, which imports nothing) and routing (``ocpp.routing``) are
used as they are.
"""

from __future__ import annotations

import decimal
import json
import re
from dataclasses import asdict, is_dataclass
from typing import Any

from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError


class MessageType:
    """The MessageTypeId of each kind of OCPP-J message."""

    Call = 2
    CallResult = 3
    CallError = 4


class _DecimalEncoder(json.JSONEncoder):
    """A Decimal as a number with one decimal place (the library's rule: the 1.6 schedules'
    multipleOf 0.1); an object with ``to_json`` as what that returns."""

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            return float(format(float(o), ".1f"))  # as "%.1f" % o
        try:
            return json.JSONEncoder.default(self, o)
        except TypeError:
            to_json = getattr(o, "to_json", None)
            if to_json is None:
                raise
            return to_json()


def to_text(value: Any) -> str:
    """``value`` as a frame writes it: a whole message (its list), or one element of one."""
    return json.dumps(value, separators=(",", ":"), cls=_DecimalEncoder)


class Call:
    """A request: ``[2, "<UniqueId>", "<Action>", {<Payload>}]``."""

    message_type_id = MessageType.Call

    def __init__(self, unique_id: Any, action: Any, payload: Any) -> None:
        self.unique_id = unique_id
        self.action = action
        self.payload = payload
        if is_dataclass(payload) and not isinstance(payload, type):
            self.payload = asdict(payload)

    def to_json(self) -> str:
        return to_text([self.message_type_id, self.unique_id, self.action, self.payload])

    def __repr__(self) -> str:
        return f"<Call - unique_id={self.unique_id}, action={self.action}, payload={self.payload}>"


class CallResult:
    """The answer to a request: ``[3, "<UniqueId>", {<Payload>}]``."""

    message_type_id = MessageType.CallResult

    def __init__(self, unique_id: Any, payload: Any, action: str | None = None) -> None:
        self.unique_id = unique_id
        self.payload = payload
        self.action = action

    def to_json(self) -> str:
        return to_text([self.message_type_id, self.unique_id, self.payload])

    def __repr__(self) -> str:
        return (
            f"<CallResult - unique_id={self.unique_id}, action={self.action}, "
            f"payload={self.payload}>"
        )


class CallError:
    """A refused request: ``[4, "<UniqueId>", "<errorCode>", "<errorDescription>",
    {<errorDetails>}]``."""

    message_type_id = MessageType.CallError

    def __init__(
        self, unique_id: Any, error_code: Any, error_description: Any, error_details: Any = None
    ) -> None:
        self.unique_id = unique_id
        self.error_code = error_code
        self.error_description = error_description
        self.error_details = error_details

    def to_json(self) -> str:
        return to_text(
            [
                self.message_type_id,
                self.unique_id,
                self.error_code,
                self.error_description,
                self.error_details,
            ]
        )

    def to_exception(self) -> OCPPError:
        """The library's OCPPError of this code; UnknownCallErrorCodeError for a code OCPP
        does not define."""
        for error in OCPPError.__subclasses__():
            if error.code == self.error_code:
                exception: OCPPError = error(
                    description=self.error_description, details=self.error_details
                )
                return exception
        raise UnknownCallErrorCodeError(
            f"Error code '{self.error_code}' is not defined by the OCPP specification"
        )

    def __repr__(self) -> str:
        return (
            f"<CallError - unique_id={self.unique_id}, error_code={self.error_code}, "
            f"error_description={self.error_description}, "
            f"error_details={self.error_details}>"
        )


# ------------------------------------------------------------------ the library's naming

_WORDS = re.compile("(.)([A-Z][a-z]+)")
_CAPITAL = re.compile("([a-z0-9])([A-Z])(?=\\S)")


def camel_to_snake_case(data: Any) -> Any:
    """Every dictionary key inside ``data`` from camelCase to snake_case, as the library's
    handlers receive their arguments (``connectorId`` -> ``connector_id``)."""
    if isinstance(data, dict):
        converted = {}
        for key, value in data.items():
            key = key.replace("ocppCSMSURL", "ocpp_csms_url")
            key = key.replace("V2X", "_v2x").replace("V2G", "_v2g")
            key = _CAPITAL.sub(r"\1_\2", _WORDS.sub(r"\1_\2", key)).lower()
            converted[key] = camel_to_snake_case(value)
        return converted
    if isinstance(data, list):
        return [camel_to_snake_case(value) for value in data]
    return data


def snake_to_camel_case(data: Any) -> Any:
    """Every dictionary key inside ``data`` from snake_case to camelCase, with the library's
    special spellings (``soc`` -> ``SoC``, ``_url`` -> ``URL``, ...)."""
    if isinstance(data, dict):
        converted = {}
        for key, value in data.items():
            key = key.replace("soc", "SoC")
            key = key.replace("_v2x", "V2X")
            key = key.replace("ocpp_csms_url", "ocppCsmsUrl")
            key = key.replace("csms", "CSMS")
            key = key.replace("_url", "URL")
            key = key.replace("soc", "SoC").replace("_SoCket", "Socket")
            key = key.replace("_v2x", "V2X")
            key = key.replace("soc_limit_reached", "SOCLimitReached")
            key = key.replace("_v2x", "V2X").replace("_v2g", "V2G")
            components = key.split("_")
            key = components[0] + "".join(x[:1].upper() + x[1:] for x in components[1:])
            converted[key] = snake_to_camel_case(value)
        return converted
    if isinstance(data, list):
        return [snake_to_camel_case(value) for value in data]
    return data


def remove_nones(data: Any) -> Any:
    """``data`` without the None values of its dictionaries and lists, at every depth."""
    if isinstance(data, dict):
        return {k: remove_nones(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [remove_nones(v) for v in data if v is not None]
    return data
