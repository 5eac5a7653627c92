"""Payloads of the OCPP 2.0.1 messages the charging station sends, built from station facts.

The 2.0.1 counterpart of :mod:`cpagent.protocol.v16.messages`: pure translation of the
station's protocol-neutral facts (:mod:`cpagent.station.model`) into JSON-ready dicts in the
2.0.1 field names. No I/O, no clock, no asyncio; the adapter decides *when* to send and
fills in what only it knows (sequence numbers, transaction ids, EVSE numbering).

Every payload returned validates against the 2.0.1 schema of its action. Free text is cut
to the schema's maxLength (as the 1.6 messages cut ``meterType``), so a long configured
vendor name never makes an invalid message; identifiers are never cut (a cut id token or
transaction id would name something else) and raise :class:`ValueError` when too long.
Values that 2.0.1 cannot express (a 1.6 measurand with no 2.0.1 name, a unit that is not a
2.0.1 unit) are left out, never sent wrong.

References are to OCPP 2.0.1 Part 2 (edition 3 with its errata): the use case (G01, E01,
...) and the data type each function builds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Final

from cpagent.protocol.v201.enums import (
    LOCATIONS,
    MEASURANDS,
    PHASES,
    READING_CONTEXTS,
    UNITS_OF_MEASURE,
    AuthorizationStatusEnumType,
    BootReasonEnumType,
    ChargingStateEnumType,
    ConnectorStatusEnumType,
    EventNotificationEnumType,
    EventTriggerEnumType,
    FirmwareStatusEnumType,
    IdTokenEnumType,
    ReasonEnumType,
    TransactionEventEnumType,
    TriggerReasonEnumType,
    UploadLogStatusEnumType,
)
from cpagent.station.model import (
    AuthDecision,
    AuthStatus,
    ConnectorStatus,
    MeterSample,
    SampledValue,
    StatusChanged,
    StopReason,
)

# maxLength of the 2.0.1 schema fields filled from free text or identifiers.
VENDOR_NAME_MAX: Final = 50
MODEL_MAX: Final = 20
SERIAL_NUMBER_MAX: Final = 25
FIRMWARE_VERSION_MAX: Final = 50
ID_TOKEN_MAX: Final = 36
TRANSACTION_ID_MAX: Final = 36
SECURITY_EVENT_TYPE_MAX: Final = 50
SECURITY_TECH_INFO_MAX: Final = 255
EVENT_ACTUAL_VALUE_MAX: Final = 2500
EVENT_TECH_CODE_MAX: Final = 50
EVENT_TECH_INFO_MAX: Final = 500
COMPONENT_NAME_MAX: Final = 50
"""ComponentType/VariableType name and instance."""


def _identifier(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise ValueError(f"{what} {value!r} is longer than {limit} characters")
    return value


# --- B01: BootNotification -------------------------------------------------------------


def boot_notification(
    *,
    vendor: str,
    model: str,
    firmware_version: str,
    serial_number: str | None,
    reason: BootReasonEnumType | str,
) -> dict[str, Any]:
    """BootNotificationRequest (B01-B03): ChargingStationType and the BootReasonEnumType.

    The caller chooses ``reason`` (PowerUp, RemoteReset, FirmwareUpdate, ScheduledReset,
    Triggered, ...); a value outside the enumeration raises ValueError. Each text is cut to
    its field's maxLength (vendorName 50, model 20, serialNumber 25, firmwareVersion 50);
    an empty or absent serial number is left out.
    """
    station: dict[str, Any] = {
        "model": model[:MODEL_MAX],
        "vendorName": vendor[:VENDOR_NAME_MAX],
        "firmwareVersion": firmware_version[:FIRMWARE_VERSION_MAX],
    }
    if serial_number:
        station["serialNumber"] = serial_number[:SERIAL_NUMBER_MAX]
    return {"chargingStation": station, "reason": str(BootReasonEnumType(reason))}


# --- G01: StatusNotification and the charging state -----------------------------------

_CONNECTOR_STATUS: Final[dict[ConnectorStatus, ConnectorStatusEnumType]] = {
    ConnectorStatus.AVAILABLE: ConnectorStatusEnumType.available,
    ConnectorStatus.PREPARING: ConnectorStatusEnumType.occupied,
    ConnectorStatus.CHARGING: ConnectorStatusEnumType.occupied,
    ConnectorStatus.SUSPENDED_EV: ConnectorStatusEnumType.occupied,
    ConnectorStatus.SUSPENDED_EVSE: ConnectorStatusEnumType.occupied,
    ConnectorStatus.FINISHING: ConnectorStatusEnumType.occupied,
    ConnectorStatus.RESERVED: ConnectorStatusEnumType.reserved,
    ConnectorStatus.UNAVAILABLE: ConnectorStatusEnumType.unavailable,
    ConnectorStatus.FAULTED: ConnectorStatusEnumType.faulted,
}

_PLUG_DEPENDENT: Final = frozenset({ConnectorStatus.PREPARING, ConnectorStatus.FINISHING})
"""Station statuses that do not tell whether a cable is plugged in: Preparing is also an
authorized driver waiting for the plug, Finishing also a transaction that outlived its
cable (StopTransactionOnEVSideDisconnect false)."""


def connector_status(status: ConnectorStatus, *, plugged: bool | None = None) -> str:
    """The ConnectorStatusEnumType of a station connector status (G01; the 1.6 migration
    table of Part 2 G01).

    Available -> Available; Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing ->
    Occupied; Reserved -> Reserved; Unavailable -> Unavailable; Faulted -> Faulted.

    2.0.1 Occupied means an EV is connected; with ``plugged=False`` (the caller knows no
    cable is in) Preparing and Finishing are Available instead. A Reserved connector stays
    Reserved with an EV plugged in, as 2.0.1 keeps it until the reserved token is presented.
    """
    if plugged is False and status in _PLUG_DEPENDENT:
        return str(ConnectorStatusEnumType.available)
    return str(_CONNECTOR_STATUS[status])


def status_notification(
    event: StatusChanged, evse_id: int, connector_id: int = 1, *, plugged: bool | None = None
) -> dict[str, Any]:
    """StatusNotificationRequest (G01) for one connector of one EVSE.

    The 1.6 errorCode, info and vendorErrorCode have no place here: 2.0.1 reports a fault's
    cause through the device model (NotifyEvent), only the status travels.
    """
    return {
        "timestamp": event.timestamp,
        "connectorStatus": connector_status(event.status, plugged=plugged),
        "evseId": evse_id,
        "connectorId": connector_id,
    }


_CHARGING_STATE: Final[dict[ConnectorStatus, ChargingStateEnumType | None]] = {
    ConnectorStatus.AVAILABLE: ChargingStateEnumType.idle,
    ConnectorStatus.PREPARING: ChargingStateEnumType.ev_connected,
    ConnectorStatus.CHARGING: ChargingStateEnumType.charging,
    ConnectorStatus.SUSPENDED_EV: ChargingStateEnumType.suspended_ev,
    ConnectorStatus.SUSPENDED_EVSE: ChargingStateEnumType.suspended_evse,
    ConnectorStatus.FINISHING: ChargingStateEnumType.ev_connected,
    ConnectorStatus.RESERVED: ChargingStateEnumType.idle,
    ConnectorStatus.UNAVAILABLE: None,
    ConnectorStatus.FAULTED: None,
}


_EV_CONNECTED: Final = frozenset(
    {ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE}
)
"""Station statuses only a running transaction with an EV connected has."""


def charging_state(status: ConnectorStatus, *, plugged: bool | None = None) -> str | None:
    """The ChargingStateEnumType (TransactionType.chargingState, E01-E15) of a connector.

    Charging -> Charging; SuspendedEV -> SuspendedEV; SuspendedEVSE -> SuspendedEVSE (these
    three always have an EV connected); Available -> Idle (no EV); Preparing and Finishing
    -> EVConnected (plugged, no energy flow); Reserved -> Idle; Unavailable and Faulted ->
    None (the status does not say whether an EV is connected: leave chargingState out).

    ``plugged``, when the caller knows it, settles what the other statuses leave open: no
    cable makes them Idle; a cable makes Available, Preparing, Finishing and Reserved
    EVConnected, and Unavailable and Faulted SuspendedEVSE (an EV is connected and the EVSE
    offers it no energy, the enumeration's definition of SuspendedEVSE).
    """
    state = _CHARGING_STATE[status]
    if status in _EV_CONNECTED or plugged is None:
        return None if state is None else str(state)
    if not plugged:
        return str(ChargingStateEnumType.idle)
    if status in (ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED):
        return str(ChargingStateEnumType.suspended_evse)
    return str(ChargingStateEnumType.ev_connected)


# --- J01/J02: sampled values ----------------------------------------------------------

_UNITS: Final[dict[str, str]] = {
    **{unit: unit for unit in UNITS_OF_MEASURE},
    "Celcius": "Celsius",  # 1.6 schema's misspelling
    "Hertz": "Hz",  # 1.6 JSON schema's name for Hz
}
"""Units the station may use (the 1.6 UnitOfMeasure names) in the 2.0.1 spelling of Part 2's
standardized units of measure. The 1.6 names Wh, kWh, varh, kvarh, W, kW, VA, kVA, var,
kvar, A, V, Celsius, Fahrenheit, K and Percent are spelled the same in 2.0.1."""

_DEFAULT_UNIT: Final[dict[str, str]] = {
    "Current.Export": "A",
    "Current.Import": "A",
    "Current.Offered": "A",
    "Frequency": "Hz",
    "Power.Active.Export": "W",
    "Power.Active.Import": "W",
    "Power.Offered": "W",
    "Power.Reactive.Export": "var",
    "Power.Reactive.Import": "var",
    "SoC": "Percent",
    "Voltage": "V",
}
"""The unit of a value the station gives without one. 2.0.1's unitOfMeasure defaults to Wh,
so the station's unitless Frequency (station/metering.py) must say Hz; energy measurands
default to Wh anyway. Power.Factor has no unit and is sent without one."""

_MEASURANDS: Final = frozenset(MEASURANDS)
_CONTEXTS: Final = frozenset(READING_CONTEXTS)
_PHASES: Final = frozenset(PHASES)
_LOCATIONS: Final = frozenset(LOCATIONS)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def sampled_value(v: SampledValue) -> dict[str, Any] | None:
    """SampledValueType (J01, J02), or None for a value 2.0.1 cannot express.

    ``value`` is a JSON number (1.6 sent a string); ``unitOfMeasure`` carries the unit
    (multiplier left at its default 0: the station reports base units). The 1.6 ``format``
    has no 2.0.1 counterpart (signed data has its own field) and is dropped.

    Dropped, as None: a measurand with no 2.0.1 name (1.6 Temperature, RPM), a value that is
    not finite (JSON has no NaN), a unit that is not a 2.0.1 unit, a phase or location
    outside their enumerations (a per-phase value without its phase would read as the
    total). The station's contexts (Sample.Periodic, Sample.Clock, Transaction.Begin,
    Transaction.End, Trigger) are spelled the same in 2.0.1; any other is sent as Other.
    """
    if v.measurand not in _MEASURANDS or not math.isfinite(v.value):
        return None
    if v.phase is not None and v.phase not in _PHASES:
        return None
    if v.location not in _LOCATIONS:
        return None
    unit = _UNITS.get(v.unit) if v.unit else _DEFAULT_UNIT.get(v.measurand)
    if v.unit and unit is None:
        return None
    out: dict[str, Any] = {
        "value": _number(v.value),
        "context": v.context if v.context in _CONTEXTS else "Other",
        "measurand": v.measurand,
        "location": v.location,
    }
    if v.phase:
        out["phase"] = v.phase
    if unit:
        out["unitOfMeasure"] = {"unit": unit}
    return out


def meter_value(timestamp: str, values: Iterable[SampledValue]) -> dict[str, Any] | None:
    """MeterValueType: the values taken at ``timestamp`` that 2.0.1 can express, or None
    when none is left (the schema wants at least one sampledValue)."""
    sampled = [out for out in map(sampled_value, values) if out is not None]
    if not sampled:
        return None
    return {"timestamp": timestamp, "sampledValue": sampled}


def meter_values(sample: MeterSample, evse_id: int) -> dict[str, Any] | None:
    """MeterValuesRequest (J01: clock-aligned values outside a transaction; evseId 0 is the
    station's main meter), or None when no value of ``sample`` can be sent."""
    value = meter_value(sample.timestamp, sample.values)
    if value is None:
        return None
    return {"evseId": evse_id, "meterValue": [value]}


# --- E: transactions --------------------------------------------------------------------

_STOPPED_REASON: Final[dict[StopReason, ReasonEnumType]] = {
    StopReason.DE_AUTHORIZED: ReasonEnumType.de_authorized,
    StopReason.EMERGENCY_STOP: ReasonEnumType.emergency_stop,
    StopReason.EV_DISCONNECTED: ReasonEnumType.ev_disconnected,
    StopReason.HARD_RESET: ReasonEnumType.immediate_reset,
    StopReason.LOCAL: ReasonEnumType.local,
    StopReason.OTHER: ReasonEnumType.other,
    StopReason.POWER_LOSS: ReasonEnumType.power_loss,
    StopReason.REBOOT: ReasonEnumType.reboot,
    StopReason.REMOTE: ReasonEnumType.remote,
    StopReason.SOFT_RESET: ReasonEnumType.immediate_reset,
    StopReason.UNLOCK_COMMAND: ReasonEnumType.remote,
    StopReason.STOPPED_BY_EV: ReasonEnumType.stopped_by_ev,
    StopReason.TIMEOUT: ReasonEnumType.timeout,
}


def stopped_reason(reason: StopReason) -> str:
    """The ReasonEnumType (TransactionType.stoppedReason, E06) of a station stop reason.

    Same name in 2.0.1: DeAuthorized, EmergencyStop, EVDisconnected, Local, Other,
    PowerLoss, Reboot, Remote. The others:

    * HardReset -> ImmediateReset and SoftReset -> ImmediateReset: 2.0.1 has one reset that
      ends transactions, Reset Immediate (B11/B12; OnIdle waits for them to end), and its
      reason "A Reset(Immediate) command was received". Reboot stays for a restart the
      station makes of its own accord.
    * UnlockCommand -> Remote: a CSMS command ended the transaction, which is what Remote
      says ("stopped remotely on request of the CSMS"); 2.0.1 has no stoppedReason for an
      unlock, and its F05 answers OngoingAuthorizedTransaction rather than end one, so
      only 1.6 behaviour produces this reason. The adapter tells which command with
      triggerReason UnlockCommand.
    """
    return str(_STOPPED_REASON[reason])


def id_token(id_tag: str, kind: IdTokenEnumType | str = IdTokenEnumType.iso14443) -> dict[str, Any]:
    """IdTokenType (C01): an RFID card's UID is ISO14443 (the default), a token from
    RequestStartTransaction keeps the type the CSMS gave (often Central). ``kind`` outside
    IdTokenEnumType, or a token longer than 36 characters, raises ValueError."""
    return {
        "idToken": _identifier(id_tag, ID_TOKEN_MAX, "id token"),
        "type": str(IdTokenEnumType(kind)),
    }


_AUTH_STATUS: Final[dict[AuthorizationStatusEnumType, AuthStatus]] = {
    AuthorizationStatusEnumType.accepted: AuthStatus.ACCEPTED,
    AuthorizationStatusEnumType.blocked: AuthStatus.BLOCKED,
    AuthorizationStatusEnumType.concurrent_tx: AuthStatus.CONCURRENT_TX,
    AuthorizationStatusEnumType.expired: AuthStatus.EXPIRED,
    AuthorizationStatusEnumType.invalid: AuthStatus.INVALID,
    AuthorizationStatusEnumType.no_credit: AuthStatus.BLOCKED,
    AuthorizationStatusEnumType.not_allowed_type_evse: AuthStatus.BLOCKED,
    AuthorizationStatusEnumType.not_at_this_location: AuthStatus.BLOCKED,
    AuthorizationStatusEnumType.not_at_this_time: AuthStatus.BLOCKED,
    AuthorizationStatusEnumType.unknown: AuthStatus.INVALID,
}


def auth_decision(info: dict[str, Any]) -> AuthDecision:
    """The station's decision from an IdTokenInfoType (C01, C09; AuthorizeResponse,
    TransactionEventResponse).

    Accepted, Blocked, ConcurrentTx, Expired and Invalid keep their names. Unknown (the
    CSMS does not know the token) is Invalid, 1.6's "identifier is unknown". NoCredit,
    NotAllowedTypeEVSE, NotAtThisLocation and NotAtThisTime (a known token, not allowed to
    charge here or now) are Blocked, 1.6's known-but-not-allowed. Any other status is
    Invalid. ``groupIdToken.idToken`` becomes ``parent_id_tag`` (C09).
    """
    try:
        status = _AUTH_STATUS[AuthorizationStatusEnumType(info.get("status", ""))]
    except ValueError:
        status = AuthStatus.INVALID
    group = info.get("groupIdToken")
    parent = group.get("idToken") if isinstance(group, dict) else None
    return AuthDecision(status, parent if isinstance(parent, str) and parent else None)


def transaction_event(
    *,
    event_type: TransactionEventEnumType | str,
    timestamp: str,
    trigger_reason: TriggerReasonEnumType | str,
    seq_no: int,
    transaction_id: str,
    evse_id: int | None = None,
    connector_id: int | None = 1,
    charging_state: str | None = None,
    stopped_reason: str | None = None,
    remote_start_id: int | None = None,
    id_token: dict[str, Any] | None = None,
    meter_values: Iterable[dict[str, Any] | None] = (),
    offline: bool = False,
    time_spent_charging: int | None = None,
    number_of_phases_used: int | None = None,
    reservation_id: int | None = None,
) -> dict[str, Any]:
    """TransactionEventRequest (E01-E15).

    ``transactionInfo`` carries transactionId, chargingState, timeSpentCharging,
    stoppedReason and remoteStartId, each only when given. ``evse`` {id, connectorId} is
    included when ``evse_id`` is given: the spec wants it in the first event after the EVSE
    is known and lets later events carry it, so the caller decides.
    ``meter_values`` are MeterValueType dicts as :func:`meter_value` makes them; None
    entries (nothing left to send) are skipped, and no meterValue field is sent for none.
    ``offline`` appears only when true (E04). ``id_token`` is an :func:`id_token` dict.

    The enumerated fields are checked here (ValueError for a value outside
    TransactionEventEnumType, TriggerReasonEnumType, ChargingStateEnumType,
    ReasonEnumType): a 1.6 name such as HardReset must go through :func:`stopped_reason`.
    """
    info: dict[str, Any] = {
        "transactionId": _identifier(transaction_id, TRANSACTION_ID_MAX, "transaction id")
    }
    if charging_state is not None:
        info["chargingState"] = str(ChargingStateEnumType(charging_state))
    if time_spent_charging is not None:
        info["timeSpentCharging"] = time_spent_charging
    if stopped_reason is not None:
        info["stoppedReason"] = str(ReasonEnumType(stopped_reason))
    if remote_start_id is not None:
        info["remoteStartId"] = remote_start_id
    payload: dict[str, Any] = {
        "eventType": str(TransactionEventEnumType(event_type)),
        "timestamp": timestamp,
        "triggerReason": str(TriggerReasonEnumType(trigger_reason)),
        "seqNo": seq_no,
        "transactionInfo": info,
    }
    if offline:
        payload["offline"] = True
    if number_of_phases_used is not None:
        payload["numberOfPhasesUsed"] = number_of_phases_used
    if reservation_id is not None:
        payload["reservationId"] = reservation_id
    if id_token is not None:
        payload["idToken"] = id_token
    if evse_id is not None:
        evse: dict[str, Any] = {"id": evse_id}
        if connector_id is not None:
            evse["connectorId"] = connector_id
        payload["evse"] = evse
    values = [mv for mv in meter_values if mv is not None and mv.get("sampledValue")]
    if values:
        payload["meterValue"] = values
    return payload


# --- A04, L01/L02, N01: security events, firmware and log statuses -------------------------

_SECURITY_EVENT: Final[dict[str, str]] = {
    "FailedToAuthenticateAtCentralSystem": "FailedToAuthenticateAtCsms",
    "CentralSystemFailedToAuthenticate": "CsmsFailedToAuthenticate",
    "InvalidCentralSystemCertificate": "InvalidCsmsCertificate",
    "InvalidChargePointCertificate": "InvalidChargingStationCertificate",
}
"""The security events whose 1.6 security-whitepaper names 2.0.1 renamed (Part 2 appendix 1,
"Security Events"); every other event the agent raises has the same name in both."""


def security_event(kind: str, timestamp: str, tech_info: str | None = None) -> dict[str, Any]:
    """SecurityEventNotificationRequest (A04).

    ``kind`` may be a 1.6 name (:class:`cpagent.security.events.SecurityEventType`): the four
    renamed in 2.0.1 are translated (FailedToAuthenticateAtCentralSystem ->
    FailedToAuthenticateAtCsms, CentralSystemFailedToAuthenticate ->
    CsmsFailedToAuthenticate, InvalidCentralSystemCertificate -> InvalidCsmsCertificate,
    InvalidChargePointCertificate -> InvalidChargingStationCertificate); others pass as they
    are (the field is a free string of at most 50 characters). ``techInfo`` is cut to 255.
    """
    kind = str(kind)
    payload: dict[str, Any] = {
        "type": _SECURITY_EVENT.get(kind, kind)[:SECURITY_EVENT_TYPE_MAX],
        "timestamp": timestamp,
    }
    if tech_info:
        payload["techInfo"] = tech_info[:SECURITY_TECH_INFO_MAX]
    return payload


def firmware_status(status: str, request_id: int | None = None) -> dict[str, Any]:
    """FirmwareStatusNotificationRequest (L01, L02).

    The agent's firmware statuses (:class:`cpagent.station.firmware.FirmwareStatus`: Idle,
    DownloadScheduled, Downloading, Downloaded, DownloadFailed, SignatureVerified,
    InvalidSignature, Installing, Installed, InstallationFailed; those of 1.6 and of its
    security extension) are all FirmwareStatusEnumType names, unchanged. ``requestId`` is
    the UpdateFirmware request's id; the field's description lets it be left out only for a
    triggered notification with no update going on. A status outside the enumeration
    raises ValueError.
    """
    payload: dict[str, Any] = {"status": str(FirmwareStatusEnumType(str(status)))}
    if request_id is not None:
        payload["requestId"] = request_id
    return payload


_LOG_STATUS: Final[dict[str, str]] = {"UploadFailed": str(UploadLogStatusEnumType.upload_failure)}
"""1.6 DiagnosticsStatus names that UploadLogStatusEnumType spells differently."""


def log_status(status: str, request_id: int | None = None) -> dict[str, Any]:
    """LogStatusNotificationRequest (N01).

    The 1.6 security extension's statuses (BadMessage, Idle, NotSupportedOperation,
    PermissionDenied, Uploaded, UploadFailure, Uploading) are UploadLogStatusEnumType
    names unchanged; the 1.6 DiagnosticsStatus UploadFailed becomes UploadFailure.
    ``requestId`` is the GetLog request's id, left out only for a triggered Idle. A status
    outside the enumeration raises ValueError.
    """
    name = _LOG_STATUS.get(str(status), str(status))
    payload: dict[str, Any] = {"status": str(UploadLogStatusEnumType(name))}
    if request_id is not None:
        payload["requestId"] = request_id
    return payload


# --- G05 and device-model events: NotifyEvent ------------------------------------------------


def event_data(
    *,
    event_id: int,
    timestamp: str,
    component: str,
    variable: str,
    actual_value: str,
    trigger: EventTriggerEnumType | str = EventTriggerEnumType.delta,
    evse_id: int | None = None,
    connector_id: int | None = None,
    component_instance: str | None = None,
    variable_instance: str | None = None,
    cleared: bool | None = None,
    tech_code: str | None = None,
    tech_info: str | None = None,
    transaction_id: str | None = None,
    cause: int | None = None,
    notification: EventNotificationEnumType
    | str = EventNotificationEnumType.hard_wired_notification,
) -> dict[str, Any]:
    """EventDataType: one event of a component variable, as NotifyEvent reports it (block N;
    G05's lock failure and other Problem/Delta reports).

    ``component`` sits on EVSE ``evse_id`` (and connector ``connector_id``) when given.
    ``trigger`` defaults to Delta (the variable's value changed) and the notification type
    to HardWiredNotification (an event built into the firmware, not a CSMS monitor).
    Texts are cut to their maxLength (actualValue 2500, techCode 50, techInfo 500); names
    and instances, which identify, raise ValueError past 50 characters.
    """
    comp: dict[str, Any] = {"name": _identifier(component, COMPONENT_NAME_MAX, "component")}
    if component_instance is not None:
        comp["instance"] = _identifier(component_instance, COMPONENT_NAME_MAX, "instance")
    if evse_id is not None:
        evse: dict[str, Any] = {"id": evse_id}
        if connector_id is not None:
            evse["connectorId"] = connector_id
        comp["evse"] = evse
    var: dict[str, Any] = {"name": _identifier(variable, COMPONENT_NAME_MAX, "variable")}
    if variable_instance is not None:
        var["instance"] = _identifier(variable_instance, COMPONENT_NAME_MAX, "instance")
    out: dict[str, Any] = {
        "eventId": event_id,
        "timestamp": timestamp,
        "trigger": str(EventTriggerEnumType(trigger)),
        "actualValue": actual_value[:EVENT_ACTUAL_VALUE_MAX],
        "eventNotificationType": str(EventNotificationEnumType(notification)),
        "component": comp,
        "variable": var,
    }
    if cause is not None:
        out["cause"] = cause
    if tech_code:
        out["techCode"] = tech_code[:EVENT_TECH_CODE_MAX]
    if tech_info:
        out["techInfo"] = tech_info[:EVENT_TECH_INFO_MAX]
    if cleared is not None:
        out["cleared"] = cleared
    if transaction_id is not None:
        out["transactionId"] = _identifier(transaction_id, TRANSACTION_ID_MAX, "transaction id")
    return out


def lock_failure_event(
    *, event_id: int, timestamp: str, evse_id: int, connector_id: int = 1, problem: bool = True
) -> dict[str, Any]:
    """The G05 event: ConnectorPlugRetentionLock.Problem of the connector became true
    (G05.FR.02), or false again with ``cleared`` set when the lock works once more."""
    return event_data(
        event_id=event_id,
        timestamp=timestamp,
        component="ConnectorPlugRetentionLock",
        variable="Problem",
        actual_value="true" if problem else "false",
        evse_id=evse_id,
        connector_id=connector_id,
        cleared=None if problem else True,
    )


def notify_event(
    *, generated_at: str, seq_no: int, events: Iterable[dict[str, Any]], tbc: bool = False
) -> dict[str, Any]:
    """NotifyEventRequest: ``events`` are :func:`event_data` dicts (at least one); ``tbc``
    (to be continued) appears only when true, on every part but the last of a report sent
    in parts numbered by ``seq_no`` from 0."""
    data = list(events)
    if not data:
        raise ValueError("NotifyEvent needs at least one event")
    payload: dict[str, Any] = {"generatedAt": generated_at, "seqNo": seq_no, "eventData": data}
    if tbc:
        payload["tbc"] = True
    return payload
