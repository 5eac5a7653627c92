"""Reservations in the station (OCPP 1.6 §5.13), without OCPP message shapes.

The rig is test_station's: SimHardware on a fake clock and in-memory ports, plus a
reservation store that logs into the same event log, and a wall clock the test moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cpagent.exc import ReaderFault, StoreFullError
from cpagent.hal.base import CardReader
from cpagent.hal.sim import SimHardware
from cpagent.station import timing
from cpagent.station.model import (
    AuthDecision,
    AuthStatus,
    ConnectorState,
    ConnectorStatus,
    Reservation,
    ReservationOutcome,
    StationSettings,
    StatusChanged,
    TransactionStarted,
)
from cpagent.station.station import Station
from cpagent.station.status import derive_status
from cpagent.timeutil import utcnow
from tests.unit.fakes import FakeClock
from tests.unit.test_station import WAIT_S, FakeAuthorizer, FakeOutput, Rig

START = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0

ACCEPTED = ReservationOutcome.ACCEPTED
FAULTED = ReservationOutcome.FAULTED
OCCUPIED = ReservationOutcome.OCCUPIED
REJECTED = ReservationOutcome.REJECTED
UNAVAILABLE = ReservationOutcome.UNAVAILABLE


# ---------------------------------------------------------------------------- fakes


class WallClock:
    """The wall clock reservations expire by; it moves only when a test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Saved:
    reservations: tuple[Reservation, ...]


class FakeReservationStore:
    """Logs every save into the rig's event log; fails the next ``failures`` saves."""

    def __init__(self, out: FakeOutput) -> None:
        self.out = out
        self.failures = 0

    async def save_reservations(self, reservations: list[Reservation]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreFullError("database or disk is full")
        self.out._record(Saved(tuple(reservations)))


@dataclass
class ReservationRig(Rig):
    wall: WallClock = field(default_factory=WallClock)
    store: FakeReservationStore | None = None

    def reservation(
        self,
        reservation_id: int,
        connector_id: int = 1,
        id_tag: str = "R",
        parent_id_tag: str | None = None,
        *,
        valid_s: float = HOUR,
    ) -> Reservation:
        expiry = self.wall() + timedelta(seconds=valid_s)
        return Reservation(reservation_id, connector_id, id_tag, parent_id_tag, expiry)

    async def reserve(self, *args: Any, **kwargs: Any) -> ReservationOutcome:
        return await self.station.reserve(self.reservation(*args, **kwargs))

    async def settled(self) -> None:
        """Until the station has handled the last hardware change (it holds its lock
        while it does)."""
        await self.station.sample_now(None)

    def started(self, since: int = 0) -> list[tuple[int, str, int | None]]:
        return [
            (e.connector_id, e.id_token, e.reservation_id)
            for e in self.out.of(TransactionStarted, since)
        ]


RigFactory = Callable[..., Awaitable[ReservationRig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    made: list[ReservationRig] = []

    async def make(
        connectors: int = 1,
        *,
        run: bool = True,
        zero: bool = False,
        now: Callable[[], datetime] | None = None,
        **start: Any,
    ) -> ReservationRig:
        clock = FakeClock()
        hw = SimHardware(connectors, clock=clock)
        out, auth = FakeOutput(), FakeAuthorizer()
        settings = StationSettings(reserve_connector_zero_supported=zero)
        wall = WallClock()
        store = FakeReservationStore(out)
        station = Station(hw, out, auth, settings, reservation_store=store, now=now or wall)
        rig = ReservationRig(clock, hw, out, auth, settings, station, wall=wall, store=store)
        made.append(rig)
        if run:
            await rig.run(**start)
        return rig

    yield make
    for rig in made:
        await rig.stop()


@pytest.fixture
async def rig(make_rig: RigFactory) -> ReservationRig:
    return await make_rig(2)


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll a fact no event reports (a plug the station takes in silently); bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.005)


async def plugged(rig: ReservationRig, connector_id: int = 1) -> None:
    """Plug in and wait until the station has seen it (a reserved connector reports
    nothing: it stays Reserved)."""
    rig.hw.plug(connector_id)
    await eventually(lambda: rig.station.connectors[connector_id].pilot == "B", "the plug seen")
    await rig.settled()


# ------------------------------------------------------------------ the pure parts


def _reservation(parent: str | None = None) -> Reservation:
    return Reservation(1, 1, "R", parent, START)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        pytest.param(ConnectorState(1, reservation=_reservation()), "Reserved", id="reserved"),
        pytest.param(ConnectorState(1, reserved_for_any=True), "Reserved", id="kept for conn 0"),
        pytest.param(
            ConnectorState(1, reservation=_reservation(), authorized_token="R"),
            "Preparing",
            id="reserved card shown",
        ),
        pytest.param(
            ConnectorState(1, reservation=_reservation(), pilot="B"), "Reserved", id="plugged"
        ),
        pytest.param(
            ConnectorState(1, reservation=_reservation(), pilot="B", authorized_token="R"),
            "Preparing",
            id="plugged, reserved card shown",
        ),
        pytest.param(
            ConnectorState(1, reservation=_reservation(), operative=False),
            "Unavailable",
            id="inoperative",
        ),
        pytest.param(
            ConnectorState(1, reserved_for_any=True, maintenance=True),
            "Unavailable",
            id="maintenance",
        ),
        pytest.param(
            ConnectorState(1, reservation=_reservation(), pilot="E"), "Faulted", id="pilot E"
        ),
    ],
)
def test_derive_status_of_a_reserved_connector(state: ConnectorState, status: str) -> None:
    assert derive_status(state)[0] == ConnectorStatus(status)


def test_what_a_reservation_admits() -> None:
    plain, group = _reservation(), _reservation("GROUP")
    assert plain.admits("R", None) and plain.admits("R", "ANY")
    assert not plain.admits("X", None) and not plain.admits("X", "R")
    assert group.admits("R", None)
    assert group.admits("CHILD", "GROUP")  # a member of the reserved group
    assert group.admits("GROUP", None)  # the group's own tag
    assert not group.admits("X", "OTHER") and not group.admits("X", None)


# ----------------------------------------------------------------- ReserveNow


async def test_an_accepted_reservation_is_reported_and_persisted(rig: ReservationRig) -> None:
    r = rig.reservation(7, 1, "R", "G")
    mark = rig.out.mark()
    assert await rig.station.reserve(r) is ACCEPTED
    # Both happened before the answer: the status and the durable record.
    assert rig.out.statuses(1, mark) == [("Reserved", "NoError")]
    assert rig.out.statuses(2, mark) == []
    assert rig.out.of(Saved, mark) == [Saved((r,))]
    assert rig.station.reservations == [r]
    one, two = rig.station.snapshot()
    assert one["status"] == "Reserved"
    assert one["reservation"] == {
        "id": 7,
        "id_tag": "R",
        "parent_id_tag": "G",
        "expiry": "2026-05-01T13:00:00.000Z",
    }
    assert two["reservation"] is None and two["status"] == "Available"


async def test_refused_reservations_leave_no_trace(make_rig: RigFactory) -> None:
    rig = await make_rig(1)
    mark = rig.out.mark()
    assert await rig.reserve(1, 2) is REJECTED  # no such connector
    assert await rig.reserve(1, 0) is REJECTED  # ReserveConnectorZeroSupported is false
    assert await rig.reserve(1, 1, valid_s=-1) is REJECTED  # already expired
    assert rig.out.events[mark:] == []
    assert rig.station.reservations == []


async def test_a_faulted_connector_answers_faulted(rig: ReservationRig) -> None:
    rig.hw.set_fault("meter", 1, True)
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "PowerMeterFailure")
    assert await rig.reserve(1, 1) is FAULTED
    rig.hw.set_fault("pilot", 2, True)
    await rig.out.wait_status(2, ConnectorStatus.FAULTED, "EVCommunicationError")
    assert await rig.reserve(1, 2) is FAULTED
    assert rig.station.reservations == []


async def test_an_unavailable_connector_answers_unavailable(make_rig: RigFactory) -> None:
    rig = await make_rig(2, availability={2: False})
    assert await rig.reserve(1, 2) is UNAVAILABLE
    hold = asyncio.create_task(rig.station.hold_for_maintenance())
    await asyncio.wait_for(hold, WAIT_S)
    assert await rig.reserve(1, 1) is UNAVAILABLE
    assert rig.station.reservations == []


async def test_an_unavailable_charger_answers_unavailable(make_rig: RigFactory) -> None:
    rig = await make_rig(2, zero=True, availability={0: False})
    assert await rig.reserve(1, 1) is UNAVAILABLE
    assert await rig.reserve(1, 0) is UNAVAILABLE


async def test_an_occupied_connector_answers_occupied(rig: ReservationRig) -> None:
    # EV plugged: Preparing.
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING)
    assert await rig.reserve(1, 1) is OCCUPIED
    # A session.
    rig.hw.present_card("C")
    await rig.out.wait_for(TransactionStarted)
    assert await rig.reserve(1, 1) is OCCUPIED
    # A card shown, waiting for the cable: Preparing too.
    mark = rig.out.mark()
    rig.hw.present_card("D")
    await rig.out.wait_status(2, ConnectorStatus.PREPARING, since=mark)
    assert await rig.reserve(1, 2) is OCCUPIED
    # Finishing: the session ended with the cable still in.
    rig.hw.present_card("C")
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)
    assert await rig.reserve(1, 1) is OCCUPIED
    assert rig.station.reservations == []


async def test_a_connector_reserved_by_another_reservation_answers_occupied(
    rig: ReservationRig,
) -> None:
    assert await rig.reserve(1, 1, "R") is ACCEPTED
    mark = rig.out.mark()
    assert await rig.reserve(2, 1, "R") is OCCUPIED  # same id tag, another reservation
    assert await rig.reserve(3, 1, "S") is OCCUPIED
    assert rig.out.events[mark:] == []
    assert [r.reservation_id for r in rig.station.reservations] == [1]


async def test_the_same_reservation_id_replaces_the_reservation(rig: ReservationRig) -> None:
    assert await rig.reserve(5, 1, "R") is ACCEPTED
    # Same connector, another id tag and expiry: replaced in place, no status change.
    mark = rig.out.mark()
    new = rig.reservation(5, 1, "S", valid_s=2 * HOUR)
    assert await rig.station.reserve(new) is ACCEPTED
    assert rig.station.reservations == [new]
    assert rig.out.statuses(1, mark) == []
    assert rig.out.of(Saved, mark) == [Saved((new,))]

    # Another connector: the reservation moves.
    mark = rig.out.mark()
    moved = rig.reservation(5, 2, "S")
    assert await rig.station.reserve(moved) is ACCEPTED
    assert rig.station.reservations == [moved]
    assert rig.out.statuses(1, mark) == [("Available", "NoError")]
    assert rig.out.statuses(2, mark) == [("Reserved", "NoError")]

    # A replacement that cannot be placed leaves the reservation as it was.
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    mark = rig.out.mark()
    assert await rig.reserve(5, 1, "T") is OCCUPIED
    assert rig.station.reservations == [moved]
    assert rig.out.events[mark:] == []


# ----------------------------------------------------------- using a reservation


async def test_the_reserved_card_starts_a_session_that_uses_the_reservation(
    rig: ReservationRig,
) -> None:
    """§4.9: a plug-in leaves a connector Reserved; the reservation's identity presented
    makes it Preparing (G2), then its session Charging."""
    assert await rig.reserve(9, 1, "R") is ACCEPTED
    mark = rig.out.mark()
    await plugged(rig)
    assert rig.out.statuses(1, mark) == []
    assert rig.station.snapshot()[0]["status"] == "Reserved"
    assert rig.station.reservations != []  # plugging in does not use it
    rig.hw.present_card("R")
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(1, "R", 9)]
    assert rig.out.statuses(1, mark) == [("Preparing", "NoError"), ("Charging", "NoError")]
    assert rig.station.reservations == []
    assert rig.out.of(Saved, mark) == [Saved(())]
    assert rig.station.snapshot()[0]["reservation"] is None

    # Used up: once the session is over the connector is free for anyone.
    rig.hw.present_card("R")
    mark = rig.out.mark()
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)


async def test_the_reserved_card_shown_before_the_cable(rig: ReservationRig) -> None:
    assert await rig.reserve(9, 2, "R") is ACCEPTED
    mark = rig.out.mark()
    rig.hw.present_card("R")  # goes to its reserved connector, not to the first free one
    await rig.out.wait_status(2, ConnectorStatus.PREPARING, since=mark)
    assert rig.station.connectors[2].authorized_token == "R"
    rig.hw.plug(2)
    await rig.out.wait_status(2, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(2, "R", 9)]
    assert rig.out.statuses(1, mark) == []


async def test_another_card_is_refused_there_but_may_use_another_connector(
    rig: ReservationRig,
) -> None:
    assert await rig.reserve(4, 1, "R") is ACCEPTED
    mark = rig.out.mark()
    await plugged(rig)
    rig.hw.present_card("OTHER")
    # Not started on the plugged, reserved connector: offered the free one instead.
    await rig.out.wait_status(2, ConnectorStatus.PREPARING, since=mark)
    assert rig.station.connectors[1].transaction is None
    assert rig.station.connectors[1].authorized_token is None
    assert rig.station.connectors[2].authorized_token == "OTHER"
    rig.hw.plug(2)
    await rig.out.wait_status(2, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(2, "OTHER", None)]
    assert [r.reservation_id for r in rig.station.reservations] == [4]

    rig.hw.present_card("R")
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(2, "OTHER", None), (1, "R", 4)]


async def test_another_card_gets_nothing_when_only_the_reserved_connector_is_free(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(1)
    assert await rig.reserve(4, 1, "R") is ACCEPTED
    mark = rig.out.mark()
    rig.hw.present_card("OTHER")  # card first
    await rig.auth.wait_asked("OTHER")
    await plugged(rig)
    rig.hw.present_card("ANOTHER")  # cable first
    await rig.auth.wait_asked("ANOTHER")
    await rig.settled()
    assert rig.started() == []
    assert rig.station.connectors[1].authorized_token is None
    assert rig.out.statuses(1, mark) == []  # Reserved throughout


@pytest.mark.parametrize(
    ("id_tag", "decision", "uses_it"),
    [
        pytest.param("CHILD", AuthDecision(AuthStatus.ACCEPTED, "GROUP"), True, id="member"),
        pytest.param("GROUP", AuthDecision(AuthStatus.ACCEPTED), True, id="the group's tag"),
        pytest.param("X", AuthDecision(AuthStatus.ACCEPTED, "ELSE"), False, id="other group"),
        pytest.param("Y", AuthDecision(AuthStatus.ACCEPTED), False, id="no group"),
    ],
)
async def test_a_card_of_the_reserved_group_uses_the_reservation(
    make_rig: RigFactory, id_tag: str, decision: AuthDecision, uses_it: bool
) -> None:
    rig = await make_rig(1)
    rig.auth.decisions[id_tag] = decision
    assert await rig.reserve(3, 1, "R", "GROUP") is ACCEPTED
    mark = rig.out.mark()
    await plugged(rig)
    rig.hw.present_card(id_tag)
    if uses_it:
        await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
        assert rig.started(mark) == [(1, id_tag, 3)]
        assert rig.station.reservations == []
    else:
        await rig.auth.wait_asked(id_tag)
        await rig.settled()
        assert rig.started(mark) == []
        assert [r.reservation_id for r in rig.station.reservations] == [3]


async def test_the_reserved_card_on_another_connector_leaves_the_reservation(
    rig: ReservationRig,
) -> None:
    assert await rig.reserve(4, 1, "R") is ACCEPTED
    mark = rig.out.mark()
    await rig.start_session("R", connector_id=2)
    # §5.13: a reservation of a connector is used by a session on that connector.
    assert rig.started(mark) == [(2, "R", None)]
    assert [r.reservation_id for r in rig.station.reservations] == [4]
    assert rig.out.statuses(1, mark) == []


async def test_a_reservation_past_its_expiry_does_not_hold(make_rig: RigFactory) -> None:
    rig = await make_rig(1)
    assert await rig.reserve(4, 1, "R") is ACCEPTED
    rig.wall.advance(HOUR)  # the wall clock reaches the expiry; the station is not woken
    mark = rig.out.mark()
    await rig.start_session("OTHER")  # the plug-in finds it expired
    assert rig.started(mark) == [(1, "OTHER", None)]
    # Its end (§4.9 G1), then the plug-in (A2) and the session.
    assert rig.out.statuses(1, mark) == [
        ("Available", "NoError"),
        ("Preparing", "NoError"),
        ("Charging", "NoError"),
    ]
    assert rig.station.reservations == []
    await rig.out.wait_for(Saved, lambda s: s.reservations == (), since=mark)


# ------------------------------------------------------------------- remote start


async def test_remote_start_honors_the_reservation(rig: ReservationRig) -> None:
    assert await rig.reserve(4, 2, "R") is ACCEPTED
    assert await rig.station.remote_start("OTHER", 2) is False
    # Without a connector, another id tag is given the free one ...
    assert await rig.station.remote_start("OTHER", None) is True
    assert rig.station.connectors[1].authorized_token == "OTHER"
    # ... and the reserved id tag its reserved one, though another is listed first.
    assert await rig.station.remote_start("R", None) is True
    assert rig.station.connectors[2].authorized_token == "R"
    mark = rig.out.mark()
    rig.hw.plug(2)
    await rig.out.wait_status(2, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(2, "R", 4)]
    assert rig.auth.asked == []  # the id tag matched: no Authorize needed
    assert rig.station.reservations == []


async def test_remote_start_for_a_group_reservation_learns_the_group(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(1)
    rig.auth.decisions["CHILD"] = AuthDecision(AuthStatus.ACCEPTED, "GROUP")
    rig.auth.decisions["STRANGER"] = AuthDecision(AuthStatus.ACCEPTED, "ELSE")
    assert await rig.reserve(4, 1, "R", "GROUP") is ACCEPTED
    mark = rig.out.mark()
    # Accepted while the group is unknown; dropped once the Authorize tells it.
    assert await rig.station.remote_start("STRANGER", 1) is True
    await rig.auth.wait_asked("STRANGER")
    await rig.out.wait_status(1, ConnectorStatus.RESERVED, since=mark)
    assert rig.out.statuses(1, mark) == [("Preparing", "NoError"), ("Reserved", "NoError")]
    mark = rig.out.mark()
    await plugged(rig)
    assert rig.started() == []

    assert await rig.station.remote_start("CHILD", 1) is True
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.started() == [(1, "CHILD", 4)]


async def test_a_remote_start_waiting_for_its_authorize_is_not_started_by_the_plug(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(1)
    rig.settings.authorize_remote_tx_requests = True
    gate = asyncio.Event()
    answer = rig.auth.authorize

    async def slow(id_tag: str) -> AuthDecision:
        await gate.wait()
        return await answer(id_tag)

    rig.auth.authorize = slow  # type: ignore[method-assign]
    assert await rig.station.remote_start("T", 1) is True
    rig.hw.plug(1)
    await eventually(lambda: rig.station.connectors[1].pilot == "B", "the plug seen")
    await rig.settled()
    assert rig.started() == []
    gate.set()
    await rig.out.wait_status(1, ConnectorStatus.CHARGING)
    assert rig.started() == [(1, "T", None)]


# --------------------------------------------------------------------- cancel


async def test_cancel_reservation(rig: ReservationRig) -> None:
    assert await rig.reserve(4, 1, "R") is ACCEPTED
    mark = rig.out.mark()
    assert await rig.station.cancel_reservation(5) is False
    assert rig.out.events[mark:] == []
    assert await rig.station.cancel_reservation(4) is True
    assert rig.out.statuses(1, mark) == [("Available", "NoError")]
    assert rig.out.of(Saved, mark) == [Saved(())]
    assert await rig.station.cancel_reservation(4) is False
    await rig.start_session("OTHER", 1)


@pytest.mark.parametrize("end", ["cancelled", "expired"])
async def test_a_reservation_that_ends_with_an_ev_plugged(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    """§4.9: a reservation that ends makes its connector Available (G1); the EV plugged
    meanwhile then makes it Preparing (A2), and any card may start a session there."""
    monkeypatch.setattr(timing, "RESERVATION_RECHECK_S", 0.01)
    rig = await make_rig(1)
    assert await rig.reserve(4, 1, "R") is ACCEPTED
    await plugged(rig)
    mark = rig.out.mark()
    if end == "cancelled":
        assert await rig.station.cancel_reservation(4) is True
    else:
        rig.wall.advance(HOUR)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert rig.out.statuses(1, mark) == [("Available", "NoError"), ("Preparing", "NoError")]
    assert rig.station.reservations == []
    rig.hw.present_card("OTHER")
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(1, "OTHER", None)]


# --------------------------------------------------------------------- expiry


async def test_a_reservation_expires_back_to_available(make_rig: RigFactory) -> None:
    rig = await make_rig(1, now=utcnow)
    r = Reservation(1, 1, "R", None, utcnow() + timedelta(seconds=0.2))
    mark = rig.out.mark()
    assert await rig.station.reserve(r) is ACCEPTED
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert rig.out.statuses(1, mark) == [("Reserved", "NoError"), ("Available", "NoError")]
    assert rig.station.reservations == []
    await rig.out.wait_for(Saved, lambda s: s.reservations == (), since=mark)


async def test_expiry_follows_a_step_of_the_wall_clock(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timing, "RESERVATION_RECHECK_S", 0.01)
    rig = await make_rig(2)
    assert await rig.reserve(1, 1, valid_s=HOUR) is ACCEPTED
    assert await rig.reserve(2, 2, valid_s=2 * HOUR) is ACCEPTED
    mark = rig.out.mark()
    rig.wall.advance(HOUR)  # NTP steps the clock an hour ahead
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    await rig.out.wait_for(Saved, since=mark)
    assert [r.reservation_id for r in rig.station.reservations] == [2]
    assert rig.out.statuses(2, mark) == []


# --------------------------------------------------------------- persistence


async def test_reservations_are_restored_at_start_without_the_expired(
    make_rig: RigFactory,
) -> None:
    hour = timedelta(hours=1)
    kept = Reservation(1, 1, "R", "G", START + hour)
    saved = [
        kept,
        Reservation(2, 2, "S", None, START),  # expired while the agent was down
        Reservation(3, 0, "Z", None, START + hour),  # connector 0 is not supported
        Reservation(4, 9, "N", None, START + hour),  # no such connector
    ]
    rig = await make_rig(2, reservations=saved)
    assert rig.station.reservations == [kept]
    assert rig.out.statuses(1) == [("Reserved", "NoError")]
    assert rig.out.statuses(2) == [("Available", "NoError")]
    assert rig.out.of(Saved) == [Saved((kept,))]  # the dropped ones are forgotten
    await rig.start_session("ANYONE", connector_id=2)  # connector 2 is anyone's
    rig.auth.decisions["C"] = AuthDecision(AuthStatus.ACCEPTED, "G")
    mark = rig.out.mark()
    await plugged(rig)
    rig.hw.present_card("C")
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(1, "C", 1)]


async def test_restoring_what_still_holds_writes_nothing(make_rig: RigFactory) -> None:
    z = Reservation(3, 0, "Z", None, START + timedelta(minutes=5))
    rig = await make_rig(1, zero=True, reservations=[z])
    assert rig.station.reservations == [z]
    assert rig.out.statuses(1) == [("Reserved", "NoError")]  # the only connector is kept
    assert rig.out.of(Saved) == []


async def test_a_reservation_restored_on_an_unavailable_connector_ends(
    make_rig: RigFactory,
) -> None:
    r = Reservation(1, 1, "R", None, START + timedelta(hours=1))
    rig = await make_rig(1, availability={1: False}, reservations=[r])
    assert rig.station.reservations == []
    assert rig.out.statuses(1) == [("Unavailable", "NoError")]
    assert rig.out.of(Saved) == [Saved(())]


async def test_a_failed_save_is_retried(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timing, "RESERVATION_RECHECK_S", 0.01)
    rig = await make_rig(1)
    assert rig.store is not None
    rig.store.failures = 2
    r = rig.reservation(1)
    assert await rig.station.reserve(r) is ACCEPTED  # it holds, though not yet durable
    await rig.out.wait_for(Saved)
    assert rig.out.of(Saved) == [Saved((r,))] and rig.store.failures == 0


async def test_without_a_store_reservations_still_work(make_rig: RigFactory) -> None:
    rig = await make_rig(1, run=False)
    rig.station.reservation_store = None
    await rig.run()
    assert await rig.reserve(1) is ACCEPTED
    assert await rig.station.cancel_reservation(1) is True
    assert rig.out.of(Saved) == []


# -------------------------------------------------------------- faults, availability


async def test_a_fault_ends_the_reservation(rig: ReservationRig) -> None:
    assert await rig.reserve(1, 1) is ACCEPTED
    mark = rig.out.mark()
    rig.hw.set_fault("meter", 1, True)
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "PowerMeterFailure", since=mark)
    assert rig.station.reservations == []
    await rig.out.wait_for(Saved, lambda s: s.reservations == (), since=mark)
    rig.hw.set_fault("meter", 1, False)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert rig.out.statuses(1, mark) == [("Faulted", "PowerMeterFailure"), ("Available", "NoError")]


async def test_unavailability_ends_the_reservation(rig: ReservationRig) -> None:
    assert await rig.reserve(1, 1) is ACCEPTED
    assert await rig.reserve(2, 2) is ACCEPTED
    mark = rig.out.mark()
    assert await rig.station.change_availability(1, False) == "Accepted"
    assert rig.out.statuses(1, mark) == [("Unavailable", "NoError")]
    assert [r.reservation_id for r in rig.station.reservations] == [2]
    await rig.out.wait_for(Saved, lambda s: [r.reservation_id for r in s.reservations] == [2])
    assert await rig.station.change_availability(1, True) == "Accepted"
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    # The whole charger: every reservation ends.
    mark = rig.out.mark()
    assert await rig.station.change_availability(0, False) == "Accepted"
    assert rig.station.reservations == []
    assert rig.out.statuses(2, mark) == [("Unavailable", "NoError")]


class BreakingReader(CardReader):
    """A card reader that fails when told to."""

    def __init__(self) -> None:
        self.broken = asyncio.Event()

    async def read_card(self) -> str:
        await self.broken.wait()
        raise ReaderFault("reader does not answer")


async def test_a_faulted_charger_ends_reservations_and_refuses_new_ones(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2, zero=True, run=False)
    reader = BreakingReader()
    rig.hw.card_reader = reader
    await rig.run()
    assert await rig.reserve(1, 1) is ACCEPTED
    assert await rig.reserve(2, 0) is ACCEPTED
    mark = rig.out.mark()
    reader.broken.set()
    await rig.out.wait_status(0, ConnectorStatus.FAULTED, "ReaderFailure", since=mark)
    assert rig.station.reservations == []
    assert rig.out.statuses(1, mark) == [("Available", "NoError")]
    assert await rig.reserve(3, 2) is FAULTED
    assert await rig.reserve(3, 0) is FAULTED


# ---------------------------------------------------------------- connector 0


async def test_a_reservation_of_connector_zero_keeps_one_connector_free(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2, zero=True)
    z = rig.reservation(10, 0, "Z")
    mark = rig.out.mark()
    assert await rig.station.reserve(z) is ACCEPTED
    assert rig.out.of(StatusChanged, mark) == []  # two free connectors: neither is held yet
    assert rig.out.of(Saved, mark) == [Saved((z,))]

    # Another id tag takes connector 1: connector 2 is the last one, kept for Z.
    await rig.start_session("OTHER", 1)
    await rig.out.wait_status(2, ConnectorStatus.RESERVED, since=mark)
    assert rig.started(mark) == [(1, "OTHER", None)]
    assert rig.station.snapshot()[1]["reserved_for_any"] is True
    assert await rig.reserve(11, 0, "Y") is OCCUPIED
    assert await rig.reserve(12, 2, "Y") is OCCUPIED
    assert await rig.station.remote_start("STRANGER", None) is False

    mark = rig.out.mark()
    rig.hw.plug(2)
    await rig.out.wait_status(2, ConnectorStatus.PREPARING, since=mark)
    rig.hw.present_card("STRANGER")
    await rig.auth.wait_asked("STRANGER")
    await rig.settled()
    assert rig.started(mark) == []

    rig.hw.present_card("Z")
    await rig.out.wait_status(2, ConnectorStatus.CHARGING, since=mark)
    assert rig.started(mark) == [(2, "Z", 10)]
    assert rig.station.reservations == []


async def test_the_card_of_a_reservation_of_connector_zero_uses_it_anywhere(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2, zero=True)
    assert await rig.reserve(10, 0, "Z") is ACCEPTED
    mark = rig.out.mark()
    await rig.start_session("Z", 2)
    assert rig.started(mark) == [(2, "Z", 10)]
    assert rig.station.reservations == []
    # Held for Z while Z's EV stood plugged into the other one, free again once Z started.
    assert rig.out.statuses(1, mark) == [("Reserved", "NoError"), ("Available", "NoError")]


async def test_connector_zero_answers_for_the_connectors_it_could_use(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(1, zero=True, availability={1: False})
    assert await rig.reserve(1, 0) is UNAVAILABLE
    rig = await make_rig(1, zero=True)
    rig.hw.set_fault("meter", 1, True)
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "PowerMeterFailure")
    assert await rig.reserve(1, 0) is FAULTED
    rig = await make_rig(1, zero=True)
    await rig.start_session("T")
    assert await rig.reserve(1, 0) is OCCUPIED
