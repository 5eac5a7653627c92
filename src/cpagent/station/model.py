"""The charger as a domain model: statuses, events, and the ports the station talks through.

Nothing here knows OCPP message shapes or versions; each protocol adapter translates:

* Connector statuses are the station's own states (what the EV, the supply and the
  connector do), shown by ``cpagent status`` and the display. 1.6 sends them as they are;
  2.0.1 sends each as a connector status plus a charging state (two small tables in its
  messages module): its statuses are coarser, so this finer set serves both.
* Id tokens (``id_token``, ``group_token``): what a card or a remote start identifies; the
  adapters add the wire's field names and, in 2.0.1, the token's type.
* Transactions begin and end at :class:`TxPoint` s: 2.0.1 lets the CSMS choose them, 1.6
  is one fixed choice (:meth:`StationSettings.stop_points`). The events
  (:class:`TransactionStarted`, ``Authorized``, ``Deauthorized``, ``Stopped``) and
  :class:`StopReason` cover both versions; a reason one version has no word for becomes
  Other there.
* Error codes and measurands use the names both versions share.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cpagent.station.smart_charging import ProfileSet, SmartChargingLimits


class ConnectorStatus(enum.StrEnum):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StopReason(enum.StrEnum):
    DE_AUTHORIZED = "DeAuthorized"
    EMERGENCY_STOP = "EmergencyStop"
    EV_DISCONNECTED = "EVDisconnected"
    HARD_RESET = "HardReset"
    LOCAL = "Local"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    STOPPED_BY_EV = "StoppedByEV"
    """The EV stopped drawing energy (a transaction that ends with the energy transfer)."""
    TIMEOUT = "Timeout"
    """No EV was connected in time to a transaction begun by the authorization."""


class TxPoint(enum.StrEnum):
    """A fact of a connector that can begin or end a transaction (OCPP 2.0.1 names them
    TxStartPoint / TxStopPoint members; OCPP 1.6's rules are a fixed choice of them).

    A transaction begins when a start point becomes true and ends when a stop point that
    was true during it becomes false. PowerPathClosed stands for "authorized and the EV
    connected": the moment the station closes the contactor.
    """

    PARKING_BAY_OCCUPANCY = "ParkingBayOccupancy"
    EV_CONNECTED = "EVConnected"
    AUTHORIZED = "Authorized"
    DATA_SIGNED = "DataSigned"
    POWER_PATH_CLOSED = "PowerPathClosed"
    ENERGY_TRANSFER = "EnergyTransfer"


#: The points the station has facts for: it has no parking bay sensor and signs no meter
#: data, so transactions cannot begin or end by those.
SUPPORTED_TX_POINTS = frozenset(
    {TxPoint.EV_CONNECTED, TxPoint.AUTHORIZED, TxPoint.POWER_PATH_CLOSED, TxPoint.ENERGY_TRANSFER}
)


class AuthStatus(enum.StrEnum):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


@dataclass(frozen=True)
class AuthDecision:
    status: AuthStatus
    group_token: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is AuthStatus.ACCEPTED


class ReservationOutcome(enum.StrEnum):
    """The answer to a reservation request (OCPP 1.6 ReserveNow statuses)."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


@dataclass(frozen=True)
class Reservation:
    """A connector held for one id tag (or its group, ``group_token``) until ``expiry``.

    ``connector_id`` 0 reserves the charger: any one connector is kept free for it.
    ``expiry`` is an aware UTC datetime.
    """

    reservation_id: int
    connector_id: int
    id_token: str
    group_token: str | None
    expiry: datetime

    def admits(self, id_token: str, group_token: str | None) -> bool:
        """Whether ``id_token`` (in group ``group_token``) may use this reservation: it is the
        reserved id tag or the reserved group's own tag, or it belongs to the reserved group."""
        if id_token == self.id_token:
            return True
        group = self.group_token
        return group is not None and group in (id_token, group_token)


@dataclass(frozen=True)
class SampledValue:
    """One measured value; ``context`` and ``measurand`` use the OCPP vocabulary."""

    measurand: str
    value: float
    unit: str | None
    context: str
    phase: str | None = None
    location: str = "Outlet"


@dataclass(frozen=True)
class MeterSample:
    """Meter values taken at one moment.

    ``values`` are reported now (MeterValues); ``stop_values`` are kept for the session's
    final record (StopTxnSampledData / StopTxnAlignedData); ``meter_wh`` is the register,
    remembered so a power cut bills up to it.
    """

    connector_id: int
    timestamp: str
    meter_wh: int
    values: tuple[SampledValue, ...]
    tx_local_id: int | None = None
    stop_values: tuple[SampledValue, ...] = ()


@dataclass(frozen=True)
class TransactionStarted:
    connector_id: int
    id_token: str | None
    """None for a transaction begun before any authorization (by the EV connecting)."""
    meter_start_wh: int
    timestamp: str
    begin_values: tuple[SampledValue, ...] = ()
    reservation_id: int | None = None
    trigger: TxPoint = TxPoint.POWER_PATH_CLOSED
    """The start point that began it."""


@dataclass(frozen=True)
class TransactionAuthorized:
    """A transaction begun without authorization got one (a card, a remote start)."""

    local_id: int
    connector_id: int
    id_token: str
    timestamp: str
    reservation_id: int | None = None


@dataclass(frozen=True)
class TransactionDeauthorized:
    """The authorization of a transaction ended while the transaction goes on: Authorized
    is not one of its stop points. Energy stops; the transaction ends at a stop point."""

    local_id: int
    connector_id: int
    reason: StopReason
    timestamp: str
    id_token: str | None = None


@dataclass(frozen=True)
class TransactionStopped:
    local_id: int
    connector_id: int
    meter_stop_wh: int
    timestamp: str
    reason: StopReason
    id_token: str | None = None
    end_values: tuple[SampledValue, ...] = ()


@dataclass(frozen=True)
class StatusChanged:
    connector_id: int
    status: ConnectorStatus
    error_code: str
    timestamp: str
    info: str | None = None
    vendor_error_code: str | None = None


@dataclass
class ActiveTransaction:
    local_id: int
    id_token: str | None
    meter_start_wh: int
    started_at: str
    transaction_id: int | None = None
    group_token: str | None = None
    suspended: bool = False  # energy withheld on purpose (the CSMS refused the id tag)
    energy_cap_wh: float | None = None  # register value at which to withhold energy
    authorized: bool = True
    """Whether an authorization lets energy flow: False before the first one (a transaction
    begun by the EV connecting) and after it ended (its stop points go on)."""
    ev_seen: bool = True
    """Whether an EV has been connected during it (False: begun by a card, EV awaited)."""
    closed_seen: bool = False
    """Whether the contactor has been closed during it (PowerPathClosed as a stop point)."""
    drawn_seen: bool = False
    """Whether the EV has drawn energy during it (EnergyTransfer as a stop point)."""


@dataclass(frozen=True)
class ArmedSession:
    """An authorized EV supplied while no transaction runs yet: the transaction begins when
    the EV draws energy (EnergyTransfer as the only start point that can still rise)."""

    id_token: str
    group_token: str | None
    reservation_id: int | None


@dataclass
class Fault:
    device: str  # "meter", "relay", "pilot", "reader"
    error_code: str
    info: str
    vendor_error_code: str | None = None


@dataclass
class ConnectorState:
    """Everything the station knows about one connector; status is derived from it."""

    connector_id: int
    operative: bool = True
    maintenance: bool = False
    """Held for a firmware installation: no new session, Unavailable once idle."""
    pending_inoperative: bool | None = None
    pilot: str = "A"
    offered_a: float = 0.0
    requested_a: float = 0.0
    """The current the station last had the pilot take; the pilot may hold it in its own
    steps (``offered_a``: 12 A for 12.7 A on a board that holds whole amps)."""
    contactor_closed: bool = False
    faults: dict[str, Fault] = field(default_factory=dict)
    transaction: ActiveTransaction | None = None
    armed: ArmedSession | None = None
    authorized_token: str | None = None
    authorized_group: str | None = None
    finishing: bool = False
    reservation: Reservation | None = None
    """A reservation of this very connector."""
    reserved_for_any: bool = False
    """Kept free for reservations of connector 0 (no other connector is left for them)."""
    limit_a: float | None = None
    """The charging profiles' limit on the running session (None: no profile limits it)."""
    energy_wh: float = 0.0
    power_w: float = 0.0
    status: ConnectorStatus | None = None
    error_code: str = "NoError"


class StationOutput(Protocol):
    """Where the station's results go: the protocol adapter implements it.

    The async methods record money-bearing facts and return only once they are
    durable; the station waits for them before it moves on.
    """

    async def transaction_started(self, event: TransactionStarted) -> int:
        """Persist the start and queue its message; return the local transaction id."""

    async def transaction_stopped(self, event: TransactionStopped) -> None: ...

    async def transaction_authorized(self, event: TransactionAuthorized) -> None:
        """Persist the token of a transaction begun without one and queue its message."""

    async def transaction_deauthorized(self, event: TransactionDeauthorized) -> None:
        """Queue the message of an authorization ended while its transaction goes on."""

    async def meter_values(self, sample: MeterSample) -> None: ...

    async def availability_changed(self, connector_id: int, operative: bool) -> None: ...

    def status_changed(self, event: StatusChanged) -> None: ...


class Authorizer(Protocol):
    async def authorize(self, id_token: str) -> AuthDecision: ...


class ReservationStore(Protocol):
    """Where reservations are kept across restarts."""

    async def save_reservations(self, reservations: list[Reservation]) -> None:
        """Replace the persisted reservations with ``reservations`` (all that are in force)."""


class ProfileStore(Protocol):
    """Where charging profiles are kept across restarts."""

    async def save_charging_profiles(self, profiles: ProfileSet) -> None:
        """Replace the persisted charging profiles with ``profiles`` (all installed)."""


@dataclass
class StationSettings:
    """The configuration the station acts on, kept current by the protocol adapter."""

    connection_timeout_s: int = 60
    meter_value_sample_interval_s: int = 60
    sampled_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    clock_aligned_interval_s: int = 0
    aligned_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    stop_txn_sampled_measurands: tuple[str, ...] = ("Energy.Active.Import.Register",)
    stop_txn_aligned_measurands: tuple[str, ...] = ()
    begin_measurands: tuple[str, ...] | None = None
    """The Transaction.Begin values of a new session (2.0.1 TxStartedMeasurands); None:
    those of ``stop_txn_sampled_measurands`` (1.6 reports them in StopTransaction)."""
    stop_on_ev_side_disconnect: bool = True
    """1.6: an EV unplugged ends its transaction. 2.0.1: it ends the authorization (which
    ends the transaction when Authorized is a stop point)."""
    tx_start_points: frozenset[TxPoint] = frozenset({TxPoint.POWER_PATH_CLOSED})
    tx_stop_points: frozenset[TxPoint] | None = None
    """None: OCPP 1.6's rule, Authorized, and EVConnected while
    ``stop_on_ev_side_disconnect``."""
    unlock_on_ev_side_disconnect: bool = True
    authorize_remote_tx_requests: bool = False
    stop_on_invalid_id: bool = True
    max_energy_on_invalid_wh: int = 0
    reserve_connector_zero_supported: bool = False
    smart_charging: SmartChargingLimits = field(default_factory=SmartChargingLimits)

    def stop_points(self) -> frozenset[TxPoint]:
        """The stop points in force (see ``tx_stop_points``)."""
        if self.tx_stop_points is not None:
            return self.tx_stop_points
        if self.stop_on_ev_side_disconnect:
            return frozenset({TxPoint.AUTHORIZED, TxPoint.EV_CONNECTED})
        return frozenset({TxPoint.AUTHORIZED})
