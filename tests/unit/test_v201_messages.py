"""OCPP 2.0.1 payloads built from station facts: each is valid against its 2.0.1 schema
(with formats) and each translation of the station's vocabulary holds value by value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ocpp
import pytest
from ocpp.messages import MessageType
from ocpp.v201.enums import (
    MeasurandEnumType,
    ReadingContextEnumType,
    StandardizedUnitsOfMeasureType,
)
from ocpp.v201.enums import SecurityEventType as SecurityEvent201

from cpagent.hal.base import MeterReading
from cpagent.protocol.v16.config_keys import SUPPORTED_MEASURANDS
from cpagent.protocol.v201 import messages as m
from cpagent.protocol.v201.enums import (
    AuthorizationStatusEnumType,
    BootReasonEnumType,
    UploadLogStatusEnumType,
)
from cpagent.protocol.v201.schemas import validate
from cpagent.security.events import SecurityEventType
from cpagent.station.firmware import FirmwareStatus
from cpagent.station.metering import sample_values
from cpagent.station.model import (
    AuthStatus,
    ConnectorStatus,
    MeterSample,
    SampledValue,
    StatusChanged,
    StopReason,
)

NOW = "2026-12-07T21:00:00Z"
LATER = "2026-12-07T21:15:00.123Z"

STATION_CONTEXTS = (
    "Sample.Periodic",
    "Sample.Clock",
    "Transaction.Begin",
    "Transaction.End",
    "Trigger",
)
"""Every context station.py passes to metering.sample_values."""


def valid(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Fail unless ``payload`` is a valid ``action`` request, formats included, and plain
    JSON (a round trip through json gives it back unchanged).

    A copy is validated: the compiled validators fill in the schema's defaults (offline
    false, multiplier 0, tbc false), and the payload as built is what the tests check."""
    wire = json.loads(json.dumps(payload))
    assert wire == payload
    validate(MessageType.Call, action, wire, formats=True)
    return payload


def tx_event(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_type": "Updated",
        "timestamp": NOW,
        "trigger_reason": "MeterValuePeriodic",
        "seq_no": 3,
        "transaction_id": "7c1e2f5a-0b3d-4e8f-9a61-2d4c8b0e7f13",
    }
    fields.update(overrides)
    return valid("TransactionEvent", m.transaction_event(**fields))


# --- BootNotification ------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(BootReasonEnumType))
def test_boot_notification_carries_the_station_and_the_reason(reason: str) -> None:
    payload = valid(
        "BootNotification",
        m.boot_notification(
            vendor="Acme",
            model="Wallbox 7",
            firmware_version="1.4.0",
            serial_number="SN-0042",
            reason=reason,
        ),
    )
    assert payload == {
        "chargingStation": {
            "model": "Wallbox 7",
            "vendorName": "Acme",
            "firmwareVersion": "1.4.0",
            "serialNumber": "SN-0042",
        },
        "reason": str(reason),
    }


def test_boot_notification_cuts_long_texts_to_the_schema_and_leaves_out_no_serial() -> None:
    payload = valid(
        "BootNotification",
        m.boot_notification(
            vendor="V" * 80,
            model="M" * 30,
            firmware_version="F" * 60,
            serial_number=None,
            reason="PowerUp",
        ),
    )
    assert payload["chargingStation"] == {
        "model": "M" * 20,
        "vendorName": "V" * 50,
        "firmwareVersion": "F" * 50,
    }
    long_serial = m.boot_notification(
        vendor="A", model="B", firmware_version="1", serial_number="S" * 40, reason="PowerUp"
    )
    assert valid("BootNotification", long_serial)["chargingStation"]["serialNumber"] == "S" * 25


def test_boot_notification_refuses_a_reason_2_0_1_does_not_have() -> None:
    with pytest.raises(ValueError):
        m.boot_notification(
            vendor="A", model="B", firmware_version="1", serial_number=None, reason="HardReset"
        )


# --- StatusNotification and the charging state -----------------------------------------------

CONNECTOR_STATUS = {
    ConnectorStatus.AVAILABLE: "Available",
    ConnectorStatus.PREPARING: "Occupied",
    ConnectorStatus.CHARGING: "Occupied",
    ConnectorStatus.SUSPENDED_EV: "Occupied",
    ConnectorStatus.SUSPENDED_EVSE: "Occupied",
    ConnectorStatus.FINISHING: "Occupied",
    ConnectorStatus.RESERVED: "Reserved",
    ConnectorStatus.UNAVAILABLE: "Unavailable",
    ConnectorStatus.FAULTED: "Faulted",
}


def test_every_connector_status_has_a_2_0_1_status() -> None:
    assert set(CONNECTOR_STATUS) == set(ConnectorStatus), "a ConnectorStatus member is unmapped"


@pytest.mark.parametrize("status", list(ConnectorStatus))
def test_status_notification_maps_each_connector_status(status: ConnectorStatus) -> None:
    event = StatusChanged(2, status, "NoError", NOW, info="x" * 80, vendor_error_code="E1")
    payload = valid("StatusNotification", m.status_notification(event, evse_id=2))
    assert payload == {
        "timestamp": NOW,
        "connectorStatus": CONNECTOR_STATUS[status],
        "evseId": 2,
        "connectorId": 1,
    }
    assert m.connector_status(status, plugged=True) == CONNECTOR_STATUS[status]


@pytest.mark.parametrize("status", list(ConnectorStatus))
def test_without_a_cable_preparing_and_finishing_are_available(status: ConnectorStatus) -> None:
    expected = CONNECTOR_STATUS[status]
    if status in (ConnectorStatus.PREPARING, ConnectorStatus.FINISHING):
        expected = "Available"
    event = StatusChanged(1, status, "NoError", NOW)
    payload = m.status_notification(event, evse_id=1, connector_id=2, plugged=False)
    assert valid("StatusNotification", payload)["connectorStatus"] == expected
    assert payload["connectorId"] == 2


CHARGING_STATE: dict[ConnectorStatus, tuple[str | None, str | None, str | None]] = {
    # status: (plug unknown, plugged, not plugged)
    ConnectorStatus.AVAILABLE: ("Idle", "EVConnected", "Idle"),
    ConnectorStatus.PREPARING: ("EVConnected", "EVConnected", "Idle"),
    ConnectorStatus.CHARGING: ("Charging", "Charging", "Charging"),
    ConnectorStatus.SUSPENDED_EV: ("SuspendedEV", "SuspendedEV", "SuspendedEV"),
    ConnectorStatus.SUSPENDED_EVSE: ("SuspendedEVSE", "SuspendedEVSE", "SuspendedEVSE"),
    ConnectorStatus.FINISHING: ("EVConnected", "EVConnected", "Idle"),
    ConnectorStatus.RESERVED: ("Idle", "EVConnected", "Idle"),
    ConnectorStatus.UNAVAILABLE: (None, "SuspendedEVSE", "Idle"),
    ConnectorStatus.FAULTED: (None, "SuspendedEVSE", "Idle"),
}


def test_every_connector_status_has_a_charging_state() -> None:
    assert set(CHARGING_STATE) == set(ConnectorStatus), "a ConnectorStatus member is unmapped"


@pytest.mark.parametrize("status", list(ConnectorStatus))
def test_charging_state_of_each_connector_status(status: ConnectorStatus) -> None:
    unknown, plugged, unplugged = CHARGING_STATE[status]
    assert m.charging_state(status) == unknown
    assert m.charging_state(status, plugged=True) == plugged
    assert m.charging_state(status, plugged=False) == unplugged
    for state in (unknown, plugged, unplugged):
        payload = tx_event(charging_state=state)
        assert payload["transactionInfo"].get("chargingState") == state


# --- Sampled values and MeterValues ------------------------------------------------------------

UNIT = {
    "Energy.Active.Import.Register": "Wh",
    "Power.Active.Import": "W",
    "Current.Import": "A",
    "Voltage": "V",
    "Frequency": "Hz",
    "Current.Offered": "A",
    "Power.Offered": "W",
    "SoC": "Percent",
}


def test_the_unit_table_covers_every_measurand_the_station_supports() -> None:
    assert set(UNIT) == SUPPORTED_MEASURANDS


def readings() -> list[MeterReading]:
    """Readings shaped as hal/sim.py makes them (with frequency and SoC), on one and on
    three phases, and a bare one (a meter with neither)."""
    out = []
    for phases in (1, 3):
        out.append(
            MeterReading(
                energy_wh=12345.6,
                power_w=phases * 230.0 * 16.0,
                voltage_v=(230.4,) * phases,
                current_a=(15.987,) * phases,
                power_phase_w=(3680.0,) * phases,
                frequency_hz=50.02,
                soc_percent=42.5,
            )
        )
    out.append(MeterReading(energy_wh=0.0, power_w=0.0))
    return out


@pytest.mark.parametrize("context", STATION_CONTEXTS)
@pytest.mark.parametrize("measurand", sorted(SUPPORTED_MEASURANDS))
def test_every_value_the_station_meters_is_sent(measurand: str, context: str) -> None:
    for phases, reading, full in zip((1, 3, 1), readings(), (True, True, False), strict=True):
        values = sample_values([measurand], reading, context=context, offered_a=16.0, phases=phases)
        assert values or not full, "the simulator's readings supply every measurand"
        if not values:
            continue
        sampled = [m.sampled_value(v) for v in values]
        assert None not in sampled, values
        for v, out in zip(values, sampled, strict=True):
            assert out is not None
            assert out["measurand"] == measurand
            assert out["context"] == context
            assert out["unitOfMeasure"] == {"unit": UNIT[measurand]}
            assert out["value"] == v.value and isinstance(out["value"], int | float)
            assert out.get("phase") == v.phase
            assert out["location"] == v.location
        sample = MeterSample(1, NOW, 12345, values)
        payload = m.meter_values(sample, evse_id=1)
        assert payload is not None
        assert valid("MeterValues", payload) == {
            "evseId": 1,
            "meterValue": [{"timestamp": NOW, "sampledValue": sampled}],
        }
        tx_event(meter_values=[m.meter_value(NOW, values)])


def test_all_measurands_at_once_on_three_phases() -> None:
    reading = readings()[1]
    values = sample_values(
        sorted(SUPPORTED_MEASURANDS), reading, context="Sample.Periodic", offered_a=16, phases=3
    )
    payload = m.meter_values(MeterSample(1, NOW, 12345, values), evse_id=1)
    assert payload is not None
    sampled = valid("MeterValues", payload)["meterValue"][0]["sampledValue"]
    assert len(sampled) == len(values)
    assert {s.get("phase") for s in sampled} == {None, "L1", "L2", "L3", "L1-N", "L2-N", "L3-N"}
    soc = next(s for s in sampled if s["measurand"] == "SoC")
    assert soc == {
        "value": 42.5,
        "context": "Sample.Periodic",
        "measurand": "SoC",
        "location": "EV",
        "unitOfMeasure": {"unit": "Percent"},
    }
    energy = next(s for s in sampled if s["measurand"] == "Energy.Active.Import.Register")
    assert energy["value"] == 12346 and type(energy["value"]) is int


@pytest.mark.parametrize("context", list(ReadingContextEnumType))
def test_each_2_0_1_context_is_kept(context: str) -> None:
    out = m.sampled_value(SampledValue("Voltage", 230, "V", str(context), "L1-N"))
    assert out is not None and out["context"] == str(context)


def test_an_unknown_context_is_sent_as_other() -> None:
    out = m.sampled_value(SampledValue("Voltage", 230, "V", "Sample.Whenever"))
    assert out is not None and out["context"] == "Other"


@pytest.mark.parametrize("measurand", list(MeasurandEnumType))
def test_every_2_0_1_measurand_is_sent(measurand: str) -> None:
    out = m.sampled_value(SampledValue(str(measurand), 1.5, None, "Trigger"))
    assert out is not None and out["measurand"] == str(measurand)
    sample = MeterSample(1, NOW, 0, (SampledValue(str(measurand), 1.5, None, "Trigger"),))
    payload = m.meter_values(sample, evse_id=1)
    assert payload is not None
    valid("MeterValues", payload)


def test_1_6_units_map_to_2_0_1_units() -> None:
    path = Path(ocpp.__file__).parent / "v16" / "schemas" / "MeterValues.json"
    schema = json.loads(path.read_text())
    sampled = schema["properties"]["meterValue"]["items"]["properties"]["sampledValue"]
    units_16 = sampled["items"]["properties"]["unit"]["enum"]
    standard = {str(u) for u in StandardizedUnitsOfMeasureType}
    for unit in units_16:
        out = m.sampled_value(SampledValue("Energy.Active.Import.Register", 1, unit, "Trigger"))
        assert out is not None, unit
        assert out["unitOfMeasure"]["unit"] in standard
        expected = {"Celcius": "Celsius", "Hertz": "Hz"}.get(unit, unit)
        assert out["unitOfMeasure"] == {"unit": expected}


def test_values_2_0_1_cannot_express_are_dropped() -> None:
    dropped = (
        SampledValue("Temperature", 31.0, "Celsius", "Sample.Periodic"),  # no 2.0.1 measurand
        SampledValue("RPM", 1200, None, "Sample.Periodic"),  # no 2.0.1 measurand
        SampledValue("Voltage", 230, "furlong", "Sample.Periodic"),  # not a unit
        SampledValue("Voltage", float("nan"), "V", "Sample.Periodic"),
        SampledValue("Voltage", float("inf"), "V", "Sample.Periodic"),
        SampledValue("Voltage", 230, "V", "Sample.Periodic", "L4"),  # no such phase
        SampledValue("Voltage", 230, "V", "Sample.Periodic", None, "Roof"),  # no such location
    )
    for v in dropped:
        assert m.sampled_value(v) is None, v
    assert m.meter_value(NOW, dropped) is None
    assert m.meter_values(MeterSample(1, NOW, 0, dropped), evse_id=1) is None
    kept = SampledValue("Voltage", 231.5, "V", "Sample.Periodic", "L2-N")
    value = m.meter_value(NOW, (*dropped, kept))
    assert value == {
        "timestamp": NOW,
        "sampledValue": [
            {
                "value": 231.5,
                "context": "Sample.Periodic",
                "measurand": "Voltage",
                "location": "Outlet",
                "phase": "L2-N",
                "unitOfMeasure": {"unit": "V"},
            }
        ],
    }
    assert "meterValue" not in tx_event(meter_values=[m.meter_value(NOW, dropped)])


def test_a_power_factor_without_unit_is_sent_without_unit() -> None:
    out = m.sampled_value(SampledValue("Power.Factor", 0.98, None, "Sample.Periodic"))
    assert out == {
        "value": 0.98,
        "context": "Sample.Periodic",
        "measurand": "Power.Factor",
        "location": "Outlet",
    }


# --- TransactionEvent ----------------------------------------------------------------------

STOPPED_REASON = {
    StopReason.DE_AUTHORIZED: "DeAuthorized",
    StopReason.EMERGENCY_STOP: "EmergencyStop",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.HARD_RESET: "ImmediateReset",
    StopReason.LOCAL: "Local",
    StopReason.OTHER: "Other",
    StopReason.POWER_LOSS: "PowerLoss",
    StopReason.REBOOT: "Reboot",
    StopReason.REMOTE: "Remote",
    StopReason.SOFT_RESET: "ImmediateReset",
    StopReason.UNLOCK_COMMAND: "Remote",
    StopReason.STOPPED_BY_EV: "StoppedByEV",
    StopReason.TIMEOUT: "Timeout",
}


def test_every_stop_reason_has_a_2_0_1_reason() -> None:
    assert set(STOPPED_REASON) == set(StopReason), "a StopReason member is unmapped"


@pytest.mark.parametrize("reason", list(StopReason))
def test_ended_event_carries_each_stop_reason(reason: StopReason) -> None:
    assert m.stopped_reason(reason) == STOPPED_REASON[reason]
    payload = tx_event(
        event_type="Ended",
        trigger_reason="StopAuthorized",
        stopped_reason=m.stopped_reason(reason),
        evse_id=1,
    )
    assert payload["transactionInfo"]["stoppedReason"] == STOPPED_REASON[reason]


def test_a_1_6_only_stop_reason_cannot_slip_into_an_event() -> None:
    with pytest.raises(ValueError):
        m.transaction_event(
            event_type="Ended",
            timestamp=NOW,
            trigger_reason="ResetCommand",
            seq_no=9,
            transaction_id="t1",
            stopped_reason="HardReset",
        )


def test_started_event_with_every_field() -> None:
    begin = (SampledValue("Energy.Active.Import.Register", 1000, "Wh", "Transaction.Begin"),)
    payload = tx_event(
        event_type="Started",
        timestamp=LATER,
        trigger_reason="Authorized",
        seq_no=0,
        evse_id=2,
        connector_id=1,
        charging_state="EVConnected",
        remote_start_id=77,
        id_token=m.id_token("04A2B3C4D5E6F7", "ISO14443"),
        meter_values=[m.meter_value(LATER, begin), None],
        offline=True,
        time_spent_charging=0,
        number_of_phases_used=3,
        reservation_id=5,
    )
    assert payload == {
        "eventType": "Started",
        "timestamp": LATER,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {
            "transactionId": "7c1e2f5a-0b3d-4e8f-9a61-2d4c8b0e7f13",
            "chargingState": "EVConnected",
            "timeSpentCharging": 0,
            "remoteStartId": 77,
        },
        "offline": True,
        "numberOfPhasesUsed": 3,
        "reservationId": 5,
        "idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"},
        "evse": {"id": 2, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": LATER,
                "sampledValue": [
                    {
                        "value": 1000,
                        "context": "Transaction.Begin",
                        "measurand": "Energy.Active.Import.Register",
                        "location": "Outlet",
                        "unitOfMeasure": {"unit": "Wh"},
                    }
                ],
            }
        ],
    }


def test_minimal_event_leaves_out_what_was_not_given() -> None:
    assert tx_event() == {
        "eventType": "Updated",
        "timestamp": NOW,
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "7c1e2f5a-0b3d-4e8f-9a61-2d4c8b0e7f13"},
    }
    assert tx_event(evse_id=1, connector_id=None)["evse"] == {"id": 1}
    assert "offline" not in tx_event(offline=False)


def test_identifiers_too_long_for_the_schema_are_refused_not_cut() -> None:
    with pytest.raises(ValueError, match="transaction id"):
        m.transaction_event(
            event_type="Started",
            timestamp=NOW,
            trigger_reason="Authorized",
            seq_no=0,
            transaction_id="x" * 37,
        )
    with pytest.raises(ValueError, match="id token"):
        m.id_token("A" * 37)
    with pytest.raises(ValueError):
        m.id_token("ABC", "Card")
    with pytest.raises(ValueError):
        tx_event(trigger_reason="Whenever")


@pytest.mark.parametrize("kind", ["ISO14443", "Central", "Local", "eMAID", "NoAuthorization"])
def test_id_token_is_a_valid_authorize_request(kind: str) -> None:
    token = m.id_token("" if kind == "NoAuthorization" else "AB12CD34", kind)
    assert valid("Authorize", {"idToken": token})["idToken"]["type"] == kind
    assert m.id_token("AB12CD34") == {"idToken": "AB12CD34", "type": "ISO14443"}


# --- IdTokenInfo -> AuthDecision ------------------------------------------------------------

AUTH = {
    "Accepted": AuthStatus.ACCEPTED,
    "Blocked": AuthStatus.BLOCKED,
    "ConcurrentTx": AuthStatus.CONCURRENT_TX,
    "Expired": AuthStatus.EXPIRED,
    "Invalid": AuthStatus.INVALID,
    "NoCredit": AuthStatus.BLOCKED,
    "NotAllowedTypeEVSE": AuthStatus.BLOCKED,
    "NotAtThisLocation": AuthStatus.BLOCKED,
    "NotAtThisTime": AuthStatus.BLOCKED,
    "Unknown": AuthStatus.INVALID,
}


def test_every_2_0_1_authorization_status_is_mapped() -> None:
    assert set(AUTH) == {str(s) for s in AuthorizationStatusEnumType}


@pytest.mark.parametrize("status", sorted(AUTH))
def test_auth_decision_from_each_2_0_1_status(status: str) -> None:
    info = {"status": status, "groupIdToken": {"idToken": "FLEET-7", "type": "Central"}}
    validate(MessageType.CallResult, "Authorize", {"idTokenInfo": dict(info)}, formats=True)
    decision = m.auth_decision(info)
    assert decision.status is AUTH[status]
    assert decision.group_token == "FLEET-7"
    assert decision.accepted is (status == "Accepted")


@pytest.mark.parametrize("status", list(AuthStatus))
def test_each_station_auth_status_comes_from_its_own_name(status: AuthStatus) -> None:
    decision = m.auth_decision({"status": str(status)})
    assert decision.status is status
    assert decision.group_token is None


def test_an_unknown_status_is_invalid() -> None:
    assert m.auth_decision({"status": "Maybe"}).status is AuthStatus.INVALID
    assert m.auth_decision({}).status is AuthStatus.INVALID


# --- SecurityEventNotification, FirmwareStatusNotification, LogStatusNotification -------------

RENAMED_SECURITY_EVENTS = {
    "FailedToAuthenticateAtCentralSystem": "FailedToAuthenticateAtCsms",
    "CentralSystemFailedToAuthenticate": "CsmsFailedToAuthenticate",
    "InvalidCentralSystemCertificate": "InvalidCsmsCertificate",
    "InvalidChargePointCertificate": "InvalidChargingStationCertificate",
}


@pytest.mark.parametrize("kind", list(SecurityEventType))
def test_each_security_event_of_the_agent_has_its_2_0_1_name(kind: SecurityEventType) -> None:
    payload = valid("SecurityEventNotification", m.security_event(kind, NOW, "detail"))
    expected = RENAMED_SECURITY_EVENTS.get(str(kind), str(kind))
    assert payload == {"type": expected, "timestamp": NOW, "techInfo": "detail"}
    assert expected in {str(e) for e in SecurityEvent201}


def test_security_event_cuts_tech_info_and_leaves_out_none() -> None:
    long = valid(
        "SecurityEventNotification", m.security_event("TamperDetectionActivated", NOW, "t" * 400)
    )
    assert long["techInfo"] == "t" * 255
    assert "techInfo" not in m.security_event("StartupOfTheDevice", NOW)
    assert m.security_event("MaintenanceLoginFailed", NOW)["type"] == "MaintenanceLoginFailed"


@pytest.mark.parametrize("status", list(FirmwareStatus))
def test_each_firmware_status_keeps_its_name(status: FirmwareStatus) -> None:
    assert valid("FirmwareStatusNotification", m.firmware_status(status, 12)) == {
        "status": str(status),
        "requestId": 12,
    }
    assert valid("FirmwareStatusNotification", m.firmware_status(status)) == {"status": str(status)}


def test_a_firmware_status_2_0_1_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError):
        m.firmware_status("Rebooting")


LOG_STATUS = {
    "BadMessage": "BadMessage",
    "Idle": "Idle",
    "NotSupportedOperation": "NotSupportedOperation",
    "PermissionDenied": "PermissionDenied",
    "Uploaded": "Uploaded",
    "UploadFailure": "UploadFailure",
    "Uploading": "Uploading",
    "UploadFailed": "UploadFailure",  # 1.6 DiagnosticsStatus
    "AcceptedCanceled": "AcceptedCanceled",
}


@pytest.mark.parametrize("status", sorted(LOG_STATUS))
def test_each_log_status(status: str) -> None:
    assert valid("LogStatusNotification", m.log_status(status, 4)) == {
        "status": LOG_STATUS[status],
        "requestId": 4,
    }
    assert set(LOG_STATUS.values()) == {str(s) for s in UploadLogStatusEnumType}


def test_a_log_status_2_0_1_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError):
        m.log_status("Done", 1)


# --- NotifyEvent ------------------------------------------------------------------------------


def test_lock_failure_is_the_g05_notify_event() -> None:
    event = m.lock_failure_event(event_id=1, timestamp=NOW, evse_id=2, connector_id=1)
    payload = valid("NotifyEvent", m.notify_event(generated_at=NOW, seq_no=0, events=[event]))
    assert payload == {
        "generatedAt": NOW,
        "seqNo": 0,
        "eventData": [
            {
                "eventId": 1,
                "timestamp": NOW,
                "trigger": "Delta",
                "actualValue": "true",
                "eventNotificationType": "HardWiredNotification",
                "component": {
                    "name": "ConnectorPlugRetentionLock",
                    "evse": {"id": 2, "connectorId": 1},
                },
                "variable": {"name": "Problem"},
            }
        ],
    }
    cleared = m.lock_failure_event(event_id=2, timestamp=LATER, evse_id=2, problem=False)
    assert cleared["actualValue"] == "false" and cleared["cleared"] is True
    valid("NotifyEvent", m.notify_event(generated_at=LATER, seq_no=0, events=[cleared]))


def test_a_generic_event_with_every_field() -> None:
    event = m.event_data(
        event_id=9,
        timestamp=NOW,
        component="EVSE",
        component_instance="main",
        variable="Problem",
        variable_instance="relay",
        actual_value="x" * 3000,
        trigger="Alerting",
        evse_id=1,
        cleared=False,
        tech_code="C" * 60,
        tech_info="I" * 600,
        transaction_id="tx-1",
        cause=3,
        notification="HardWiredMonitor",
    )
    payload = valid(
        "NotifyEvent", m.notify_event(generated_at=NOW, seq_no=1, events=[event], tbc=True)
    )
    data = payload["eventData"][0]
    assert payload["tbc"] is True
    assert data["component"] == {"name": "EVSE", "instance": "main", "evse": {"id": 1}}
    assert data["variable"] == {"name": "Problem", "instance": "relay"}
    assert (len(data["actualValue"]), len(data["techCode"]), len(data["techInfo"])) == (
        2500,
        50,
        500,
    )
    assert (data["trigger"], data["cleared"], data["cause"]) == ("Alerting", False, 3)
    assert "tbc" not in m.notify_event(generated_at=NOW, seq_no=0, events=[event])


def test_notify_event_refuses_no_event_and_overlong_names() -> None:
    with pytest.raises(ValueError):
        m.notify_event(generated_at=NOW, seq_no=0, events=[])
    with pytest.raises(ValueError, match="component"):
        m.event_data(event_id=1, timestamp=NOW, component="C" * 51, variable="P", actual_value="")
    with pytest.raises(ValueError):
        m.event_data(
            event_id=1, timestamp=NOW, component="C", variable="P", actual_value="", trigger="Now"
        )
