"""The answers of the OCPP 1.6 charge point to CSMS requests, built as the ``ocpp``
library's ``ocpp.v16.call_result`` dataclasses are: ``call_result.Reset(status="Accepted")``.

Each answer is a dict of its snake_case fields (the handler's return value, which
:meth:`cpagent.protocol.rpc.RpcEndpoint._run_handler` turns into the camelCase payload),
and takes exactly the fields of the library's class of the same name, by keyword: a field
that is missing or unknown is a TypeError, as it is with the dataclass. Plain classes, not
dataclasses: they cost next to nothing to create at start. Not the library's
classes themselves: importing ``ocpp.v16`` imports jsonschema and some 90 dataclasses
(see :mod:`cpagent.protocol.ocppj`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class Answer(dict[str, Any]):
    """An answer: a dict of the fields given. ``required`` must all be given; ``optional``
    ones may be (None: left out of the payload); any other field is a TypeError."""

    required: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values: Any) -> None:
        name = type(self).__name__
        unknown = values.keys() - {*self.required, *self.optional}
        if unknown:
            raise TypeError(f"{name}() got unexpected field(s) {sorted(unknown)}")
        missing = [field for field in self.required if field not in values]
        if missing:
            raise TypeError(f"{name}() is missing the field(s) {missing}")
        super().__init__(values)


class _Status(Answer):
    required = ("status",)


class CancelReservation(_Status):
    pass


class CertificateSigned(_Status):
    pass


class ChangeAvailability(_Status):
    pass


class ChangeConfiguration(_Status):
    pass


class ClearCache(_Status):
    pass


class ClearChargingProfile(_Status):
    pass


class DataTransfer(Answer):
    required = ("status",)
    optional = ("data",)


class DeleteCertificate(_Status):
    pass


class ExtendedTriggerMessage(_Status):
    pass


class GetCompositeSchedule(Answer):
    required = ("status",)
    optional = ("connector_id", "schedule_start", "charging_schedule")


class GetConfiguration(Answer):
    optional = ("configuration_key", "unknown_key")


class GetDiagnostics(Answer):
    optional = ("file_name",)


class GetInstalledCertificateIds(Answer):
    required = ("status",)
    optional = ("certificate_hash_data",)


class GetLocalListVersion(Answer):
    required = ("list_version",)


class GetLog(Answer):
    required = ("status",)
    optional = ("filename",)


class InstallCertificate(_Status):
    pass


class RemoteStartTransaction(_Status):
    pass


class RemoteStopTransaction(_Status):
    pass


class ReserveNow(_Status):
    pass


class Reset(_Status):
    pass


class SendLocalList(_Status):
    pass


class SetChargingProfile(_Status):
    pass


class SignedUpdateFirmware(_Status):
    pass


class TriggerMessage(_Status):
    pass


class UnlockConnector(_Status):
    pass


class UpdateFirmware(Answer):
    pass
