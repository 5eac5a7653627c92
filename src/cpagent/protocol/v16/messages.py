"""Payloads of the OCPP 1.6 messages the charge point sends, built from station events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cpagent.station.model import (
    MeterSample,
    SampledValue,
    StatusChanged,
    StopReason,
    TransactionStarted,
    TransactionStopped,
)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def sampled_value(v: SampledValue) -> dict[str, Any]:
    out: dict[str, Any] = {
        "value": _fmt(v.value),
        "context": v.context,
        "format": "Raw",
        "measurand": v.measurand,
        "location": v.location,
    }
    if v.phase:
        out["phase"] = v.phase
    if v.unit:
        out["unit"] = v.unit
    return out


def meter_value(timestamp: str, values: Iterable[SampledValue]) -> dict[str, Any]:
    return {"timestamp": timestamp, "sampledValue": [sampled_value(v) for v in values]}


def boot_notification(
    *, vendor: str, model: str, firmware_version: str, serial_number: str | None, meter_type: str
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "chargePointVendor": vendor,
        "chargePointModel": model,
        "firmwareVersion": firmware_version,
        "meterType": meter_type[:25],
    }
    if serial_number:
        payload["chargePointSerialNumber"] = serial_number
        payload["chargeBoxSerialNumber"] = serial_number
    return payload


def status_notification(ev: StatusChanged) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": ev.connector_id,
        "errorCode": ev.error_code,
        "status": str(ev.status),
        "timestamp": ev.timestamp,
    }
    if ev.info:
        payload["info"] = ev.info[:50]
    if ev.vendor_error_code:
        payload["vendorErrorCode"] = ev.vendor_error_code[:50]
    return payload


def start_transaction(ev: TransactionStarted) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": ev.connector_id,
        "idTag": ev.id_token,
        "meterStart": ev.meter_start_wh,
        "timestamp": ev.timestamp,
    }
    if ev.reservation_id is not None:
        payload["reservationId"] = ev.reservation_id
    return payload


_NOT_IN_16 = frozenset({StopReason.STOPPED_BY_EV, StopReason.TIMEOUT})


def stop_transaction(ev: TransactionStopped, data: list[dict[str, Any]]) -> dict[str, Any]:
    """StopTransaction without ``transactionId``: it is filled in when the message is sent,
    because the CSMS may not have assigned it yet. ``data`` holds the MeterValues kept during
    the session (Transaction.Begin, StopTxnSampledData, StopTxnAlignedData). A reason 1.6
    has no word for (a 2.0.1 transaction point's) is Other."""
    reason = ev.reason if ev.reason not in _NOT_IN_16 else StopReason.OTHER
    payload: dict[str, Any] = {
        "meterStop": ev.meter_stop_wh,
        "timestamp": ev.timestamp,
        "reason": str(reason),
    }
    if ev.id_token:
        payload["idTag"] = ev.id_token
    data = [*data, meter_value(ev.timestamp, ev.end_values)] if ev.end_values else data
    if data:
        payload["transactionData"] = data
    return payload


def meter_values(sample: MeterSample) -> dict[str, Any]:
    return {
        "connectorId": sample.connector_id,
        "meterValue": [meter_value(sample.timestamp, sample.values)],
    }
