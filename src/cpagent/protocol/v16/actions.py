"""The actions of OCPP 1.6 with the security extension, named as the ``ocpp`` library's
``ocpp.v16.enums.Action`` names them (``Action.remote_start_transaction``).

A copy rather than the library's enum: importing ``ocpp.v16.enums`` runs the ``ocpp.v16``
package, which imports the library's ChargePoint and with it jsonschema (see
:mod:`cpagent.protocol.ocppj`). The unit tests check that both list the same actions.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """An action of OCPP 1.6: what a CALL asks for."""

    authorize = "Authorize"
    boot_notification = "BootNotification"
    cancel_reservation = "CancelReservation"
    certificate_signed = "CertificateSigned"
    change_availability = "ChangeAvailability"
    change_configuration = "ChangeConfiguration"
    clear_cache = "ClearCache"
    clear_charging_profile = "ClearChargingProfile"
    data_transfer = "DataTransfer"
    delete_certificate = "DeleteCertificate"
    diagnostics_status_notification = "DiagnosticsStatusNotification"
    extended_trigger_message = "ExtendedTriggerMessage"
    firmware_status_notification = "FirmwareStatusNotification"
    get_composite_schedule = "GetCompositeSchedule"
    get_configuration = "GetConfiguration"
    get_diagnostics = "GetDiagnostics"
    get_installed_certificate_ids = "GetInstalledCertificateIds"
    get_local_list_version = "GetLocalListVersion"
    get_log = "GetLog"
    heartbeat = "Heartbeat"
    install_certificate = "InstallCertificate"
    log_status_notification = "LogStatusNotification"
    meter_values = "MeterValues"
    remote_start_transaction = "RemoteStartTransaction"
    remote_stop_transaction = "RemoteStopTransaction"
    reserve_now = "ReserveNow"
    reset = "Reset"
    security_event_notification = "SecurityEventNotification"
    send_local_list = "SendLocalList"
    set_charging_profile = "SetChargingProfile"
    sign_certificate = "SignCertificate"
    signed_firmware_status_notification = "SignedFirmwareStatusNotification"
    signed_update_firmware = "SignedUpdateFirmware"
    start_transaction = "StartTransaction"
    status_notification = "StatusNotification"
    stop_transaction = "StopTransaction"
    trigger_message = "TriggerMessage"
    unlock_connector = "UnlockConnector"
    update_firmware = "UpdateFirmware"
