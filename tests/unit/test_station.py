"""The station as a pure domain object: SimHardware on a fake clock, in-memory ports.

No sockets, no store. ``station.run()`` runs in a background task; every step is awaited
through the fake output's event log with a bounded wait, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from cpagent.exc import (
    ContactorFault,
    HalError,
    MeterFault,
    PilotFault,
    ReaderFault,
    StoreFullError,
)
from cpagent.hal.base import ConnectorLock, Contactor, MeterReading
from cpagent.hal.sim import SimHardware
from cpagent.station import timing
from cpagent.station.metering import sample_values
from cpagent.station.model import (
    ActiveTransaction,
    AuthDecision,
    AuthStatus,
    ConnectorState,
    ConnectorStatus,
    Fault,
    MeterSample,
    StationSettings,
    StatusChanged,
    StopReason,
    TransactionAuthorized,
    TransactionDeauthorized,
    TransactionStarted,
    TransactionStopped,
)
from cpagent.station.station import Station, UnfinishedTransaction
from cpagent.station.status import derive_status
from tests.unit.fakes import FakeClock

T = TypeVar("T")
WAIT_S = 30.0
MAX_A = 32.0
POWER_W = 3 * 230.0 * MAX_A  # sim defaults: 3 phases, 230 V, EV and charger 32 A


# ---------------------------------------------------------------------------- fakes


@dataclass(frozen=True)
class Availability:
    connector_id: int
    operative: bool


class FakeOutput:
    """An in-memory StationOutput: every call is logged in order and wakes the waiters."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Event()
        self._local_ids = itertools.count(1)

    def _record(self, event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    async def transaction_started(self, event: TransactionStarted) -> int:
        self._record(event)
        return next(self._local_ids)

    async def transaction_stopped(self, event: TransactionStopped) -> None:
        self._record(event)

    async def transaction_authorized(self, event: TransactionAuthorized) -> None:
        self._record(event)

    async def transaction_deauthorized(self, event: TransactionDeauthorized) -> None:
        self._record(event)

    async def meter_values(self, sample: MeterSample) -> None:
        self._record(sample)

    async def availability_changed(self, connector_id: int, operative: bool) -> None:
        self._record(Availability(connector_id, operative))

    def status_changed(self, event: StatusChanged) -> None:
        self._record(event)

    # -- test API

    def mark(self) -> int:
        return len(self.events)

    def of(self, kind: type[T], since: int = 0) -> list[T]:
        return [e for e in self.events[since:] if isinstance(e, kind)]

    def statuses(self, connector_id: int, since: int = 0) -> list[tuple[str, str]]:
        return [
            (str(e.status), e.error_code)
            for e in self.of(StatusChanged, since)
            if e.connector_id == connector_id
        ]

    async def wait_for(
        self,
        kind: type[T],
        where: Callable[[T], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = WAIT_S,
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in self.events[since:]:
                if isinstance(event, kind) and (where is None or where(event)):
                    return event
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching {kind.__name__} within {timeout} s; since {since}: "
                    f"{self.events[since:]}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_status(
        self,
        connector_id: int,
        status: ConnectorStatus,
        error_code: str = "NoError",
        *,
        since: int = 0,
    ) -> StatusChanged:
        return await self.wait_for(
            StatusChanged,
            lambda e: (
                e.connector_id == connector_id and e.status is status and e.error_code == error_code
            ),
            since=since,
        )


class FakeAuthorizer:
    """Accepts every id tag unless told otherwise; records what it was asked."""

    def __init__(self) -> None:
        self.decisions: dict[str, AuthDecision] = {}
        self.asked: list[str] = []
        self._asked = asyncio.Event()

    async def authorize(self, id_tag: str) -> AuthDecision:
        self.asked.append(id_tag)
        self._asked.set()
        return self.decisions.get(id_tag, AuthDecision(AuthStatus.ACCEPTED))

    async def wait_asked(self, id_tag: str, timeout: float = WAIT_S) -> None:
        """Until ``id_tag`` was asked about. The station acts on the answer without waiting
        (when no connector can take the card), so it has acted by the time this returns."""

        async def wait() -> None:
            while id_tag not in self.asked:
                self._asked.clear()
                await self._asked.wait()

        await asyncio.wait_for(wait(), timeout)


@dataclass
class Rig:
    clock: FakeClock
    hw: SimHardware
    out: FakeOutput
    auth: FakeAuthorizer
    settings: StationSettings
    station: Station
    task: asyncio.Task[None] | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def run(
        self,
        availability: dict[int, bool] | None = None,
        unfinished: list[UnfinishedTransaction] | None = None,
        **kwargs: Any,
    ) -> None:
        await self.station.start(
            availability=availability or {}, unfinished=unfinished or [], **kwargs
        )
        self.task = asyncio.create_task(self.station.run(), name="station-under-test")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            assert self.task.cancelled(), self.task

    async def start_session(self, id_tag: str = "TAG-1", connector_id: int = 1) -> int:
        """Plug, show a card, wait for the start and Charging; return the local id."""
        mark = self.out.mark()
        self.hw.plug(connector_id)
        await self.out.wait_status(connector_id, ConnectorStatus.PREPARING, since=mark)
        self.hw.present_card(id_tag)
        await self.out.wait_for(TransactionStarted, since=mark)
        await self.out.wait_status(connector_id, ConnectorStatus.CHARGING, since=mark)
        tx = self.station.connectors[connector_id].transaction
        assert tx is not None
        return tx.local_id


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def make(
        connectors: int = 1, *, run: bool = True, energy_wh: float = 0.0, **start: Any
    ) -> Rig:
        clock = FakeClock()
        hw = SimHardware(connectors, clock=clock)
        for cid in hw.connectors:
            hw.raise_energy_floor(cid, energy_wh)
        out, auth, settings = FakeOutput(), FakeAuthorizer(), StationSettings()
        rig = Rig(clock, hw, out, auth, settings, Station(hw, out, auth, settings))
        made.append(rig)
        if run:
            await rig.run(**start)
        return rig

    yield make
    for rig in made:
        await rig.stop()


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig(energy_wh=1234.4)


# ------------------------------------------------------------------ derive_status


def _tx() -> ActiveTransaction:
    return ActiveTransaction(1, "TAG", 0, "2026-01-01T00:00:00.000Z")


def _fault(err: HalError, device: str) -> dict[str, Fault]:
    return {device: Fault(device, err.error_code, str(err))}


def _state(**kw: Any) -> ConnectorState:
    return ConnectorState(1, **kw)


CHARGING = {"pilot": "C", "contactor_closed": True, "offered_a": 16.0}

STATUS_TABLE: list[tuple[str, ConnectorState, ConnectorStatus, str]] = [
    ("idle", _state(), ConnectorStatus.AVAILABLE, "NoError"),
    ("plugged", _state(pilot="B"), ConnectorStatus.PREPARING, "NoError"),
    ("plugged, EV asks", _state(pilot="C"), ConnectorStatus.PREPARING, "NoError"),
    ("card shown first", _state(authorized_token="T"), ConnectorStatus.PREPARING, "NoError"),
    ("charging", _state(transaction=_tx(), **CHARGING), ConnectorStatus.CHARGING, "NoError"),
    (
        "charging, ventilation",
        _state(transaction=_tx(), **{**CHARGING, "pilot": "D"}),
        ConnectorStatus.CHARGING,
        "NoError",
    ),
    (
        "EV asks, relay open",
        _state(transaction=_tx(), pilot="C", offered_a=16.0),
        ConnectorStatus.SUSPENDED_EVSE,
        "NoError",
    ),
    (
        "EV asks, no PWM",
        _state(transaction=_tx(), pilot="C", contactor_closed=True, offered_a=0.0),
        ConnectorStatus.SUSPENDED_EVSE,
        "NoError",
    ),
    (
        "EV waits, no PWM",
        _state(transaction=_tx(), pilot="B", contactor_closed=True, offered_a=0.0),
        ConnectorStatus.SUSPENDED_EVSE,
        "NoError",
    ),
    (
        "EV paused",
        _state(transaction=_tx(), pilot="B", contactor_closed=True, offered_a=16.0),
        ConnectorStatus.SUSPENDED_EV,
        "NoError",
    ),
    (
        "EV gone, tx open",
        _state(transaction=_tx(), pilot="A"),
        ConnectorStatus.FINISHING,
        "NoError",
    ),
    ("after a session", _state(pilot="B", finishing=True), ConnectorStatus.FINISHING, "NoError"),
    ("inoperative", _state(operative=False), ConnectorStatus.UNAVAILABLE, "NoError"),
    (
        "inoperative, plugged",
        _state(operative=False, pilot="B"),
        ConnectorStatus.UNAVAILABLE,
        "NoError",
    ),
    ("pilot F", _state(pilot="F"), ConnectorStatus.UNAVAILABLE, "NoError"),
    (
        "inoperative scheduled, tx runs",
        _state(operative=False, pending_inoperative=True, transaction=_tx(), **CHARGING),
        ConnectorStatus.CHARGING,
        "NoError",
    ),
    (
        "meter fault",
        _state(faults=_fault(MeterFault("meter silent"), "meter")),
        ConnectorStatus.FAULTED,
        "PowerMeterFailure",
    ),
    (
        "welded relay during a session",
        _state(transaction=_tx(), faults=_fault(ContactorFault("welded"), "relay"), **CHARGING),
        ConnectorStatus.FAULTED,
        "PowerSwitchFailure",
    ),
    (
        "pilot cannot be measured",
        _state(faults=_fault(PilotFault("no pilot"), "pilot")),
        ConnectorStatus.FAULTED,
        "EVCommunicationError",
    ),
    ("pilot E", _state(pilot="E"), ConnectorStatus.FAULTED, "EVCommunicationError"),
    (
        "fault beats inoperative",
        _state(operative=False, faults=_fault(HalError("boom"), "meter")),
        ConnectorStatus.FAULTED,
        "OtherError",
    ),
    (
        "first fault wins",
        _state(
            faults={
                **_fault(ContactorFault("welded"), "relay"),
                **_fault(MeterFault("silent"), "meter"),
            }
        ),
        ConnectorStatus.FAULTED,
        "PowerSwitchFailure",
    ),
]


@pytest.mark.parametrize(
    ("state", "status", "error_code"),
    [pytest.param(s, st, code, id=name) for name, s, st, code in STATUS_TABLE],
)
def test_derive_status(state: ConnectorState, status: ConnectorStatus, error_code: str) -> None:
    assert derive_status(state) == (status, error_code)


def test_status_table_covers_every_status_but_reserved() -> None:
    covered = {status for _, _, status, _ in STATUS_TABLE}
    assert covered == set(ConnectorStatus) - {ConnectorStatus.RESERVED}


def test_hal_errors_carry_their_ocpp_error_codes() -> None:
    assert MeterFault("x").error_code == "PowerMeterFailure"
    assert ContactorFault("x").error_code == "PowerSwitchFailure"
    assert PilotFault("x").error_code == "EVCommunicationError"
    assert ReaderFault("x").error_code == "ReaderFailure"
    assert HalError("x").error_code == "OtherError"


# ------------------------------------------------------------------- start-up


async def test_start_reports_available_for_charger_and_connectors(make_rig: RigFactory) -> None:
    rig = await make_rig(2)
    assert rig.out.statuses(0) == [("Available", "NoError")]
    assert rig.out.statuses(1) == [("Available", "NoError")]
    assert rig.out.statuses(2) == [("Available", "NoError")]
    assert all(e.timestamp.endswith("Z") for e in rig.out.of(StatusChanged))


async def test_start_applies_persisted_availability(make_rig: RigFactory) -> None:
    rig = await make_rig(2, availability={0: True, 1: True, 2: False})
    assert rig.out.statuses(1) == [("Available", "NoError")]
    assert rig.out.statuses(2) == [("Unavailable", "NoError")]
    rig = await make_rig(2, availability={0: False})
    assert rig.out.statuses(0) == [("Unavailable", "NoError")]
    assert rig.out.statuses(1) == [("Unavailable", "NoError")]


async def test_start_closes_unfinished_transactions_with_power_loss(make_rig: RigFactory) -> None:
    unfinished = [
        # the meter reads more than was last recorded: the stop takes the meter
        UnfinishedTransaction(7, 1, "OLD-1", meter_start_wh=100, last_meter_wh=450),
        # the meter reads less (its state was lost): never report below what was recorded
        UnfinishedTransaction(8, 2, "OLD-2", meter_start_wh=600, last_meter_wh=800),
    ]
    rig = await make_rig(2, energy_wh=500.0, unfinished=unfinished)
    stops = rig.out.of(TransactionStopped)
    assert [(s.local_id, s.connector_id, s.reason, s.meter_stop_wh) for s in stops] == [
        (7, 1, StopReason.POWER_LOSS, 500),
        (8, 2, StopReason.POWER_LOSS, 800),
    ]
    assert all(s.timestamp.endswith("Z") for s in stops)
    # Closed before any status is reported, and nothing is left running.
    first_status = next(i for i, e in enumerate(rig.out.events) if isinstance(e, StatusChanged))
    assert first_status == 2
    assert all(c.transaction is None for c in rig.station.connectors.values())
    assert rig.out.statuses(1) == [("Available", "NoError")]


async def test_start_after_a_reset_closes_with_the_reset_reason(make_rig: RigFactory) -> None:
    rig = await make_rig(
        unfinished=[UnfinishedTransaction(3, 1, "T", 0, 10)], recovery_reason=StopReason.REBOOT
    )
    assert [s.reason for s in rig.out.of(TransactionStopped)] == [StopReason.REBOOT]


async def test_start_with_an_ev_plugged_reports_finishing(make_rig: RigFactory) -> None:
    rig = await make_rig(run=False)
    rig.hw.plug(1)
    await rig.run()
    assert rig.out.statuses(1) == [("Finishing", "NoError")]
    mark = rig.out.mark()
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)


# -------------------------------------------------------------- local sessions


async def test_plug_then_card_starts_a_session(rig: Rig) -> None:
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert rig.hw.contactor(1).closed is False
    assert rig.hw.pilot(1).offered_current == 0.0

    rig.hw.present_card("TAG-1")
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert (started.connector_id, started.id_token, started.meter_start_wh) == (1, "TAG-1", 1234)
    assert started.timestamp.endswith("Z")
    assert [(v.measurand, v.value, v.context) for v in started.begin_values] == [
        ("Energy.Active.Import.Register", 1234, "Transaction.Begin")
    ]
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.auth.asked == ["TAG-1"]
    assert rig.hw.contactor(1).closed is True
    assert rig.hw.pilot(1).offered_current == MAX_A
    assert rig.hw.snapshot()["connectors"]["1"]["ev_state"] == "C"  # type: ignore[index]
    tx = rig.station.connectors[1].transaction
    assert tx is not None and (tx.local_id, tx.id_token, tx.meter_start_wh) == (1, "TAG-1", 1234)
    assert rig.out.statuses(1, mark) == [("Preparing", "NoError"), ("Charging", "NoError")]


async def test_card_then_plug_starts_a_session(rig: Rig) -> None:
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert rig.station.connectors[1].authorized_token == "TAG-1"
    rig.hw.plug(1)
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert started.id_token == "TAG-1"
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)


async def test_card_shown_first_goes_to_whichever_connector_is_plugged(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2)
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    rig.hw.plug(2)
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert (started.connector_id, started.id_token) == (2, "TAG-1")
    await rig.out.wait_status(2, ConnectorStatus.CHARGING, since=mark)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert rig.station.connectors[1].authorized_token is None
    assert rig.hw.contactor(1).closed is False and rig.hw.contactor(2).closed is True


async def test_rejected_card_starts_nothing(rig: Rig) -> None:
    rig.auth.decisions["BAD"] = AuthDecision(AuthStatus.BLOCKED)
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    rig.hw.present_card("BAD")
    rig.hw.present_card("GOOD")  # read after BAD: once it starts, BAD has been dealt with
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert started.id_token == "GOOD"
    assert rig.auth.asked == ["BAD", "GOOD"]
    assert len(rig.out.of(TransactionStarted)) == 1


async def test_same_card_again_stops_with_reason_local(rig: Rig) -> None:
    local_id = await rig.start_session("TAG-1")
    rig.clock.advance(60)  # one minute at 22 kW
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.local_id == local_id and stopped.connector_id == 1
    assert stopped.reason is StopReason.LOCAL and stopped.id_token == "TAG-1"
    assert stopped.meter_stop_wh == round(1234.4 + POWER_W * 60 / 3600)
    assert [(v.context, v.value) for v in stopped.end_values] == [
        ("Transaction.End", stopped.meter_stop_wh)
    ]
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)
    assert rig.hw.contactor(1).closed is False
    assert rig.hw.pilot(1).offered_current == 0.0
    assert rig.station.connectors[1].transaction is None
    assert rig.auth.asked == ["TAG-1"]  # stopping with the starting card asks nobody

    mark = rig.out.mark()
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)


async def test_a_card_of_the_same_group_stops_the_session(rig: Rig) -> None:
    """A card whose parentIdTag is the session's may stop it (§3.5.3, §5.11). The group
    learnt when the session started holds when the CSMS confirms the start without one."""
    rig.auth.decisions["A"] = AuthDecision(AuthStatus.ACCEPTED, "G")
    rig.auth.decisions["B"] = AuthDecision(AuthStatus.ACCEPTED, "G")
    local_id = await rig.start_session("A")
    rig.station.transaction_confirmed(local_id, 7, AuthDecision(AuthStatus.ACCEPTED))
    mark = rig.out.mark()
    rig.hw.present_card("B")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert (stopped.local_id, stopped.reason, stopped.id_token) == (local_id, StopReason.LOCAL, "B")
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)


async def test_unplug_stops_with_ev_disconnected(rig: Rig) -> None:
    await rig.start_session()
    rig.clock.advance(10)
    mark = rig.out.mark()
    rig.hw.unplug(1)
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.reason is StopReason.EV_DISCONNECTED and stopped.id_token is None
    assert stopped.meter_stop_wh >= 1234
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert rig.hw.contactor(1).closed is False
    assert rig.out.statuses(1, mark) == [("Available", "NoError")]


async def test_ev_pause_and_resume(rig: Rig) -> None:
    await rig.start_session()
    mark = rig.out.mark()
    rig.hw.force_ev_state(1, "B")
    await rig.out.wait_status(1, ConnectorStatus.SUSPENDED_EV, since=mark)
    rig.hw.force_ev_state(1, "C")
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark + 1)


async def test_periodic_meter_values_during_a_session(rig: Rig) -> None:
    rig.settings.meter_value_sample_interval_s = 1
    rig.settings.sampled_measurands = ("Energy.Active.Import.Register", "Power.Active.Import")
    local_id = await rig.start_session()
    rig.clock.advance(3600)
    sample = await rig.out.wait_for(MeterSample, timeout=WAIT_S)
    assert (sample.connector_id, sample.tx_local_id) == (1, local_id)
    values = {(v.measurand, v.phase): v.value for v in sample.values}
    assert values["Energy.Active.Import.Register", None] >= 1234 + POWER_W * 0.99
    assert values["Power.Active.Import", None] == POWER_W
    assert [values["Power.Active.Import", phase] for phase in ("L1", "L2", "L3")] == [
        POWER_W / 3
    ] * 3
    assert {v.context for v in sample.values} == {"Sample.Periodic"}


# ------------------------------------------------------------- remote commands


async def test_remote_start_on_a_plugged_connector(rig: Rig) -> None:
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert await rig.station.remote_start("REMOTE-1", 1) is True
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert started.id_token == "REMOTE-1" and started.connector_id == 1
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.auth.asked == []  # AuthorizeRemoteTxRequests is off
    assert await rig.station.remote_start("OTHER", 1) is False  # busy


async def test_remote_start_waits_for_the_plug(rig: Rig) -> None:
    mark = rig.out.mark()
    assert await rig.station.remote_start("REMOTE-1", None) is True
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert not rig.out.of(TransactionStarted, mark)
    rig.hw.plug(1)
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert started.id_token == "REMOTE-1"


async def test_remote_start_is_authorized_when_configured(rig: Rig) -> None:
    rig.settings.authorize_remote_tx_requests = True
    rig.auth.decisions["BAD"] = AuthDecision(AuthStatus.INVALID)
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert await rig.station.remote_start("BAD", 1) is True
    assert await rig.station.remote_start("GOOD", 1) is True
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert started.id_token == "GOOD"
    assert "BAD" in rig.auth.asked and "GOOD" in rig.auth.asked


async def test_remote_start_refused_for_unknown_or_unavailable_connector(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2, availability={2: False})
    assert await rig.station.remote_start("T", 3) is False
    assert await rig.station.remote_start("T", 2) is False
    rig.hw.set_fault("meter", 1, True)
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "PowerMeterFailure")
    assert await rig.station.remote_start("T", None) is False


async def test_remote_stop(rig: Rig) -> None:
    local_id = await rig.start_session("TAG-1")
    assert await rig.station.remote_stop(77) is False  # the CSMS id is not known yet
    rig.station.transaction_confirmed(local_id, 77, AuthDecision(AuthStatus.ACCEPTED))
    assert rig.station.connectors[1].transaction.transaction_id == 77  # type: ignore[union-attr]
    assert await rig.station.remote_stop(99) is False
    mark = rig.out.mark()
    assert await rig.station.remote_stop(77) is True
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert (stopped.local_id, stopped.reason, stopped.id_token) == (
        local_id,
        StopReason.REMOTE,
        None,
    )
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)
    assert rig.hw.contactor(1).closed is False


async def test_csms_refusing_the_id_tag_deauthorizes(rig: Rig) -> None:
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.station.transaction_confirmed(local_id, 5, AuthDecision(AuthStatus.BLOCKED))
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.reason is StopReason.DE_AUTHORIZED


async def test_csms_refusing_the_id_tag_suspends_when_configured(rig: Rig) -> None:
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.settings.stop_on_invalid_id = False  # and MaxEnergyOnInvalidId = 0
    rig.station.transaction_confirmed(local_id, 5, AuthDecision(AuthStatus.BLOCKED))
    await rig.out.wait_status(1, ConnectorStatus.SUSPENDED_EVSE, since=mark)
    assert rig.station.connectors[1].transaction is not None
    assert rig.hw.contactor(1).closed is False
    assert not rig.out.of(TransactionStopped, mark)


async def test_refused_id_tag_may_still_draw_max_energy_on_invalid_id(rig: Rig) -> None:
    rig.settings.stop_on_invalid_id = False
    rig.settings.max_energy_on_invalid_wh = 100
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.station.transaction_confirmed(local_id, 5, AuthDecision(AuthStatus.INVALID))
    assert rig.hw.contactor(1).closed is True  # under the cap: energy still flows

    rig.clock.advance(20)  # 22080 W for 20 s: 123 Wh, over the cap
    rig.hw.force_ev_state(1, "C")  # a hardware change makes the station look again
    await rig.out.wait_status(1, ConnectorStatus.SUSPENDED_EVSE, since=mark)
    assert rig.hw.contactor(1).closed is False
    assert rig.station.connectors[1].energy_wh >= 1234 + 100
    assert rig.station.connectors[1].transaction is not None
    assert not rig.out.of(TransactionStopped, mark)


# ---------------------------------------------------------------- availability


async def test_change_availability_idle_is_accepted(rig: Rig) -> None:
    mark = rig.out.mark()
    assert await rig.station.change_availability(1, False) == "Accepted"
    await rig.out.wait_status(1, ConnectorStatus.UNAVAILABLE, since=mark)
    assert Availability(1, False) in rig.out.events[mark:]
    # An inoperative connector starts nothing.
    rig.hw.plug(1)
    rig.hw.present_card("TAG-1")
    await rig.auth.wait_asked("TAG-1")
    assert await rig.station.remote_start("R", 1) is False
    assert rig.station.connectors[1].authorized_token is None
    assert await rig.station.change_availability(1, True) == "Accepted"
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert Availability(1, True) in rig.out.events[mark:]
    assert not rig.out.of(TransactionStarted)


async def test_change_availability_during_a_session_is_scheduled(rig: Rig) -> None:
    await rig.start_session("TAG-1")
    mark = rig.out.mark()
    assert await rig.station.change_availability(1, False) == "Scheduled"
    assert rig.station.connectors[1].status is ConnectorStatus.CHARGING
    assert not rig.out.of(Availability, mark)
    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    await rig.out.wait_status(1, ConnectorStatus.UNAVAILABLE, since=mark)
    events = rig.out.events[mark:]
    assert events.index(stopped) < events.index(Availability(1, False))


async def test_change_availability_rejects_an_unknown_connector(rig: Rig) -> None:
    assert await rig.station.change_availability(5, False) == "Rejected"
    assert await rig.station.change_availability(5, True) == "Rejected"


async def test_change_availability_of_the_whole_charger(make_rig: RigFactory) -> None:
    rig = await make_rig(2)
    mark = rig.out.mark()
    assert await rig.station.change_availability(0, False) == "Accepted"
    await rig.out.wait_status(0, ConnectorStatus.UNAVAILABLE, since=mark)
    await rig.out.wait_status(1, ConnectorStatus.UNAVAILABLE, since=mark)
    await rig.out.wait_status(2, ConnectorStatus.UNAVAILABLE, since=mark)
    assert {Availability(0, False), Availability(1, False), Availability(2, False)} <= set(
        rig.out.of(Availability, mark)
    )
    assert await rig.station.change_availability(0, True) == "Accepted"
    await rig.out.wait_status(0, ConnectorStatus.AVAILABLE, since=mark)
    await rig.out.wait_status(2, ConnectorStatus.AVAILABLE, since=mark)


async def test_unplug_unlocks_the_connector_as_configured(rig: Rig) -> None:
    await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert rig.hw.lock(1).unlocks == 1

    rig.settings.unlock_on_ev_side_disconnect = False
    await rig.start_session("TAG-2")
    mark = rig.out.mark()
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert rig.hw.lock(1).unlocks == 1


# ---------------------------------------------------------------------- faults


async def test_meter_fault_during_a_session_faults_and_recovers(rig: Rig) -> None:
    local_id = await rig.start_session("TAG-1")
    rig.clock.advance(60)
    mark = rig.out.mark()
    rig.hw.set_fault("meter", 1, True)
    faulted = await rig.out.wait_status(1, ConnectorStatus.FAULTED, "PowerMeterFailure", since=mark)
    assert faulted.info and "does not answer" in faulted.info
    assert faulted.vendor_error_code == "SimMeterTimeout"
    assert rig.station.connectors[1].transaction is not None  # the session goes on

    rig.clock.advance(60)  # the register keeps counting while the meter is silent
    rig.hw.set_fault("meter", 1, False)
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    tx = rig.station.connectors[1].transaction
    assert tx is not None and tx.local_id == local_id
    assert not rig.out.of(TransactionStopped, mark)

    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.local_id == local_id
    assert stopped.meter_stop_wh == round(1234.4 + POWER_W * 120 / 3600)


async def test_meter_fault_on_stop_uses_the_last_known_register(rig: Rig) -> None:
    await rig.start_session("TAG-1")
    rig.clock.advance(60)
    mark = rig.out.mark()
    rig.hw.set_fault("meter", 1, True)  # the fault notification reads the meter once more
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "PowerMeterFailure", since=mark)
    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.meter_stop_wh >= 1234
    assert stopped.end_values == ()


async def test_welded_relay_faults_with_power_switch_failure(rig: Rig) -> None:
    local_id = await rig.start_session("TAG-1")
    rig.hw.set_fault("relay", 1, True)
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.local_id == local_id and stopped.reason is StopReason.LOCAL
    faulted = await rig.out.wait_status(
        1, ConnectorStatus.FAULTED, "PowerSwitchFailure", since=mark
    )
    assert faulted.vendor_error_code == "SimRelayWelded"
    assert rig.hw.contactor(1).closed is True  # welded
    assert rig.hw.pilot(1).offered_current == 0.0  # but the EV is told to stop drawing
    assert rig.station.connectors[1].transaction is None

    # Nothing new starts on a faulted connector.
    rig.hw.present_card("TAG-2")
    await rig.auth.wait_asked("TAG-2")
    assert rig.station.connectors[1].authorized_token is None
    assert await rig.station.remote_start("R", 1) is False

    # Once the relay opens again the connector recovers.
    mark = rig.out.mark()
    rig.hw.set_fault("relay", 1, False)
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)
    assert rig.hw.contactor(1).closed is False
    assert len(rig.out.of(TransactionStarted)) == 1


async def test_pilot_fault_reports_ev_communication_error(rig: Rig) -> None:
    mark = rig.out.mark()
    rig.hw.set_fault("pilot", 1, True)
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "EVCommunicationError", since=mark)
    rig.hw.set_fault("pilot", 1, False)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)


async def test_pilot_short_during_a_session_cuts_the_supply_until_it_clears(rig: Rig) -> None:
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.set_fault("pilot", 1, True)
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "EVCommunicationError", since=mark)
    assert rig.hw.contactor(1).closed is False
    assert rig.hw.pilot(1).offered_current == 0.0
    assert rig.hw.meter(1) is not None and (await rig.hw.meter(1).read()).power_w == 0.0

    rig.hw.set_fault("pilot", 1, False)
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.hw.contactor(1).closed is True
    tx = rig.station.connectors[1].transaction
    assert tx is not None and tx.local_id == local_id
    assert not rig.out.of(TransactionStopped, mark)


# -------------------------------------------------------------------- metering


THREE_PHASE = MeterReading(
    energy_wh=1234.56,
    power_w=11040.04,
    voltage_v=(230.04, 231.0, 229.0),
    current_a=(16.004, 15.5, 16.0),
    power_phase_w=(3680.0, 3580.0, 3664.0),
    frequency_hz=50.004,
    soc_percent=42.26,
)


def test_sample_values_reports_per_phase_quantities() -> None:
    values = sample_values(
        ["Current.Import", "Voltage", "Energy.Active.Import.Register"],
        THREE_PHASE,
        context="Sample.Periodic",
        offered_a=16.0,
        phases=3,
    )
    assert [(v.measurand, v.phase, v.value, v.unit) for v in values] == [
        ("Current.Import", "L1", 16.0, "A"),
        ("Current.Import", "L2", 15.5, "A"),
        ("Current.Import", "L3", 16.0, "A"),
        ("Voltage", "L1-N", 230.0, "V"),
        ("Voltage", "L2-N", 231.0, "V"),
        ("Voltage", "L3-N", 229.0, "V"),
        ("Energy.Active.Import.Register", None, 1235, "Wh"),
    ]
    assert {(v.context, v.location) for v in values} == {("Sample.Periodic", "Outlet")}


def test_sample_values_single_phase_has_only_l1() -> None:
    reading = MeterReading(100.0, 3680.0, voltage_v=(230.0,), current_a=(16.0,))
    values = sample_values(
        ["Current.Import", "Voltage", "Power.Offered"],
        reading,
        context="Trigger",
        offered_a=16.0,
        phases=1,
    )
    assert [(v.measurand, v.phase, v.value) for v in values] == [
        ("Current.Import", "L1", 16.0),
        ("Voltage", "L1-N", 230.0),
        ("Power.Offered", None, 3680.0),
    ]


def test_sample_values_whole_charger_quantities() -> None:
    values = sample_values(
        [
            "SoC",
            "Power.Active.Import",
            "Frequency",
            "Current.Offered",
            "Power.Offered",
            "Temperature",
        ],
        THREE_PHASE,
        context="Transaction.End",
        offered_a=16.0,
        phases=3,
    )
    assert [(v.measurand, v.value, v.unit, v.phase, v.location) for v in values] == [
        ("SoC", 42.3, "Percent", None, "EV"),
        ("Power.Active.Import", 11040.0, "W", None, "Outlet"),
        ("Power.Active.Import", 3680.0, "W", "L1", "Outlet"),
        ("Power.Active.Import", 3580.0, "W", "L2", "Outlet"),
        ("Power.Active.Import", 3664.0, "W", "L3", "Outlet"),
        ("Frequency", 50.0, None, None, "Outlet"),
        ("Current.Offered", 16.0, "A", None, "Outlet"),
        ("Power.Offered", round(16.0 * 230.04 * 3, 1), "W", None, "Outlet"),
    ]  # Temperature: the sim cannot supply it, so it is left out


def test_sample_values_leaves_out_what_the_reading_lacks() -> None:
    reading = MeterReading(energy_wh=0.0, power_w=0.0)  # no EV, no per-phase data
    values = sample_values(
        ["SoC", "Frequency", "Current.Import", "Voltage", "Power.Offered"],
        reading,
        context="Sample.Clock",
        offered_a=0.0,
        phases=3,
    )
    assert [(v.measurand, v.value) for v in values] == [("Power.Offered", 0.0)]


# ------------------------------------------------------------------- full disk


async def test_a_session_that_cannot_be_recorded_does_not_start(rig: Rig) -> None:
    async def full(_event: TransactionStarted) -> int:
        raise StoreFullError("database or disk is full")

    rig.out.transaction_started = full  # type: ignore[method-assign]
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    rig.hw.present_card("TAG-1")
    await rig.auth.wait_asked("TAG-1")
    await rig.station.sample_now(1)  # the station has handled the card once this returns
    assert rig.station.connectors[1].transaction is None
    assert rig.hw.contactor(1).closed is False
    assert rig.hw.pilot(1).offered_current == 0.0


async def test_the_end_of_a_session_is_retried_until_recorded(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timing, "RECORD_RETRY_S", 0.01)
    local_id = await rig.start_session("TAG-1")
    real = rig.out.transaction_stopped
    failures = 3

    async def flaky(event: TransactionStopped) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreFullError("database or disk is full")
        await real(event)

    rig.out.transaction_stopped = flaky  # type: ignore[method-assign]
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.local_id == local_id and failures == 0
    assert rig.hw.contactor(1).closed is False


# ----------------------------------------------------------- cable lock, relay feedback


class StubbornLock(ConnectorLock):
    """A cable lock that refuses to engage until told to work."""

    def __init__(self) -> None:
        self.works = False
        self.locked = False

    async def lock(self) -> bool:
        self.locked = self.works
        return self.works

    async def unlock(self) -> bool:
        self.locked = False
        return True


async def test_a_cable_lock_that_does_not_engage_keeps_the_supply_off(rig: Rig) -> None:
    lock = StubbornLock()
    rig.hw.connectors[1].lock = lock
    mark = rig.out.mark()
    rig.hw.plug(1)
    rig.hw.present_card("TAG-1")
    await rig.out.wait_for(TransactionStarted, since=mark)
    faulted = await rig.out.wait_status(
        1, ConnectorStatus.FAULTED, "ConnectorLockFailure", since=mark
    )
    assert faulted.vendor_error_code == "LockNotEngaged"
    assert rig.hw.contactor(1).closed is False
    assert rig.hw.pilot(1).offered_current == 0.0

    lock.works = True
    mark = rig.out.mark()
    rig.hw.force_ev_state(1, "C")  # any change makes the station try again
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert lock.locked and rig.hw.contactor(1).closed


class FeedbackContactor(Contactor):
    """A relay whose feedback contact a test can make disagree with the command."""

    def __init__(self, inner: Contactor) -> None:
        self.inner = inner
        self.welded = False

    @property
    def closed(self) -> bool:
        return self.inner.closed or self.welded

    async def set_closed(self, closed: bool) -> None:
        await self.inner.set_closed(closed)
        if not closed and self.welded:
            raise ContactorFault("feedback says closed", vendor_error_code="ContactorWelded")

    async def verify(self) -> None:
        if self.welded and not self.inner.closed:
            raise ContactorFault("feedback says closed", vendor_error_code="ContactorWelded")


async def test_a_contact_that_welds_between_commands_is_reported_and_clears(rig: Rig) -> None:
    relay = FeedbackContactor(rig.hw.connectors[1].contactor)
    rig.hw.connectors[1].contactor = relay
    mark = rig.out.mark()
    relay.welded = True
    rig.hw.plug(1)  # any poll now sees the feedback disagree
    faulted = await rig.out.wait_status(
        1, ConnectorStatus.FAULTED, "PowerSwitchFailure", since=mark
    )
    assert faulted.vendor_error_code == "ContactorWelded"
    rig.hw.present_card("TAG-1")
    await rig.auth.wait_asked("TAG-1")
    assert rig.station.connectors[1].transaction is None  # nothing starts on it

    relay.welded = False
    mark = rig.out.mark()
    rig.hw.force_ev_state(1, "B")
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)


async def test_status_changes_reach_the_hardware_indicator(make_rig: RigFactory) -> None:
    rig = await make_rig(run=False)
    shown: list[tuple[int, str]] = []
    rig.hw.show_status = lambda cid, status: shown.append((cid, str(status)))  # type: ignore[method-assign]
    await rig.run()
    await rig.start_session("TAG-1")
    assert (1, "Available") in shown
    assert shown[-2:] == [(1, "Preparing"), (1, "Charging")]
    assert (0, "Available") in shown


# ------------------------------------------------------------------ maintenance hold


async def test_maintenance_waits_for_the_session_and_refuses_new_ones(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2)
    await rig.start_session("TAG-1", connector_id=1)
    mark = rig.out.mark()
    hold = asyncio.create_task(rig.station.hold_for_maintenance())
    await rig.out.wait_status(2, ConnectorStatus.UNAVAILABLE, since=mark)
    assert not hold.done()  # connector 1 is still charging
    assert await rig.station.remote_start("R", 2) is False
    rig.hw.plug(2)
    rig.hw.present_card("TAG-2")
    await rig.auth.wait_asked("TAG-2")
    assert rig.station.connectors[2].transaction is None

    rig.hw.present_card("TAG-1")  # the running session ends normally
    await asyncio.wait_for(hold, WAIT_S)
    await rig.out.wait_status(1, ConnectorStatus.UNAVAILABLE, since=mark)
    assert len(rig.out.of(TransactionStarted)) == 1

    mark = rig.out.mark()
    await rig.station.end_maintenance()
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)
    await rig.out.wait_status(2, ConnectorStatus.PREPARING, since=mark)
    assert not rig.out.of(Availability)  # nothing persisted


# ------------------------------------------------------------- restart when idle


async def test_busy_connectors_follow_sessions_and_their_end_is_announced(rig: Rig) -> None:
    station = rig.station
    assert station.busy_connectors() == []
    await rig.start_session("TAG-1")
    assert station.busy_connectors() == [1]
    changed = asyncio.create_task(station.activity.wait(WAIT_S))
    mark = rig.out.mark()
    rig.hw.unplug(1)
    assert await changed  # woken by the change, not by its timeout
    assert station.busy_connectors() == []
    # By then the session's end is recorded (the durable queue, in the agent).
    assert [e.reason for e in rig.out.of(TransactionStopped, mark)] == [StopReason.EV_DISCONNECTED]


async def test_a_card_waiting_for_the_ev_counts_as_a_session_about_to_begin(rig: Rig) -> None:
    rig.hw.present_card("TAG-1")
    await rig.out.wait_status(1, ConnectorStatus.PREPARING)
    assert rig.station.busy_connectors() == [1]
    assert await rig.station.quiesce() == [1]
    # Not closed: the EV comes and the session starts.
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_for(TransactionStarted, since=mark)


async def test_a_card_being_authorized_counts_on_every_free_connector(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(connectors=2)
    answer: asyncio.Future[AuthDecision] = asyncio.get_running_loop().create_future()
    asked = asyncio.Event()

    async def slow(id_tag: str) -> AuthDecision:
        asked.set()
        return await answer

    rig.station.authorizer.authorize = slow  # type: ignore[method-assign]
    presenting = asyncio.create_task(rig.station.present_tag("SLOW"))
    await asyncio.wait_for(asked.wait(), WAIT_S)
    assert rig.station.busy_connectors() == [1, 2]
    answer.set_result(AuthDecision(AuthStatus.INVALID))
    await asyncio.wait_for(presenting, WAIT_S)
    assert rig.station.busy_connectors() == []


async def test_an_idle_station_quiesced_for_a_restart_starts_no_session(rig: Rig) -> None:
    assert await rig.station.quiesce() == []
    assert not await rig.station.remote_start("REMOTE", 1)
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    await rig.station.present_tag("TAG-1")
    assert rig.out.of(TransactionStarted, mark) == []
    assert rig.station.connectors[1].transaction is None


async def test_quiesce_with_force_closes_a_busy_station_and_reports_who_is_busy(
    rig: Rig,
) -> None:
    await rig.start_session("TAG-1")
    assert await rig.station.quiesce(force=True) == [1]
    assert not await rig.station.remote_start("REMOTE", None)
    assert rig.station.connectors[1].transaction is not None  # the session is not touched
