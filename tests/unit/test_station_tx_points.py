"""Transactions begun and ended at configured points (OCPP 2.0.1 TxStartPoint and TxStopPoint,
Part 2 E01-E03, E06-E10), on the station with the simulated hardware.

Each test sets the points on the station's settings, drives the EV, the card and the CSMS
commands, and asserts what the output port records and what the contactor and pilot do.
"""

from __future__ import annotations

import pytest

from cpagent.station.model import (
    ConnectorStatus,
    MeterSample,
    StopReason,
    TransactionAuthorized,
    TransactionDeauthorized,
    TransactionStarted,
    TransactionStopped,
    TxPoint,
)
from tests.unit.test_station import Rig, RigFactory
from tests.unit.test_station import make_rig as make_rig  # the fixture, used by name

EV = TxPoint.EV_CONNECTED
AUTH = TxPoint.AUTHORIZED
POWER = TxPoint.POWER_PATH_CLOSED
ENERGY = TxPoint.ENERGY_TRANSFER


async def rig_with(
    make_rig: RigFactory, start: set[TxPoint], stop: set[TxPoint], connectors: int = 1
) -> Rig:
    rig = await make_rig(connectors, energy_wh=500.0)
    rig.settings.tx_start_points = frozenset(start)
    rig.settings.tx_stop_points = frozenset(stop)
    return rig


async def settled(rig: Rig) -> None:
    """Until what the station is doing under its lock is done (a reading needs the lock)."""
    mark = rig.out.mark()
    await rig.station.sample_now(1)
    await rig.out.wait_for(MeterSample, since=mark)


async def ev_begins(rig: Rig) -> int:
    """Plug an EV in and wait for the transaction it begins; the mark before it."""
    mark = rig.out.mark()
    rig.hw.plug(1)
    await rig.out.wait_for(TransactionStarted, since=mark)
    return mark


async def armed(rig: Rig) -> int:
    """An EV that asks for no energy yet, and TAG-1 accepted for it; the mark before it."""
    mark = rig.out.mark()
    rig.hw.force_ev_state(1, "B")
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    rig.hw.present_card("TAG-1")
    await rig.auth.wait_asked("TAG-1")
    await settled(rig)
    return mark


def supplying(rig: Rig, cid: int = 1) -> bool:
    return rig.hw.contactor(cid).closed and rig.hw.pilot(cid).offered_current > 0


async def test_ev_connected_starts_a_transaction_that_a_card_then_authorizes(
    make_rig: RigFactory,
) -> None:
    """E02: the EV first. The transaction begins at the plug-in with no token and no
    energy; the card authorizes it (no second start) and the supply comes on."""
    rig = await rig_with(make_rig, {EV}, {EV, AUTH})
    mark = rig.out.mark()
    rig.hw.plug(1)
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert (started.id_token, started.trigger, started.meter_start_wh) == (None, EV, 500)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert not supplying(rig)
    tx = rig.station.connectors[1].transaction
    assert tx is not None and not tx.authorized

    rig.hw.present_card("TAG-1")
    authorized = await rig.out.wait_for(TransactionAuthorized, since=mark)
    assert (authorized.local_id, authorized.id_token) == (started_local_id(rig), "TAG-1")
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert supplying(rig)
    assert len(rig.out.of(TransactionStarted, mark)) == 1

    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert (stopped.reason, stopped.id_token) == (StopReason.LOCAL, "TAG-1")
    assert not supplying(rig)


def started_local_id(rig: Rig) -> int:
    tx = rig.station.connectors[1].transaction
    assert tx is not None
    return tx.local_id


async def test_ev_connected_transaction_ends_at_the_unplug_without_authorization(
    make_rig: RigFactory,
) -> None:
    rig = await rig_with(make_rig, {EV}, {EV, AUTH})
    mark = await ev_begins(rig)
    rig.hw.unplug(1)
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.reason is StopReason.EV_DISCONNECTED
    assert rig.out.of(TransactionAuthorized, mark) == []
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)


async def test_remote_start_authorizes_the_transaction_the_ev_began(
    make_rig: RigFactory,
) -> None:
    rig = await rig_with(make_rig, {EV}, {EV, AUTH})
    mark = await ev_begins(rig)
    assert await rig.station.remote_start("APP-7", 1) is True
    authorized = await rig.out.wait_for(TransactionAuthorized, since=mark)
    assert authorized.id_token == "APP-7"
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)


async def test_a_remote_stop_ends_a_transaction_never_authorized(make_rig: RigFactory) -> None:
    rig = await rig_with(make_rig, {EV}, {EV, AUTH})
    mark = await ev_begins(rig)
    assert rig.station.stop_transaction(started_local_id(rig), StopReason.REMOTE) is True
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.reason is StopReason.REMOTE


async def test_authorized_starts_at_the_card_and_the_supply_waits_for_the_ev(
    make_rig: RigFactory,
) -> None:
    """E03: the card first. The transaction begins at once, the EV not there: Preparing,
    no supply. The plug-in brings the supply and starts nothing new."""
    rig = await rig_with(make_rig, {AUTH}, {EV, AUTH})
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert (started.id_token, started.trigger) == ("TAG-1", AUTH)
    await rig.out.wait_status(1, ConnectorStatus.PREPARING, since=mark)
    assert not supplying(rig) and not rig.hw.contactor(1).closed

    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert supplying(rig)
    assert len(rig.out.of(TransactionStarted, mark)) == 1


async def test_authorized_start_times_out_without_an_ev(make_rig: RigFactory) -> None:
    """E03: no EV within EVConnectionTimeOut ends the transaction with Timeout."""
    rig = await rig_with(make_rig, {AUTH}, {EV, AUTH})
    rig.settings.connection_timeout_s = 1
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    await rig.out.wait_for(TransactionStarted, since=mark)
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.reason is StopReason.TIMEOUT
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert not rig.hw.contactor(1).closed


async def test_without_authorized_as_stop_point_the_card_only_ends_the_supply(
    make_rig: RigFactory,
) -> None:
    """E06 with TxStopPoint EVConnected: the card again ends the authorization and the
    energy; the transaction goes on to the unplug."""
    rig = await rig_with(make_rig, {POWER}, {EV})
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    ended = await rig.out.wait_for(TransactionDeauthorized, since=mark)
    assert (ended.local_id, ended.reason, ended.id_token) == (local_id, StopReason.LOCAL, "TAG-1")
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)
    assert not supplying(rig)
    assert rig.out.of(TransactionStopped, mark) == []

    rig.hw.unplug(1)
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert (stopped.local_id, stopped.reason) == (local_id, StopReason.EV_DISCONNECTED)


async def test_a_deauthorized_transaction_may_be_authorized_again(make_rig: RigFactory) -> None:
    rig = await rig_with(make_rig, {POWER}, {EV})
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    await rig.out.wait_for(TransactionDeauthorized, since=mark)
    rig.hw.present_card("TAG-2")
    again = await rig.out.wait_for(TransactionAuthorized, since=mark)
    assert (again.local_id, again.id_token) == (local_id, "TAG-2")
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)


async def test_power_path_closed_as_stop_point_ends_with_the_cause_of_the_opening(
    make_rig: RigFactory,
) -> None:
    """The contactor opening ends the transaction; the unplug that opened it names it."""
    rig = await rig_with(make_rig, {POWER}, {POWER})
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.unplug(1)
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert (stopped.local_id, stopped.reason) == (local_id, StopReason.EV_DISCONNECTED)
    assert rig.out.of(TransactionDeauthorized, mark) == []


async def test_power_path_closed_stop_by_the_card(make_rig: RigFactory) -> None:
    rig = await rig_with(make_rig, {POWER}, {POWER})
    await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.present_card("TAG-1")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert stopped.reason is StopReason.LOCAL
    assert not rig.hw.contactor(1).closed


async def test_energy_transfer_start_supplies_first_and_begins_when_the_ev_draws(
    make_rig: RigFactory,
) -> None:
    """E01 S6: the EV is supplied once authorized; the transaction begins at the draw."""
    rig = await rig_with(make_rig, {ENERGY}, {EV, AUTH})
    mark = await armed(rig)
    assert supplying(rig)
    assert rig.out.of(TransactionStarted, mark) == []
    assert rig.station.busy_connectors() == [1]

    rig.hw.plug(1)  # back to automatic: the EV draws
    started = await rig.out.wait_for(TransactionStarted, since=mark)
    assert (started.id_token, started.trigger) == ("TAG-1", ENERGY)
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)


async def test_an_armed_supply_ends_at_the_unplug_with_no_transaction(
    make_rig: RigFactory,
) -> None:
    rig = await rig_with(make_rig, {ENERGY}, {EV, AUTH})
    mark = await armed(rig)
    rig.hw.unplug(1)
    await rig.out.wait_status(1, ConnectorStatus.AVAILABLE, since=mark)
    assert not rig.hw.contactor(1).closed
    assert rig.out.of(TransactionStarted, mark) == []
    assert rig.station.busy_connectors() == []


async def test_energy_transfer_as_stop_point_ends_when_the_ev_stops_drawing(
    make_rig: RigFactory,
) -> None:
    rig = await rig_with(make_rig, {POWER}, {ENERGY})
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.force_ev_state(1, "B")
    stopped = await rig.out.wait_for(TransactionStopped, since=mark)
    assert (stopped.local_id, stopped.reason) == (local_id, StopReason.STOPPED_BY_EV)
    assert not supplying(rig)
    rig.hw.plug(1)  # the EV asks again: a transaction that ended does not come back
    await settled(rig)
    assert rig.out.of(TransactionStarted, mark) == []
    assert not supplying(rig)


@pytest.mark.parametrize("stop_on_unplug", [True, False])
async def test_ocpp16_rule_is_unchanged_and_never_supplies_an_empty_socket(
    make_rig: RigFactory, stop_on_unplug: bool
) -> None:
    """No points set: OCPP 1.6's rule. Without StopTransactionOnEVSideDisconnect the
    session outlives the unplug, but the supply goes off until the EV is back."""
    rig = await make_rig(energy_wh=500.0)
    rig.settings.stop_on_ev_side_disconnect = stop_on_unplug
    assert rig.settings.stop_points() == ({AUTH, EV} if stop_on_unplug else {AUTH})
    local_id = await rig.start_session("TAG-1")
    mark = rig.out.mark()
    rig.hw.unplug(1)
    if stop_on_unplug:
        await rig.out.wait_for(TransactionStopped, since=mark)
        return
    await rig.out.wait_status(1, ConnectorStatus.FINISHING, since=mark)
    assert not rig.hw.contactor(1).closed
    assert rig.out.of(TransactionStopped, mark) == []
    rig.hw.plug(1)
    await rig.out.wait_status(1, ConnectorStatus.CHARGING, since=mark)
    assert started_local_id(rig) == local_id


@pytest.mark.parametrize("reason", [StopReason.STOPPED_BY_EV, StopReason.TIMEOUT])
def test_a_stop_reason_1_6_has_no_word_for_goes_out_as_other(reason: StopReason) -> None:
    """A session begun in 2.0.1 may be closed by a 1.6 agent after a version switch."""
    from cpagent.protocol.v16 import messages as messages16

    event = TransactionStopped(3, 1, 1500, "2026-12-08T00:00:00Z", reason)
    assert messages16.stop_transaction(event, [])["reason"] == "Other"


async def test_an_ev_found_connected_at_start_begins_a_transaction(make_rig: RigFactory) -> None:
    rig = await make_rig(energy_wh=500.0, run=False)
    rig.settings.tx_start_points = frozenset({EV})
    rig.hw.plug(1)
    await rig.run()
    started = await rig.out.wait_for(TransactionStarted)
    assert (started.id_token, started.trigger) == (None, EV)
    assert not supplying(rig)
