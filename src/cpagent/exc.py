"""The one error hierarchy of cpagent.

Boundaries (CLI, control socket, OCPP handlers) translate these into a user
message, a control-socket error or a CALLERROR; nothing below them prints.
"""


class CpagentError(Exception):
    """Base of every error cpagent raises on purpose."""


class ConfigError(CpagentError, ValueError):
    """The configuration is invalid; ``problems`` holds one ``key: reason`` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StoreError(CpagentError, OSError):
    """The SQLite store cannot be opened or written."""


class AlreadyRunningError(StoreError):
    """Another agent holds the data directory."""


class StoreFullError(StoreError):
    """The disk (or the database's size limit) is full; the write was rolled back and may be
    retried."""


class HalError(CpagentError):
    """A hardware device failed; ``error_code`` is the OCPP 1.6 ChargePointErrorCode."""

    error_code = "OtherError"

    def __init__(self, message: str, *, vendor_error_code: str | None = None) -> None:
        super().__init__(message)
        self.vendor_error_code = vendor_error_code


class MeterFault(HalError):
    error_code = "PowerMeterFailure"


class ContactorFault(HalError):
    error_code = "PowerSwitchFailure"


class PilotFault(HalError):
    error_code = "EVCommunicationError"


class ReaderFault(HalError):
    error_code = "ReaderFailure"


class LockFault(HalError):
    error_code = "ConnectorLockFailure"


class BoardFault(HalError):
    """The EVSE controller board does not answer or reports a failure of its own."""

    error_code = "OtherError"


class NotSimulatedError(CpagentError):
    """A sim command was sent to an agent running real hardware."""


class ControlError(CpagentError):
    """The control socket could not be reached or answered an error."""
