"""The ``ocpp`` library's OCPP 2.0.1 enums that the agent uses, named as the library names
them (``ocpp/v201/enums.py``): ``Action.get_variables``, ``ReasonEnumType.ev_disconnected``.

Copies rather than the library's classes: importing ``ocpp.v201.enums`` runs the
``ocpp.v201`` package, which imports the library's ChargePoint (and with it jsonschema,
referencing, attrs and rpds) and its 2.0.1 ``call`` and ``call_result`` dataclasses, none of
which the agent uses (see :mod:`cpagent.protocol.ocppj`); and the library's file builds some
180 enum classes, which costs a small board tens of milliseconds at every start for the 13
the agent needs. The class statements are the library's; the unit tests check that each
class here has the library's members, names and values in the same order, as they check
the 1.6 :mod:`~cpagent.protocol.v16.actions`. Five enums the agent only checks membership
in (measurands, units, phases, reading contexts, locations) are tuples of the library's
values, checked the same way. The names of the standardized components and variables are in
:mod:`cpagent.protocol.v201.standard_names`.

Code that compares the agent's enum members by identity (``is``) takes them from here; by
value (``==``, as StrEnum members are strings) they equal the library's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Action(StrEnum):
    """An Action is a required part of a Call message."""

    authorize = "Authorize"
    boot_notification = "BootNotification"
    cancel_reservation = "CancelReservation"
    certificate_signed = "CertificateSigned"
    change_availability = "ChangeAvailability"
    clear_cache = "ClearCache"
    clear_charging_profile = "ClearChargingProfile"
    clear_display_message = "ClearDisplayMessage"
    cleared_charging_limit = "ClearedChargingLimit"
    clear_variable_monitoring = "ClearVariableMonitoring"
    cost_updated = "CostUpdated"
    customer_information = "CustomerInformation"
    data_transfer = "DataTransfer"
    delete_certificate = "DeleteCertificate"
    firmware_status_notification = "FirmwareStatusNotification"
    get_15118_ev_certificate = "Get15118EVCertificate"
    get_base_report = "GetBaseReport"
    get_certificate_status = "GetCertificateStatus"
    get_charging_profiles = "GetChargingProfiles"
    get_composite_schedule = "GetCompositeSchedule"
    get_display_messages = "GetDisplayMessages"
    get_installed_certificate_ids = "GetInstalledCertificateIds"
    get_local_list_version = "GetLocalListVersion"
    get_log = "GetLog"
    get_monitoring_report = "GetMonitoringReport"
    get_report = "GetReport"
    get_transaction_status = "GetTransactionStatus"
    get_variables = "GetVariables"
    heartbeat = "Heartbeat"
    install_certificate = "InstallCertificate"
    log_status_notification = "LogStatusNotification"
    meter_values = "MeterValues"
    notify_charging_limit = "NotifyChargingLimit"
    notify_customer_information = "NotifyCustomerInformation"
    notify_display_messages = "NotifyDisplayMessages"
    notify_ev_charging_needs = "NotifyEVChargingNeeds"
    notify_ev_charging_schedule = "NotifyEVChargingSchedule"
    notify_event = "NotifyEvent"
    notify_monitoring_report = "NotifyMonitoringReport"
    notify_report = "NotifyReport"
    publish_firmware = "PublishFirmware"
    publish_firmware_status_notification = "PublishFirmwareStatusNotification"
    report_charging_profiles = "ReportChargingProfiles"
    request_start_transaction = "RequestStartTransaction"
    request_stop_transaction = "RequestStopTransaction"
    reservation_status_update = "ReservationStatusUpdate"
    reserve_now = "ReserveNow"
    reset = "Reset"
    security_event_notification = "SecurityEventNotification"
    send_local_list = "SendLocalList"
    set_charging_profile = "SetChargingProfile"
    set_display_message = "SetDisplayMessage"
    set_monitoring_base = "SetMonitoringBase"
    set_monitoring_level = "SetMonitoringLevel"
    set_network_profile = "SetNetworkProfile"
    set_variable_monitoring = "SetVariableMonitoring"
    set_variables = "SetVariables"
    sign_certificate = "SignCertificate"
    status_notification = "StatusNotification"
    transaction_event = "TransactionEvent"
    trigger_message = "TriggerMessage"
    unlock_connector = "UnlockConnector"
    unpublish_firmware = "UnpublishFirmware"
    update_firmware = "UpdateFirmware"


class AuthorizationStatusEnumType(StrEnum):
    """
    Elements that constitute an entry of a Local Authorization List update.
    """

    accepted = "Accepted"
    blocked = "Blocked"
    concurrent_tx = "ConcurrentTx"
    expired = "Expired"
    invalid = "Invalid"
    # Identifier is valid, but EV Driver doesn't have enough credit to start
    # charging. Not allowed for charging.
    no_credit = "NoCredit"
    # Identifier is valid, but not allowed to charge in this type of EVSE.
    not_allowed_type_evse = "NotAllowedTypeEVSE"
    not_at_this_location = "NotAtThisLocation"
    not_at_this_time = "NotAtThisTime"
    unknown = "Unknown"


class BootReasonEnumType(StrEnum):
    """
    BootReasonEnumType is used by bootNotificationBootNotificationRequest
    """

    application_reset = "ApplicationReset"
    firmware_update = "FirmwareUpdate"
    local_reset = "LocalReset"
    power_up = "PowerUp"
    remote_reset = "RemoteReset"
    scheduled_reset = "ScheduledReset"
    triggered = "Triggered"
    unknown = "Unknown"
    watchdog = "Watchdog"


class ChargingStateEnumType(StrEnum):
    """
    The state of the charging process.
    """

    charging = "Charging"
    ev_connected = "EVConnected"
    suspended_ev = "SuspendedEV"
    suspended_evse = "SuspendedEVSE"
    idle = "Idle"


class ConnectorStatusEnumType(StrEnum):
    """
    Status reported in StatusNotification.req. A status can be reported for
    the Charge Point main controller (connectorId = 0) or for a specific
    connector. Status for the Charge Point main controller is a subset of the
    enumeration Available, Unavailable or Faulted.

    States considered Operative are Available, Preparing, Charging,
    SuspendedEVSE, SuspendedEV, Finishing, Reserved.
    States considered Inoperative are Unavailable, Faulted.
    """

    available = "Available"
    occupied = "Occupied"
    reserved = "Reserved"
    unavailable = "Unavailable"
    faulted = "Faulted"


class EventNotificationEnumType(StrEnum):
    """
    Specifies the event notification type of the message.
    """

    hard_wired_notification = "HardWiredNotification"
    hard_wired_monitor = "HardWiredMonitor"
    preconfigured_monitor = "PreconfiguredMonitor"
    custom_monitor = "CustomMonitor"


class EventTriggerEnumType(StrEnum):
    """
    EventTriggerEnumType is used by
    notifyEventNotifyEventRequest.EventDataType
    """

    alerting = "Alerting"
    delta = "Delta"
    periodic = "Periodic"


class FirmwareStatusEnumType(StrEnum):
    """
    Status of a firmware download as reported in
    FirmwareStatusNotificationRequest
    """

    downloaded = "Downloaded"
    download_failed = "DownloadFailed"
    downloading = "Downloading"
    download_scheduled = "DownloadScheduled"
    download_paused = "DownloadPaused"
    idle = "Idle"
    installation_failed = "InstallationFailed"
    installing = "Installing"
    installed = "Installed"
    install_rebooting = "InstallRebooting"
    install_scheduled = "InstallScheduled"
    install_verification_failed = "InstallVerificationFailed"
    invalid_signature = "InvalidSignature"
    signature_verified = "SignatureVerified"


class IdTokenEnumType(StrEnum):
    """
    Allowable values of the IdTokenType field.
    """

    central = "Central"
    e_maid = "eMAID"
    iso14443 = "ISO14443"
    iso15693 = "ISO15693"
    key_code = "KeyCode"
    local = "Local"
    mac_address = "MacAddress"
    no_authorization = "NoAuthorization"


class ReasonEnumType(StrEnum):
    """
    Reason for stopping a transaction in StopTransactionRequest
    """

    de_authorized = "DeAuthorized"
    emergency_stop = "EmergencyStop"
    energy_limit_reached = "EnergyLimitReached"
    ev_disconnected = "EVDisconnected"
    ground_fault = "GroundFault"
    immediate_reset = "ImmediateReset"
    local = "Local"
    local_out_of_credit = "LocalOutOfCredit"
    master_pass = "MasterPass"
    other = "Other"
    overcurrent_fault = "OvercurrentFault"
    power_loss = "PowerLoss"
    power_quality = "PowerQuality"
    reboot = "Reboot"
    remote = "Remote"
    soc_limit_reached = "SOCLimitReached"
    stopped_by_ev = "StoppedByEV"
    time_limit_reached = "TimeLimitReached"
    timeout = "Timeout"


class TransactionEventEnumType(StrEnum):
    """
    Type of Event in TransactionEventRequest
    """

    ended = "Ended"
    started = "Started"
    updated = "Updated"


class TriggerReasonEnumType(StrEnum):
    """
    Reason that triggered a transactionEventRequest
    """

    authorized = "Authorized"
    cable_plugged_in = "CablePluggedIn"
    charging_rate_changed = "ChargingRateChanged"
    charging_state_changed = "ChargingStateChanged"
    deauthorized = "Deauthorized"
    energy_limit_reached = "EnergyLimitReached"
    ev_communication_lost = "EVCommunicationLost"
    ev_connect_timeout = "EVConnectTimeout"
    meter_value_clock = "MeterValueClock"
    meter_value_periodic = "MeterValuePeriodic"
    time_limit_reached = "TimeLimitReached"
    trigger = "Trigger"
    unlock_command = "UnlockCommand"
    stop_authorized = "StopAuthorized"
    ev_departed = "EVDeparted"
    ev_detected = "EVDetected"
    remote_stop = "RemoteStop"
    remote_start = "RemoteStart"
    abnormal_condition = "AbnormalCondition"
    signed_data_received = "SignedDataReceived"
    reset_command = "ResetCommand"


class UploadLogStatusEnumType(StrEnum):
    """
    Status in LogStatusNotificationRequest.
    """

    bad_message = "BadMessage"
    idle = "Idle"
    not_supported_operation = "NotSupportedOperation"
    permission_denied = "PermissionDenied"
    uploaded = "Uploaded"
    upload_failure = "UploadFailure"
    uploading = "Uploading"
    accepted_canceled = "AcceptedCanceled"


# The value sets the agent only checks membership in, as tuples of the library's values in its
# order: building them costs a start far less than enum classes with their 81 members.

#: The values of the library's ``MeasurandEnumType``.
MEASURANDS: Final[tuple[str, ...]] = (
    "Current.Export",
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Active.Net",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Energy.Reactive.Net",
    "Energy.Apparent.Net",
    "Energy.Apparent.Import",
    "Energy.Apparent.Export",
    "Frequency",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Factor",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "SoC",
    "Voltage",
)

#: The values of the library's ``StandardizedUnitsOfMeasureType``.
UNITS_OF_MEASURE: Final[tuple[str, ...]] = (
    "ASU",
    "B",
    "dB",
    "dBm",
    "Deg",
    "Hz",
    "lx",
    "m",
    "ms2",
    "N",
    "Ohm",
    "kPa",
    "Percent",
    "RH",
    "RPM",
    "s",
    "VA",
    "kVA",
    "VAh",
    "kVAh",
    "var",
    "kvar",
    "varh",
    "kvarh",
    "Wh",
    "kWh",
    "W",
    "kW",
    "A",
    "V",
    "Celsius",
    "Fahrenheit",
    "K",
)

#: The values of the library's ``PhaseEnumType``.
PHASES: Final[tuple[str, ...]] = (
    "L1",
    "L2",
    "L3",
    "N",
    "L1-N",
    "L2-N",
    "L3-N",
    "L1-L2",
    "L2-L3",
    "L3-L1",
)

#: The values of the library's ``ReadingContextEnumType``.
READING_CONTEXTS: Final[tuple[str, ...]] = (
    "Interruption.Begin",
    "Interruption.End",
    "Other",
    "Sample.Clock",
    "Sample.Periodic",
    "Transaction.Begin",
    "Transaction.End",
    "Trigger",
)

#: The values of the library's ``LocationEnumType``.
LOCATIONS: Final[tuple[str, ...]] = (
    "Body",
    "Cable",
    "EV",
    "Inlet",
    "Outlet",
)
