"""Smart charging in the station (OCPP 1.6 §3.13): what the installed charging profiles do
to a session, seen from the outside.

The evaluation rules themselves are tested in test_smart_charging; here the point is the
station acting on them: the current offered on the simulated pilot, the current the
simulated EV then draws, the connector statuses reported, what the profile store saved.
The rig is test_station's (SimHardware on a fake monotonic clock, in-memory ports) plus a
profile store that logs into the same event log. Schedules run on the real wall clock
unless a test needs a fixed one; every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from cpagent.exc import HalError, StoreFullError
from cpagent.hal.sim import SimHardware, SimPilot
from cpagent.station.model import (
    AuthDecision,
    AuthStatus,
    ConnectorStatus,
    StationSettings,
    StatusChanged,
    TransactionStarted,
    TransactionStopped,
)
from cpagent.station.smart_charging import (
    ChargingProfile,
    ProfileSet,
    Purpose,
    RejectReason,
    SmartChargingLimits,
    Unit,
    parse_profile,
    schedule_to_ocpp,
)
from cpagent.station.station import Station
from cpagent.timeutil import parse_iso, utcnow
from tests.unit.fakes import FakeClock
from tests.unit.test_reservations import START, WallClock, eventually
from tests.unit.test_station import FakeAuthorizer, FakeOutput, Rig

MAX_A = 32.0  # the simulated connectors' and EVs' maximum current
V = 230.0
PAST = "2024-01-01T00:00:00Z"  # startSchedule of the constant Absolute profiles

TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
CP_MAX = "ChargePointMaxProfile"

CHARGING = ConnectorStatus.CHARGING
SUSPENDED_EVSE = ConnectorStatus.SUSPENDED_EVSE


# ---------------------------------------------------------------------------- fakes


@dataclass(frozen=True)
class ProfilesSaved:
    profiles: ProfileSet

    @property
    def ids(self) -> list[tuple[int, int]]:
        return ids(self.profiles)


def ids(profiles: ProfileSet) -> list[tuple[int, int]]:
    """(connector, profile id) of every installed profile, sorted."""
    return sorted((e.connector_id, e.profile.id) for e in profiles)


class FakeProfileStore:
    """Logs every save into the rig's event log; fails the next ``failures`` saves."""

    def __init__(self, out: FakeOutput) -> None:
        self.out = out
        self.failures = 0

    async def save_charging_profiles(self, profiles: ProfileSet) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreFullError("database or disk is full")
        self.out._record(ProfilesSaved(profiles))


class GatedAuthorizer(FakeAuthorizer):
    """Holds the answer for the id tags in ``held`` until ``release``."""

    def __init__(self, held: set[str]) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()

    async def authorize(self, id_tag: str) -> AuthDecision:
        decision = await super().authorize(id_tag)
        if id_tag in self.held:
            await self.release.wait()
        return decision


@dataclass
class SmartRig(Rig):
    store: FakeProfileStore | None = None

    def offered(self, connector_id: int = 1) -> float:
        """The current the pilot offers now (0: no PWM)."""
        return self.hw.pilot(connector_id).offered_current

    def contactor_closed(self, connector_id: int = 1) -> bool:
        return self.hw.contactor(connector_id).closed

    async def drawn(self, connector_id: int = 1) -> float:
        """The per-phase current the simulated EV draws, as its meter reads it."""
        return (await self.hw.meter(connector_id).read()).current_a[0]

    def limit(self, connector_id: int = 1) -> Any:
        return self.station.snapshot()[connector_id - 1]["limit_a"]

    def saved(self, since: int = 0) -> list[list[tuple[int, int]]]:
        return [s.ids for s in self.out.of(ProfilesSaved, since)]

    async def offering(self, amps: float, connector_id: int = 1) -> None:
        """Until the pilot of ``connector_id`` offers ``amps`` (the station applies a new
        profile in its own task, after SetChargingProfile returned)."""
        await eventually(
            lambda: self.offered(connector_id) == amps,
            f"connector {connector_id} offering {amps} A (offers {self.offered(connector_id)})",
        )

    async def begin(self, id_tag: str = "TAG-1", connector_id: int = 1) -> TransactionStarted:
        """Plug and show a card; wait for the session and its first supply status (Charging,
        or SuspendedEVSE when the profiles allow less than 6 A)."""
        mark = self.out.mark()
        self.hw.plug(connector_id)
        await self.out.wait_status(connector_id, ConnectorStatus.PREPARING, since=mark)
        self.hw.present_card(id_tag)
        started = await self.out.wait_for(
            TransactionStarted, lambda e: e.connector_id == connector_id, since=mark
        )
        await self.out.wait_for(
            StatusChanged,
            lambda e: e.connector_id == connector_id and e.status in (CHARGING, SUSPENDED_EVSE),
            since=mark,
        )
        return started

    async def end(self, id_tag: str = "TAG-1", connector_id: int = 1) -> None:
        """Stop the session with its card (the EV stays plugged)."""
        mark = self.out.mark()
        self.hw.present_card(id_tag)
        await self.out.wait_for(
            TransactionStopped, lambda e: e.connector_id == connector_id, since=mark
        )

    async def settled(self) -> None:
        """Until the station has finished what it was doing under its lock."""
        await self.station.sample_now(None)


RigFactory = Callable[..., Awaitable[SmartRig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    made: list[SmartRig] = []

    async def make(
        connectors: int = 1,
        *,
        run: bool = True,
        phases: int = 3,
        phase_switch: bool = False,
        limits: SmartChargingLimits | None = None,
        now: Callable[[], datetime] = utcnow,
        authorizer: FakeAuthorizer | None = None,
        settings: StationSettings | None = None,
        **start: Any,
    ) -> SmartRig:
        clock = FakeClock()
        hw = SimHardware(connectors, phases=phases, phase_switch=phase_switch, clock=clock)
        out, auth = FakeOutput(), authorizer or FakeAuthorizer()
        settings = settings or StationSettings()
        if limits is not None:
            settings.smart_charging = limits
        store = FakeProfileStore(out)
        station = Station(hw, out, auth, settings, profile_store=store, now=now)
        rig = SmartRig(clock, hw, out, auth, settings, station, store=store)
        made.append(rig)
        if run:
            await rig.run(**start)
        return rig

    yield make
    for rig in made:
        await rig.stop()


@pytest.fixture
async def rig(make_rig: RigFactory) -> SmartRig:
    return await make_rig()


def profile(
    profile_id: int,
    purpose: str = TX_DEFAULT,
    limit: float | list[tuple[int, float]] = 16.0,
    *,
    stack_level: int = 0,
    unit: str = "A",
    kind: str = "Absolute",
    start: datetime | str | None = PAST,
    valid_to: datetime | None = None,
    transaction_id: int | None = None,
    number_phases: int | None = None,
) -> ChargingProfile:
    """A profile as the CSMS would send it; ``limit`` a constant or (startPeriod, limit)s."""
    periods = [(0, limit)] if isinstance(limit, int | float) else limit
    raw_periods: list[dict[str, Any]] = []
    for start_period, value in periods:
        raw: dict[str, Any] = {"startPeriod": start_period, "limit": value}
        if number_phases is not None:
            raw["numberPhases"] = number_phases
        raw_periods.append(raw)
    schedule: dict[str, Any] = {"chargingRateUnit": unit, "chargingSchedulePeriod": raw_periods}
    if start is not None and kind != "Relative":
        schedule["startSchedule"] = start
    data: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if valid_to is not None:
        data["validTo"] = valid_to
    if transaction_id is not None:
        data["transactionId"] = transaction_id
    return parse_profile(data)


def record_offers(pilot: SimPilot, monkeypatch: pytest.MonkeyPatch) -> list[tuple[datetime, float]]:
    """Log (wall time, amps) of every current the station sets on ``pilot``."""
    log: list[tuple[datetime, float]] = []
    original = pilot.set_offered_current

    async def set_offered_current(amps: float) -> None:
        log.append((utcnow(), amps))
        await original(amps)

    monkeypatch.setattr(pilot, "set_offered_current", set_offered_current)
    return log


# ------------------------------------------------------------- which profile applies


async def test_a_tx_default_profile_sets_the_current_of_the_next_session(rig: SmartRig) -> None:
    mark = rig.out.mark()
    assert await rig.station.set_charging_profile(1, profile(1, limit=16.0)) is None
    assert rig.saved(mark) == [[(1, 1)]]  # persisted before the answer
    assert rig.offered() == 0.0  # no session: nothing offered yet
    assert rig.limit() is None

    await rig.begin()
    assert rig.out.statuses(1, mark) == [("Preparing", "NoError"), ("Charging", "NoError")]
    assert rig.offered() == 16.0
    assert await rig.drawn() == 16.0  # the EV could take 32 A
    assert rig.limit() == 16.0
    assert rig.contactor_closed()


async def test_without_a_profile_the_session_gets_the_hardware_maximum(rig: SmartRig) -> None:
    await rig.begin()
    assert rig.offered() == MAX_A
    assert await rig.drawn() == MAX_A
    assert rig.limit() is None


async def test_a_tx_default_profile_on_connector_0_applies_to_every_connector(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2)
    assert await rig.station.set_charging_profile(0, profile(1, limit=12.0)) is None
    await rig.begin("A", 1)
    await rig.begin("B", 2)
    assert (rig.offered(1), rig.offered(2)) == (12.0, 12.0)
    assert (await rig.drawn(1), await rig.drawn(2)) == (12.0, 12.0)
    assert [c["limit_a"] for c in rig.station.snapshot()] == [12.0, 12.0]


async def test_the_connector_s_own_profile_beats_connector_0_s_but_a_higher_stack_level_wins(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2)
    assert await rig.station.set_charging_profile(0, profile(1, limit=20.0, stack_level=1)) is None
    assert await rig.station.set_charging_profile(1, profile(2, limit=10.0, stack_level=1)) is None
    await rig.begin("A", 1)
    await rig.begin("B", 2)
    # Equal stack levels: connector 1's own profile; connector 2 has only connector 0's.
    assert (rig.offered(1), rig.offered(2)) == (10.0, 20.0)

    # A higher stack level on connector 0 beats connector 1's own.
    assert await rig.station.set_charging_profile(0, profile(3, limit=14.0, stack_level=2)) is None
    await rig.offering(14.0, 1)
    await rig.offering(14.0, 2)

    # And a higher one still on connector 1 beats that, on connector 1 only.
    assert await rig.station.set_charging_profile(1, profile(4, limit=8.0, stack_level=3)) is None
    await rig.offering(8.0, 1)
    assert rig.offered(2) == 14.0
    assert await rig.drawn(1) == 8.0


async def test_a_tx_profile_overrides_tx_default_and_the_charge_point_max_caps_it(
    rig: SmartRig,
) -> None:
    assert await rig.station.set_charging_profile(1, profile(1, limit=20.0)) is None
    await rig.begin()
    assert rig.offered() == 20.0
    mark = rig.out.mark()

    # A TxProfile for the running session overrides the TxDefaultProfile, also upwards.
    assert await rig.station.set_charging_profile(1, profile(2, TX, 25.0)) is None
    await rig.offering(25.0)
    # The ChargePointMaxProfile caps it.
    assert await rig.station.set_charging_profile(0, profile(3, CP_MAX, 12.0)) is None
    await rig.offering(12.0)
    assert await rig.drawn() == 12.0
    # Below the cap, the TxProfile's own limit (same id: replaced).
    assert await rig.station.set_charging_profile(1, profile(2, TX, 8.0)) is None
    await rig.offering(8.0)
    assert await rig.drawn() == 8.0
    assert rig.limit() == 8.0
    # The limit changed while the supply stayed on: Charging all along.
    assert rig.out.statuses(1, mark) == []
    assert ids(rig.station.charging_profiles) == [(0, 3), (1, 1), (1, 2)]


async def test_a_tx_profile_for_a_transaction_id_needs_the_csms_to_have_given_it(
    rig: SmartRig,
) -> None:
    await rig.begin()
    tx = rig.station.connectors[1].transaction
    assert tx is not None
    mark = rig.out.mark()
    # StartTransaction not answered yet: the session has no transactionId.
    rejection = await rig.station.set_charging_profile(1, profile(1, TX, 10.0, transaction_id=42))
    assert rejection is not None and rejection.reason is RejectReason.WRONG_TRANSACTION

    rig.station.transaction_confirmed(tx.local_id, 42, AuthDecision(AuthStatus.ACCEPTED))
    rejection = await rig.station.set_charging_profile(1, profile(1, TX, 10.0, transaction_id=43))
    assert rejection is not None and rejection.reason is RejectReason.WRONG_TRANSACTION
    assert rig.saved(mark) == []
    assert rig.offered() == MAX_A

    assert (
        await rig.station.set_charging_profile(1, profile(1, TX, 10.0, transaction_id=42)) is None
    )
    await rig.offering(10.0)
    assert await rig.drawn() == 10.0
    assert rig.saved(mark) == [[(1, 1)]]


@pytest.mark.parametrize(
    ("connector_id", "make", "reason"),
    [
        pytest.param(1, lambda: profile(1, TX), RejectReason.NO_TRANSACTION, id="tx-no-session"),
        pytest.param(0, lambda: profile(1, TX), RejectReason.TX_PROFILE_ON_0, id="tx-on-0"),
        pytest.param(
            1, lambda: profile(1, CP_MAX), RejectReason.STATION_MAX_NOT_ON_0, id="max-on-1"
        ),
        pytest.param(3, lambda: profile(1), RejectReason.UNKNOWN_CONNECTOR, id="no-connector"),
        pytest.param(
            1, lambda: profile(1, stack_level=4), RejectReason.STACK_LEVEL, id="stack-level"
        ),
        pytest.param(
            1,
            lambda: profile(1, limit=[(0, 16.0), (60, 10.0), (120, 8.0)]),
            RejectReason.TOO_MANY_PERIODS,
            id="periods",
        ),
        pytest.param(
            0,
            lambda: profile(1, CP_MAX, unit="W"),
            RejectReason.UNIT_NOT_ALLOWED,
            id="unit",
        ),
    ],
)
async def test_rejected_profiles_are_neither_installed_nor_saved(
    make_rig: RigFactory,
    connector_id: int,
    make: Callable[[], ChargingProfile],
    reason: RejectReason,
) -> None:
    amps_only: frozenset[Unit] = frozenset({"A"})
    limits = SmartChargingLimits(max_stack_level=3, max_periods=2, allowed_units=amps_only)
    rig = await make_rig(2, limits=limits)
    mark = rig.out.mark()
    rejection = await rig.station.set_charging_profile(connector_id, make())
    assert rejection is not None and rejection.reason is reason
    assert len(rig.station.charging_profiles) == 0
    assert rig.out.events[mark:] == []
    # The limits themselves are inclusive.
    assert await rig.station.set_charging_profile(1, profile(2, stack_level=3)) is None
    assert await rig.station.set_charging_profile(2, profile(3, limit=[(0, 1), (9, 2)])) is None


async def test_max_charging_profiles_installed_counts_a_replacement_once(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2, limits=SmartChargingLimits(max_profiles=2))
    assert await rig.station.set_charging_profile(1, profile(1, limit=16.0)) is None
    assert await rig.station.set_charging_profile(2, profile(2, limit=16.0, stack_level=1)) is None
    mark = rig.out.mark()
    rejection = await rig.station.set_charging_profile(0, profile(3, CP_MAX, 20.0))
    assert rejection is not None and rejection.reason is RejectReason.TOO_MANY_PROFILES
    assert rig.saved(mark) == []
    # The same id replaces the installed one, even on another connector: still two.
    assert await rig.station.set_charging_profile(1, profile(2, limit=10.0, stack_level=1)) is None
    assert ids(rig.station.charging_profiles) == [(1, 1), (1, 2)]
    # So does the same stack level and purpose on the same connector, under a new id.
    assert await rig.station.set_charging_profile(1, profile(5, limit=12.0, stack_level=0)) is None
    assert ids(rig.station.charging_profiles) == [(1, 2), (1, 5)]
    assert rig.saved(mark) == [[(1, 1), (1, 2)], [(1, 2), (1, 5)]]


# ------------------------------------------------------------------------- units


async def test_a_limit_in_watts_is_the_current_per_phase_on_three_phases(rig: SmartRig) -> None:
    # 11040 W = 16 A x 230 V x 3 phases.
    assert await rig.station.set_charging_profile(1, profile(1, limit=11040.0, unit="W")) is None
    await rig.begin()
    assert rig.offered() == 16.0
    assert await rig.drawn() == 16.0
    assert (await rig.hw.meter(1).read()).power_w == pytest.approx(11040.0)
    assert rig.limit() == 16.0


async def test_a_limit_in_watts_on_a_single_phase_connector(make_rig: RigFactory) -> None:
    rig = await make_rig(phases=1)
    # The profile does not say (3 phases are assumed), but the connector has only one.
    assert await rig.station.set_charging_profile(1, profile(1, limit=3680.0, unit="W")) is None
    await rig.begin()
    assert rig.offered() == 16.0
    assert (await rig.hw.meter(1).read()).power_w == pytest.approx(3680.0)
    # numberPhases=3 on a one-phase connector: 11040 W on one phase is 48 A, capped at the
    # hardware's 32 A.
    p = profile(1, limit=11040.0, unit="W", number_phases=3)
    assert await rig.station.set_charging_profile(1, p) is None
    await rig.offering(MAX_A)
    assert await rig.drawn() == MAX_A
    assert rig.limit() == MAX_A


async def test_a_one_phase_limit_in_watts_without_a_phase_switch_is_shared_by_all_phases(
    rig: SmartRig,
) -> None:
    # The connector charges on its 3 phases whatever numberPhases says: 7360 W on three
    # phases is 10.7 A each, not 32 A on one.
    p = profile(1, limit=7360.0, unit="W", number_phases=1)
    assert await rig.station.set_charging_profile(1, p) is None
    await rig.begin()
    assert rig.offered() == pytest.approx(7360.0 / (3 * V))
    reading = await rig.hw.meter(1).read()
    assert len(reading.current_a) == 3
    assert reading.power_w == pytest.approx(7360.0)


async def test_a_one_phase_limit_switches_a_connector_with_a_phase_switch(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(phase_switch=True)
    p = profile(1, limit=3680.0, unit="W", number_phases=1)
    assert await rig.station.set_charging_profile(1, p) is None
    mark = rig.out.mark()
    await rig.begin()
    assert rig.out.statuses(1, mark) == [("Preparing", "NoError"), ("Charging", "NoError")]
    assert rig.offered() == 16.0
    reading = await rig.hw.meter(1).read()
    assert reading.current_a == (16.0,)
    assert reading.power_w == pytest.approx(3680.0)

    # Without the profile: back on three phases at the hardware's maximum.
    assert await rig.station.clear_charging_profile(profile_id=1) is True
    await rig.offering(MAX_A)
    reading = await rig.hw.meter(1).read()
    assert reading.current_a == (MAX_A,) * 3


async def test_a_phase_switch_that_refuses_keeps_the_supply_off(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = await make_rig(phase_switch=True, run=False)
    switch = rig.hw.connectors[1].phase_switch
    assert switch is not None

    async def refuse(phases: int) -> None:
        raise HalError("phase switch relay does not answer", vendor_error_code="Stuck")

    monkeypatch.setattr(switch, "set_phases", refuse)
    offers = record_offers(rig.hw.pilot(1), monkeypatch)
    await rig.run()
    p = profile(1, limit=3680.0, unit="W", number_phases=1)
    assert await rig.station.set_charging_profile(1, p) is None
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    rig.hw.present_card("TAG-1")
    await rig.out.wait_for(TransactionStarted, since=mark)
    await rig.out.wait_status(1, ConnectorStatus.FAULTED, "OtherError", since=mark)
    await rig.settled()
    assert switch.phases == 3
    # 16 A on three phases would be 11040 W against the 3680 W limit, however briefly.
    assert [amps for _, amps in offers if amps > 0] == []
    assert rig.hw.contactor(1).history == []


# --------------------------------------------------------------- changes over time


@pytest.mark.parametrize("kind", ["Relative", "Absolute"])
async def test_the_offer_changes_at_the_period_boundary_without_a_hardware_event(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    rig = await make_rig(run=False)
    # Nothing but the profile loop wakes the connector within the test's time.
    rig.hw.connectors[1].poll_interval_s = 60.0
    offers = record_offers(rig.hw.pilot(1), monkeypatch)
    await rig.run()
    if kind == "Relative":
        # Counted from the start of the session.
        p = profile(1, limit=[(0, 16.0), (1, 10.0)], kind="Relative")
        assert await rig.station.set_charging_profile(1, p) is None
        started = await rig.begin()
        boundary = parse_iso(started.timestamp) + timedelta(seconds=1)
        expected = [16.0, 10.0]
    else:
        # Starting now, installed during the session.
        await rig.begin()
        now = utcnow()
        p = profile(1, limit=[(0, 16.0), (1, 10.0)], start=now)
        assert await rig.station.set_charging_profile(1, p) is None
        await rig.offering(16.0)
        boundary = now + timedelta(seconds=1)
        expected = [MAX_A, 16.0, 10.0]
    assert rig.offered() == 16.0
    mark = rig.out.mark()

    await rig.offering(10.0)
    assert [amps for _, amps in offers] == expected
    changed_at = offers[-1][0]
    assert boundary <= changed_at < boundary + timedelta(seconds=0.5), (boundary, changed_at)
    assert await rig.drawn() == 10.0
    assert rig.limit() == 10.0
    assert rig.out.statuses(1, mark) == []  # Charging throughout
    assert rig.contactor_closed()


async def test_below_6_a_the_supply_is_suspended_and_resumed_by_a_new_profile(
    rig: SmartRig,
) -> None:
    await rig.begin()
    mark = rig.out.mark()
    # 6 A is the lowest a pilot can offer: still charging.
    assert await rig.station.set_charging_profile(1, profile(1, limit=6.0)) is None
    await rig.offering(6.0)
    assert await rig.drawn() == 6.0
    assert rig.out.statuses(1, mark) == []

    assert await rig.station.set_charging_profile(1, profile(1, limit=5.9)) is None
    await rig.out.wait_status(1, SUSPENDED_EVSE, since=mark)
    assert rig.offered() == 0.0
    assert not rig.contactor_closed()
    assert await rig.drawn() == 0.0
    assert rig.limit() == 5.9
    assert rig.station.connectors[1].transaction is not None  # the session goes on

    assert await rig.station.set_charging_profile(1, profile(1, limit=16.0)) is None
    await rig.out.wait_status(1, CHARGING, since=mark)
    assert rig.offered() == 16.0
    assert rig.contactor_closed()
    assert await rig.drawn() == 16.0
    assert rig.out.statuses(1, mark) == [("SuspendedEVSE", "NoError"), ("Charging", "NoError")]


async def test_a_period_below_6_a_suspends_and_the_next_one_resumes(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(run=False)
    rig.hw.connectors[1].poll_interval_s = 60.0
    await rig.run()
    p = profile(1, limit=[(0, 16.0), (1, 5.0), (2, 16.0)], kind="Relative")
    assert await rig.station.set_charging_profile(1, p) is None
    mark = rig.out.mark()
    await rig.begin()
    assert rig.offered() == 16.0

    await rig.out.wait_status(1, SUSPENDED_EVSE, since=mark)
    assert (rig.offered(), rig.contactor_closed(), await rig.drawn()) == (0.0, False, 0.0)
    suspended = rig.out.mark()
    await rig.out.wait_status(1, CHARGING, since=suspended)
    assert (rig.offered(), rig.contactor_closed(), await rig.drawn()) == (16.0, True, 16.0)
    assert rig.out.statuses(1, mark) == [
        ("Preparing", "NoError"),
        ("Charging", "NoError"),
        ("SuspendedEVSE", "NoError"),
        ("Charging", "NoError"),
    ]
    assert [closed for _, closed in rig.hw.contactor(1).history] == [True, False, True]


async def test_a_session_starting_below_6_a_waits_suspended(rig: SmartRig) -> None:
    assert await rig.station.set_charging_profile(1, profile(1, limit=0.0)) is None
    mark = rig.out.mark()
    await rig.begin()
    assert rig.out.statuses(1, mark) == [("Preparing", "NoError"), ("SuspendedEVSE", "NoError")]
    assert (rig.offered(), rig.contactor_closed(), await rig.drawn()) == (0.0, False, 0.0)

    assert await rig.station.clear_charging_profile(profile_id=1) is True
    await rig.out.wait_status(1, CHARGING, since=mark)
    assert rig.offered() == MAX_A
    assert await rig.drawn() == MAX_A


async def test_an_expired_profile_is_dropped_and_the_limit_reverts(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(run=False)
    rig.hw.connectors[1].poll_interval_s = 60.0
    await rig.run()
    valid_to = utcnow() + timedelta(seconds=1)
    keep = profile(2, CP_MAX, 24.0)
    assert await rig.station.set_charging_profile(0, keep) is None
    assert (
        await rig.station.set_charging_profile(1, profile(1, limit=10.0, valid_to=valid_to)) is None
    )
    await rig.begin()
    assert rig.offered() == 10.0
    mark = rig.out.mark()

    await rig.offering(24.0)
    assert utcnow() >= valid_to
    await rig.out.wait_for(ProfilesSaved, lambda s: s.ids == [(0, 2)], since=mark)
    assert ids(rig.station.charging_profiles) == [(0, 2)]
    assert await rig.drawn() == 24.0
    assert rig.out.statuses(1, mark) == []


# ----------------------------------------------------------------------- clearing

CLEAR_SET = [
    (1, profile(1, TX_DEFAULT, 10.0, stack_level=2)),
    (0, profile(2, TX_DEFAULT, 14.0, stack_level=1)),
    (0, profile(3, CP_MAX, 20.0, stack_level=0)),
]


@pytest.mark.parametrize(
    ("criteria", "left", "amps"),
    [
        pytest.param({"profile_id": 1}, [(0, 2), (0, 3)], 14.0, id="id"),
        # errata 3.26: with an id, the other criteria are ignored
        pytest.param(
            {"profile_id": 1, "connector_id": 0, "purpose": Purpose.STATION_MAX},
            [(0, 2), (0, 3)],
            14.0,
            id="id-and-more",
        ),
        pytest.param({"connector_id": 1}, [(0, 2), (0, 3)], 14.0, id="connector"),
        pytest.param({"purpose": Purpose.TX_DEFAULT}, [(0, 3)], 20.0, id="purpose"),
        pytest.param({"stack_level": 2}, [(0, 2), (0, 3)], 14.0, id="stack-level"),
        pytest.param(
            {"connector_id": 0, "stack_level": 0, "purpose": Purpose.STATION_MAX},
            [(0, 2), (1, 1)],
            None,
            id="all-three",
        ),
        pytest.param({}, [], MAX_A, id="everything"),
    ],
)
async def test_clear_charging_profile(
    rig: SmartRig, criteria: dict[str, Any], left: list[tuple[int, int]], amps: float | None
) -> None:
    for cid, p in CLEAR_SET:
        assert await rig.station.set_charging_profile(cid, p) is None
    await rig.begin()
    assert rig.offered() == 10.0
    mark = rig.out.mark()

    assert await rig.station.clear_charging_profile(**criteria) is True
    assert ids(rig.station.charging_profiles) == left
    assert rig.saved(mark) == [left]  # saved before the answer
    if amps is not None:
        await rig.offering(amps)
        assert await rig.drawn() == amps
        assert rig.limit() == (None if amps == MAX_A else amps)
    else:
        # The cap cleared was above the limit: the offer stays.
        await rig.settled()
        assert rig.offered() == 10.0
        assert rig.limit() == 10.0


@pytest.mark.parametrize(
    "criteria",
    [
        pytest.param({"profile_id": 9}, id="id"),
        pytest.param({"connector_id": 2}, id="connector"),
        pytest.param({"connector_id": 1, "purpose": Purpose.STATION_MAX}, id="combination"),
        pytest.param({"stack_level": 5}, id="stack-level"),
    ],
)
async def test_clear_charging_profile_without_a_match_is_unknown(
    rig: SmartRig, criteria: dict[str, Any]
) -> None:
    for cid, p in CLEAR_SET:
        assert await rig.station.set_charging_profile(cid, p) is None
    mark = rig.out.mark()
    assert await rig.station.clear_charging_profile(**criteria) is False
    assert ids(rig.station.charging_profiles) == [(0, 2), (0, 3), (1, 1)]
    assert rig.out.events[mark:] == []


async def test_clearing_on_an_empty_station_is_unknown(rig: SmartRig) -> None:
    assert await rig.station.clear_charging_profile() is False
    assert rig.saved() == []


# ------------------------------------------------------------- TxProfiles and sessions


async def test_a_tx_profile_ends_with_its_session(rig: SmartRig) -> None:
    assert await rig.station.set_charging_profile(1, profile(1, limit=20.0)) is None
    await rig.begin()
    assert await rig.station.set_charging_profile(1, profile(2, TX, 10.0)) is None
    await rig.offering(10.0)
    mark = rig.out.mark()

    await rig.end()
    assert rig.offered() == 0.0
    assert rig.limit() is None
    assert ids(rig.station.charging_profiles) == [(1, 1)]
    assert rig.saved(mark) == [[(1, 1)]]

    # The next session gets the TxDefaultProfile again.
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    await rig.begin("TAG-2")
    assert rig.offered() == 20.0


async def test_a_tx_profile_applies_to_its_connector_only(make_rig: RigFactory) -> None:
    rig = await make_rig(2)
    await rig.begin("A", 1)
    await rig.begin("B", 2)
    assert await rig.station.set_charging_profile(2, profile(1, TX, 10.0)) is None
    await rig.offering(10.0, 2)
    assert rig.offered(1) == MAX_A
    assert [c["limit_a"] for c in rig.station.snapshot()] == [None, 10.0]
    # Connector 1's session ending leaves it alone.
    await rig.end("A", 1)
    assert ids(rig.station.charging_profiles) == [(2, 1)]
    assert rig.offered(2) == 10.0


@pytest.mark.parametrize("plug_first", [True, False], ids=["plugged", "plug-after"])
async def test_remote_start_with_a_tx_profile(rig: SmartRig, plug_first: bool) -> None:
    mark = rig.out.mark()
    if plug_first:
        rig.hw.plug(1)
        await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert await rig.station.remote_start("REMOTE", 1, profile(7, TX, 12.0)) is True
    if not plug_first:
        await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
        assert rig.saved(mark) == []  # kept with the authorization until the session
        rig.hw.plug(1)
    await rig.out.wait_status(1, CHARGING, since=mark)
    assert rig.offered() == 12.0
    assert await rig.drawn() == 12.0
    assert rig.saved(mark) == [[(1, 7)]]

    mark = rig.out.mark()
    await rig.end("REMOTE")
    assert len(rig.station.charging_profiles) == 0
    assert rig.saved(mark) == [[]]
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    await rig.begin("LOCAL")
    assert rig.offered() == MAX_A


async def test_a_remote_start_s_profile_is_dropped_with_its_authorization(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(settings=StationSettings(connection_timeout_s=1))
    mark = rig.out.mark()
    assert await rig.station.remote_start("REMOTE", 1, profile(7, TX, 12.0)) is True
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)  # no EV in time
    await rig.begin("LOCAL")
    assert rig.offered() == MAX_A
    assert len(rig.station.charging_profiles) == 0
    assert rig.saved(mark) == []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: profile(7, TX_DEFAULT, 12.0), id="tx-default"),
        pytest.param(lambda: profile(7, TX, 12.0, transaction_id=5), id="with-transaction-id"),
        pytest.param(lambda: profile(7, TX, 12.0, stack_level=99), id="stack-level"),
    ],
)
async def test_a_remote_start_with_an_invalid_profile_is_refused(
    rig: SmartRig, make: Callable[[], ChargingProfile]
) -> None:
    mark = rig.out.mark()
    assert await rig.station.remote_start("REMOTE", 1, make()) is False
    assert rig.station.connectors[1].authorized_token is None
    assert rig.out.events[mark:] == []
    # Nothing waits for the plug.
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    await rig.settled()
    assert rig.out.of(TransactionStarted, mark) == []
    assert len(rig.station.charging_profiles) == 0


async def test_a_remote_start_s_profile_does_not_limit_another_id_tag_s_session(
    make_rig: RigFactory,
) -> None:
    auth = GatedAuthorizer({"REMOTE"})
    rig = await make_rig(
        authorizer=auth, settings=StationSettings(authorize_remote_tx_requests=True)
    )
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert await rig.station.remote_start("REMOTE", 1, profile(7, TX, 10.0)) is True
    await auth.wait_asked("REMOTE")  # its Authorize is still unanswered
    rig.hw.present_card("LOCAL")
    await auth.wait_asked("LOCAL")
    await rig.settled()
    tx = rig.station.connectors[1].transaction
    if tx is not None and tx.id_token == "LOCAL":  # the card took the connector
        assert rig.offered() == MAX_A
        assert len(rig.station.charging_profiles) == 0


# -------------------------------------------------------------------- persistence


async def test_every_change_saves_the_whole_set(make_rig: RigFactory) -> None:
    rig = await make_rig(2)
    mark = rig.out.mark()
    assert await rig.station.set_charging_profile(1, profile(1)) is None
    assert await rig.station.set_charging_profile(0, profile(2, CP_MAX, 20.0)) is None
    assert await rig.station.set_charging_profile(2, profile(3)) is None
    assert await rig.station.clear_charging_profile(profile_id=1) is True
    assert await rig.station.set_charging_profile(2, profile(3, limit=8.0)) is None
    assert rig.saved(mark) == [
        [(1, 1)],
        [(0, 2), (1, 1)],
        [(0, 2), (1, 1), (2, 3)],
        [(0, 2), (2, 3)],
        [(0, 2), (2, 3)],
    ]
    last = rig.out.of(ProfilesSaved, mark)[-1].profiles
    assert last == rig.station.charging_profiles
    assert [e.profile.schedule.periods[0].limit for e in last] == [20.0, 8.0]


async def test_a_profile_that_cannot_be_stored_is_not_installed(rig: SmartRig) -> None:
    assert await rig.station.set_charging_profile(1, profile(1, limit=16.0)) is None
    await rig.begin()
    assert rig.offered() == 16.0
    before = rig.station.charging_profiles
    mark = rig.out.mark()

    assert rig.store is not None
    rig.store.failures = 2
    # A new one, and a replacement of the one in force: neither is installed.
    rejection = await rig.station.set_charging_profile(1, profile(2, limit=8.0, stack_level=1))
    assert rejection is not None and rejection.reason is RejectReason.NOT_STORED
    rejection = await rig.station.set_charging_profile(1, profile(1, limit=6.0))
    assert rejection is not None and rejection.reason is RejectReason.NOT_STORED
    assert rig.station.charging_profiles == before
    schedule = rig.station.composite_schedule(1, 60, "A")
    assert schedule is not None and [p.limit for p in schedule.periods] == [16.0]

    # The store is back: the next change is saved on top of the set still in force, and
    # the connector follows it (14 A, not the 8 A or 6 A that were refused).
    assert await rig.station.set_charging_profile(0, profile(3, CP_MAX, 14.0)) is None
    await rig.offering(14.0)
    assert rig.saved(mark) == [[(0, 3), (1, 1)]]
    assert rig.out.statuses(1, mark) == []


RESTORE = ProfileSet().install(1, profile(1, limit=10.0))
RESTORE = RESTORE.install(0, profile(2, CP_MAX, 20.0))
RESTORE = RESTORE.install(0, profile(3, TX_DEFAULT, 12.0))


async def test_restored_profiles_apply_and_nothing_is_saved_if_all_were_kept(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2, charging_profiles=RESTORE)
    assert rig.station.charging_profiles == RESTORE
    assert rig.saved() == []
    await rig.begin("A", 1)
    await rig.begin("B", 2)
    assert (rig.offered(1), rig.offered(2)) == (10.0, 12.0)


async def test_restore_drops_tx_profiles_expired_ones_and_unknown_connectors(
    make_rig: RigFactory,
) -> None:
    past = utcnow() - timedelta(minutes=1)
    saved = (
        RESTORE.install(1, profile(4, TX, 6.0, stack_level=1))
        .install(0, profile(5, limit=6.0, stack_level=3, valid_to=past))
        .install(3, profile(6, limit=6.0, stack_level=4))
    )
    rig = await make_rig(2, charging_profiles=saved)
    assert ids(rig.station.charging_profiles) == [(0, 2), (0, 3), (1, 1)]
    assert rig.saved() == [[(0, 2), (0, 3), (1, 1)]]  # once, during the start
    await rig.begin("A", 1)
    await rig.begin("B", 2)
    assert (rig.offered(1), rig.offered(2)) == (10.0, 12.0)


async def test_restore_on_a_fixed_wall_clock(make_rig: RigFactory) -> None:
    wall = WallClock()
    saved = (
        ProfileSet()
        .install(1, profile(1, limit=10.0, valid_to=START + timedelta(seconds=1)))
        .install(1, profile(2, limit=8.0, stack_level=1, valid_to=START))
    )
    rig = await make_rig(now=wall, charging_profiles=saved)
    assert ids(rig.station.charging_profiles) == [(1, 1)]  # valid_to is exclusive
    assert rig.saved() == [[(1, 1)]]


# ------------------------------------------------------------------ composite schedule


async def test_composite_schedule_of_a_connector_and_of_the_charger(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2, now=WallClock())
    start = START.isoformat()
    tx_default = profile(1, limit=[(0, 16.0), (600, 10.0)], start=start)
    cp_max = profile(2, CP_MAX, [(0, 80.0), (300, 24.0), (900, 8.0)], start=start)
    assert await rig.station.set_charging_profile(1, tx_default) is None

    def periods(connector_id: int, unit: Unit, duration_s: int = 900) -> list[tuple[int, float]]:
        schedule = rig.station.composite_schedule(connector_id, duration_s, unit)
        assert schedule is not None
        assert schedule.start_schedule == START
        assert schedule.duration_s == duration_s
        assert schedule.unit == unit
        return [(p.start_period_s, p.limit) for p in schedule.periods]

    # Without a ChargePointMaxProfile: connector 0's ceiling is 2 x 32 A.
    assert periods(0, "A") == [(0, 64.0)]
    assert periods(0, "W") == [(0, 64.0 * V * 3)]
    assert periods(1, "A") == [(0, 16.0), (600, 10.0)]
    assert periods(2, "A") == [(0, MAX_A)]

    assert await rig.station.set_charging_profile(0, cp_max) is None
    assert periods(0, "A") == [(0, 64.0), (300, 24.0)]
    assert periods(0, "A", 1200) == [(0, 64.0), (300, 24.0), (900, 8.0)]
    assert periods(1, "A", 1200) == [(0, 16.0), (600, 10.0), (900, 8.0)]
    assert periods(1, "W") == [(0, 16.0 * V * 3), (600, 10.0 * V * 3)]
    assert periods(2, "A") == [(0, MAX_A), (300, 24.0)]


async def test_the_composite_schedule_starts_at_the_request_instant(
    make_rig: RigFactory,
) -> None:
    """§5.7: the schedule runs from the request on, so a profile that began within the
    current second is in force from its first instant: the ChargePointMaxProfile caps
    period 0 and the TxDefaultProfile gives it. Periods are whole seconds from the request
    instant, which the schedule carries to the millisecond (the wire's precision). A
    profile that begins after the request, even within the second, is not in force yet:
    it shows from the first whole second at which it is."""
    wall = WallClock()
    rig = await make_rig(2, now=wall)
    began = START + timedelta(milliseconds=300)
    cp_max = profile(1, CP_MAX, [(0, 20.0), (60, 12.0)], start=began)
    assert await rig.station.set_charging_profile(0, cp_max) is None
    tx_default = profile(2, limit=[(0, 16.0), (30, 25.0)], start=began)
    assert await rig.station.set_charging_profile(1, tx_default) is None
    coming = profile(3, limit=10.0, start=START + timedelta(seconds=1))
    assert await rig.station.set_charging_profile(2, coming) is None
    wall.advance(0.7004)  # the request comes 400.4 ms after the profiles began

    def periods(connector_id: int) -> list[tuple[int, float]]:
        schedule = rig.station.composite_schedule(connector_id, 120, "A")
        assert schedule is not None
        assert schedule.start_schedule == START + timedelta(milliseconds=700)
        assert schedule_to_ocpp(schedule)["startSchedule"] == "2026-05-01T12:00:00.700Z"
        return [(p.start_period_s, p.limit) for p in schedule.periods]

    # The changes 30 s and 60 s after the profiles began come 29.6 s and 59.6 s after
    # the request: reported at the next whole second.
    assert periods(1) == [(0, 16.0), (30, 20.0), (60, 12.0)]
    assert periods(0) == [(0, 20.0), (60, 12.0)]
    # Connector 2's own profile begins 300 ms after the request.
    assert periods(2) == [(0, 20.0), (1, 10.0)]


async def test_composite_schedule_is_rejected_for_an_unknown_connector_or_no_duration(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(2)
    assert rig.station.composite_schedule(9, 60, "A") is None
    assert rig.station.composite_schedule(3, 60, "A") is None
    assert rig.station.composite_schedule(1, 0, "A") is None
    assert rig.station.composite_schedule(0, -5, "W") is None
    assert rig.station.composite_schedule(1, 1, "A") is not None
