"""NotifyReport payloads (B07, B08): report records as ReportDataType, split into parts.

The device model answers GetBaseReport and GetReport with plain records
(:meth:`~cpagent.protocol.v201.device_model.DeviceModel.base_report` and
:meth:`~cpagent.protocol.v201.device_model.DeviceModel.report`); this module turns them into
the NotifyReportRequest payloads the adapter sends, in order, each within the limits the
station publishes as ``DeviceDataCtrlr.ItemsPerMessage`` and ``DeviceDataCtrlr.BytesPerMessage``
(instance ``GetReport``). It is pure: no I/O, no clock; the adapter passes ``generatedAt``.

The size of a part is measured as the adapter will send it: the whole OCPP-J CALL frame
``[2,"<message id>","NotifyReport",<payload>]`` serialized as the endpoint writes frames
(:func:`cpagent.protocol.ocppj.to_text`: separators ``(",", ":")``, ASCII only, so every
byte is ASCII and the length in characters is the length in UTF-8 bytes), with a message id of
:data:`MESSAGE_ID_LENGTH` (36) characters, the length of the UUID the adapter uses.

Two cases the spec leaves to the station:

* An empty report: the adapter answers GetBaseReport/GetReport with ``EmptyResultSet`` and
  sends no NotifyReport at all, so :func:`notify_report_parts` returns ``[]`` for no records.
* One record whose frame alone exceeds BytesPerMessage. Part 2 sets no rule for it, and a
  report exists to tell the CSMS every variable: a record is never dropped or cut (its value
  is data). It goes alone in its own part, over the limit, and :func:`split_report` names it
  in :attr:`ReportSplit.oversized` so that the adapter can log it. With cpagent's factory
  limits this cannot happen (a value is at most 2500 characters, BytesPerMessage 65536); only
  an installer's much lower BytesPerMessage can cause it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cpagent.protocol.ocppj import to_text
from cpagent.protocol.v201.catalogue import Mutability
from cpagent.protocol.v201.device_model import ReportRecord
from cpagent.protocol.v201.values import render_datetime

#: The action name of the CALL frame.
ACTION: Final = "NotifyReport"
#: The length of the frame's message id counted in a part's size (a UUID: 36 characters).
MESSAGE_ID_LENGTH: Final = 36
#: OCPP-J message type of a CALL.
_CALL: Final = 2


def _number(limit: float) -> int | float:
    """A limit as JSON: an integral limit is written without ``.0``."""
    return int(limit) if float(limit).is_integer() else limit


def report_data(record: ReportRecord) -> dict[str, Any]:
    """One ReportDataType of NotifyReportRequest, absent optional fields left out.

    A WriteOnly attribute never carries a value, whatever the record holds: the device model
    already withholds it and this keeps it withheld. ``supportsMonitoring`` is false:
    cpagent does not implement monitoring (block N's SetVariableMonitoring).
    """
    component: dict[str, Any] = {"name": record.component.name}
    if record.component.instance is not None:
        component["instance"] = record.component.instance
    if record.component.evse is not None:
        evse: dict[str, Any] = {"id": record.component.evse}
        if record.component.connector is not None:
            evse["connectorId"] = record.component.connector
        component["evse"] = evse
    variable: dict[str, Any] = {"name": record.variable.name}
    if record.variable.instance is not None:
        variable["instance"] = record.variable.instance
    attributes: list[dict[str, Any]] = []
    for attribute in record.attributes:
        entry: dict[str, Any] = {"type": str(attribute.type)}
        if attribute.value is not None and attribute.mutability is not Mutability.WRITE_ONLY:
            entry["value"] = attribute.value
        entry["mutability"] = str(attribute.mutability)
        attributes.append(entry)
    characteristics: dict[str, Any] = {}
    if record.unit is not None:
        characteristics["unit"] = record.unit
    characteristics["dataType"] = str(record.data_type)
    if record.min_limit is not None:
        characteristics["minLimit"] = _number(record.min_limit)
    if record.max_limit is not None:
        characteristics["maxLimit"] = _number(record.max_limit)
    if record.values_list:
        characteristics["valuesList"] = ",".join(record.values_list)
    characteristics["supportsMonitoring"] = False
    return {
        "component": component,
        "variable": variable,
        "variableAttribute": attributes,
        "variableCharacteristics": characteristics,
    }


def frame_size(payload: dict[str, Any]) -> int:
    """Bytes of the CALL frame carrying ``payload`` (see the module docstring)."""
    return len(to_text([_CALL, "x" * MESSAGE_ID_LENGTH, ACTION, payload]).encode("utf-8"))


@dataclass(frozen=True)
class ReportSplit:
    """The NotifyReport payloads in order, and the records that alone exceed the byte limit.

    ``oversized`` holds the indexes (into the records given) of records sent alone in a part
    over BytesPerMessage, because a record is never dropped or cut.
    """

    parts: list[dict[str, Any]]
    oversized: tuple[int, ...] = ()


def _payload(
    request_id: int, generated_at: str, seq_no: int, last: bool, data: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "generatedAt": generated_at,
        "seqNo": seq_no,
        "tbc": not last,
        "reportData": data,
    }


def split_report(
    request_id: int,
    generated_at: dt.datetime,
    records: Sequence[ReportRecord],
    items_per_message: int,
    bytes_per_message: int,
) -> ReportSplit:
    """Split ``records`` into NotifyReportRequest payloads; see :func:`notify_report_parts`.

    Raises:
        ValueError: a limit below 1.
    """
    if items_per_message < 1 or bytes_per_message < 1:
        raise ValueError("ItemsPerMessage and BytesPerMessage are at least 1")
    when = render_datetime(generated_at)
    items = [report_data(r) for r in records]
    sizes = [len(to_text(item)) for item in items]
    parts: list[dict[str, Any]] = []
    oversized: list[int] = []
    start = 0
    while start < len(items):
        seq_no = len(parts)
        # The frame without report data, for a last part and for one to be continued; each
        # item adds its own bytes and, after the first, a comma.
        empty = {
            last: frame_size(_payload(request_id, when, seq_no, last, [])) for last in (True, False)
        }
        end = start + 1
        total = sizes[start]
        while end < len(items) and end - start < items_per_message:
            grown = total + 1 + sizes[end]
            if empty[end + 1 == len(items)] + grown > bytes_per_message:
                break
            total = grown
            end += 1
        last = end == len(items)
        if end == start + 1 and empty[last] + total > bytes_per_message:
            oversized.append(start)
        parts.append(_payload(request_id, when, seq_no, last, items[start:end]))
        start = end
    return ReportSplit(parts, tuple(oversized))


def notify_report_parts(
    request_id: int,
    generated_at: dt.datetime,
    records: Sequence[ReportRecord],
    items_per_message: int,
    bytes_per_message: int,
) -> list[dict[str, Any]]:
    """The NotifyReportRequest payloads of one report, in the order they are sent.

    ``seqNo`` runs 0, 1, 2, ...; ``tbc`` is true on every part but the last. Each part holds
    at most ``items_per_message`` reportData entries and, measured as in the module
    docstring (the whole CALL frame), at most ``bytes_per_message`` bytes, except a part
    holding one record too big to fit alone (see :func:`split_report` for how to find it).
    Records keep their order and each appears exactly once. No records gives ``[]``: the
    adapter answers ``EmptyResultSet`` and sends no NotifyReport.

    Raises:
        ValueError: a limit below 1.
    """
    return split_report(
        request_id, generated_at, records, items_per_message, bytes_per_message
    ).parts


__all__ = [
    "ACTION",
    "MESSAGE_ID_LENGTH",
    "ReportSplit",
    "frame_size",
    "notify_report_parts",
    "report_data",
    "split_report",
]
