"""The OCPP 2.0.1 TxStartPoint / TxStopPoint rules (Part 2, E01-E03, E06-E10)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpagent.protocol.v201.catalogue import TX_POINTS
from cpagent.protocol.v201.enums import ReasonEnumType as R
from cpagent.protocol.v201.enums import TriggerReasonEnumType as T
from cpagent.protocol.v201.tx_points import (
    IDLE,
    Action,
    Decision,
    EventHint,
    EvseFacts,
    EvseTxPoints,
    TxPoint,
    TxPointsRejected,
    facts_from_connector,
    parse_tx_points,
)
from cpagent.station.model import ConnectorState

# The facts along an ordinary session.
PLUGGED = EvseFacts(ev_connected=True)
AUTH_ONLY = EvseFacts(authorized=True)
READY = EvseFacts(ev_connected=True, authorized=True)
CLOSED = EvseFacts(ev_connected=True, authorized=True, power_path_closed=True)
CHARGING = EvseFacts(
    ev_connected=True, authorized=True, power_path_closed=True, energy_transfer=True
)
SUSPENDED_EV = CLOSED  # pilot back to B with the contactor still closed


def run(start: str, stop: str, steps: list[tuple[EvseFacts, EventHint]]) -> list[Decision]:
    """Feed the facts in order from IDLE; return every decision."""
    machine = EvseTxPoints.from_member_lists(start, stop)
    previous = IDLE
    decisions = []
    for facts, hint in steps:
        decisions.append(machine.step(previous, facts, hint))
        previous = facts
    return decisions


def plain(*facts: EvseFacts) -> list[tuple[EvseFacts, EventHint]]:
    return [(f, EventHint.NONE) for f in facts]


def actions(decisions: list[Decision]) -> list[Action]:
    return [d.action for d in decisions]


# --- parsing -----------------------------------------------------------------------------


def test_parses_the_default_member_list() -> None:
    assert parse_tx_points("EVConnected,Authorized") == {
        TxPoint.EV_CONNECTED,
        TxPoint.AUTHORIZED,
    }


def test_parses_every_catalogue_member_and_blanks() -> None:
    assert {str(p) for p in parse_tx_points(" , ".join(TX_POINTS))} == set(TX_POINTS)
    assert parse_tx_points("") == frozenset()


def test_unknown_members_are_rejected_by_name() -> None:
    with pytest.raises(TxPointsRejected, match="Plugged, evconnected"):
        parse_tx_points("Authorized,Plugged,evconnected")


# --- facts from the station --------------------------------------------------------------


@pytest.mark.parametrize(
    ("pilot", "contactor", "offered", "tag", "expected"),
    [
        ("A", False, 0.0, None, EvseFacts()),
        ("B", False, 0.0, None, PLUGGED),
        ("A", False, 0.0, "T1", AUTH_ONLY),
        ("B", True, 16.0, "T1", CLOSED),
        ("C", True, 16.0, "T1", CHARGING),
        ("D", True, 6.0, "T1", CHARGING),
        ("C", True, 5.9, "T1", CLOSED),
        ("C", False, 16.0, "T1", READY),
        ("E", False, 0.0, None, EvseFacts()),
        ("F", False, 0.0, None, EvseFacts()),
    ],
)
def test_facts_from_connector(
    pilot: str, contactor: bool, offered: float, tag: str | None, expected: EvseFacts
) -> None:
    connector = ConnectorState(
        connector_id=1,
        pilot=pilot,
        contactor_closed=contactor,
        offered_a=offered,
        authorized_id_tag=tag,
    )
    facts = facts_from_connector(connector)
    assert facts == expected
    assert not facts.parking_bay_occupied and not facts.data_signed
    assert connector.pilot == pilot and connector.authorized_id_tag == tag  # untouched


# --- start points alone ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "facts", "trigger"),
    [
        ("EVConnected", PLUGGED, T.cable_plugged_in),
        ("Authorized", AUTH_ONLY, T.authorized),
        ("PowerPathClosed", CLOSED, T.charging_state_changed),
        ("EnergyTransfer", CHARGING, T.charging_state_changed),
        ("ParkingBayOccupancy", EvseFacts(parking_bay_occupied=True), T.ev_detected),
        ("DataSigned", EvseFacts(data_signed=True), T.signed_data_received),
    ],
)
def test_each_start_point_alone(point: str, facts: EvseFacts, trigger: T) -> None:
    (decision,) = run(point, "EVConnected", plain(facts))
    assert decision == Decision(Action.START, trigger, None, TxPoint(point))


@pytest.mark.parametrize(
    ("point", "before"),
    [
        ("EVConnected", AUTH_ONLY),
        ("Authorized", PLUGGED),
        ("PowerPathClosed", READY),
        ("EnergyTransfer", CLOSED),
    ],
)
def test_start_point_waits_for_its_own_condition(point: str, before: EvseFacts) -> None:
    assert actions(run(point, "EVConnected", plain(before))) == [Action.NOTHING]


def test_remote_start_names_the_started_event() -> None:
    decisions = run("Authorized", "Authorized", [(AUTH_ONLY, EventHint.REMOTE_START)])
    assert decisions[0].trigger_reason is T.remote_start


# --- the use cases -----------------------------------------------------------------------


def test_e02_cable_plugin_first_with_the_default_points() -> None:
    decisions = run(
        "EVConnected,Authorized", "EVConnected,Authorized", plain(PLUGGED, READY, CHARGING)
    )
    assert actions(decisions) == [Action.START, Action.NOTHING, Action.NOTHING]
    assert decisions[0].trigger_reason is T.cable_plugged_in


def test_e03_authorization_first_with_the_default_points() -> None:
    decisions = run("EVConnected,Authorized", "EVConnected,Authorized", plain(AUTH_ONLY, READY))
    assert actions(decisions) == [Action.START, Action.NOTHING]
    assert decisions[0].trigger_reason is T.authorized


def test_e03_ev_connect_timeout_ends_a_transaction_started_by_authorization() -> None:
    decisions = run(
        "Authorized",
        "EVConnected",
        [(AUTH_ONLY, EventHint.NONE), (IDLE, EventHint.EV_CONNECT_TIMEOUT)],
    )
    assert decisions[1] == Decision(Action.STOP, T.ev_connect_timeout, R.timeout, None)


def test_stop_condition_never_true_does_not_end_the_transaction() -> None:
    # TxStopPoint EVConnected, started at authorization: no EV yet is not "no longer met".
    decisions = run("Authorized", "EVConnected", plain(AUTH_ONLY, AUTH_ONLY, READY))
    assert actions(decisions) == [Action.START, Action.NOTHING, Action.NOTHING]


def test_power_path_closed_start_and_stop() -> None:
    decisions = run(
        "PowerPathClosed", "PowerPathClosed", plain(PLUGGED, READY, CLOSED, CHARGING, READY)
    )
    assert actions(decisions) == [
        Action.NOTHING,
        Action.NOTHING,
        Action.START,
        Action.NOTHING,
        Action.STOP,
    ]
    assert decisions[2].trigger_reason is T.charging_state_changed
    assert decisions[4].stopped_reason is R.other  # contactor opened on its own


def test_power_path_closed_stop_names_an_unplug_as_its_cause() -> None:
    decisions = run("PowerPathClosed", "PowerPathClosed", plain(CLOSED, IDLE))
    assert decisions[1] == Decision(
        Action.STOP, T.ev_communication_lost, R.ev_disconnected, TxPoint.POWER_PATH_CLOSED
    )


def test_energy_transfer_start_and_stop_by_the_ev() -> None:
    decisions = run("EnergyTransfer", "EnergyTransfer", plain(READY, CHARGING, SUSPENDED_EV))
    assert actions(decisions) == [Action.NOTHING, Action.START, Action.STOP]
    assert decisions[2].trigger_reason is T.charging_state_changed
    assert decisions[2].stopped_reason is R.stopped_by_ev


def test_energy_transfer_stop_by_the_station_offer() -> None:
    machine = EvseTxPoints.from_member_lists("EnergyTransfer", "EnergyTransfer")
    machine.step(READY, CHARGING)
    decision = machine.step(CHARGING, CLOSED, energy_offer_withdrawn=True)
    assert (decision.action, decision.stopped_reason) == (Action.STOP, R.other)


def test_e06_stop_by_ev_disconnect() -> None:
    decisions = run(
        "EVConnected,Authorized", "EVConnected,Authorized", plain(PLUGGED, CHARGING, IDLE)
    )
    assert decisions[2] == Decision(
        Action.STOP, T.ev_communication_lost, R.ev_disconnected, TxPoint.EV_CONNECTED
    )


def test_e06_local_stop_by_presenting_the_token_again() -> None:
    decisions = run(
        "EVConnected,Authorized",
        "EVConnected,Authorized",
        [
            (PLUGGED, EventHint.NONE),
            (CHARGING, EventHint.NONE),
            (PLUGGED, EventHint.STOP_AUTHORIZED),
        ],
    )
    assert decisions[2] == Decision(Action.STOP, T.stop_authorized, R.local, TxPoint.AUTHORIZED)


@pytest.mark.parametrize(
    ("hint", "trigger", "reason"),
    [
        (EventHint.DEAUTHORIZED, T.deauthorized, R.de_authorized),
        (EventHint.REMOTE_STOP, T.remote_stop, R.remote),
        (EventHint.NONE, T.stop_authorized, R.local),
    ],
)
def test_e06_authorization_ends(hint: EventHint, trigger: T, reason: R) -> None:
    decisions = run("Authorized", "Authorized", [(CHARGING, EventHint.NONE), (PLUGGED, hint)])
    assert decisions[1] == Decision(Action.STOP, trigger, reason, TxPoint.AUTHORIZED)


def test_stop_point_ev_connected_only_outlives_a_local_stop() -> None:
    decisions = run(
        "EVConnected,Authorized",
        "EVConnected",
        [
            (PLUGGED, EventHint.NONE),
            (CHARGING, EventHint.NONE),
            (PLUGGED, EventHint.STOP_AUTHORIZED),
            (IDLE, EventHint.NONE),
        ],
    )
    assert actions(decisions) == [Action.START, Action.NOTHING, Action.NOTHING, Action.STOP]
    assert decisions[3].stopped_reason is R.ev_disconnected


def test_a_new_token_starts_a_new_transaction_while_the_cable_stays_in() -> None:
    decisions = run(
        "EVConnected,Authorized", "Authorized", plain(PLUGGED, READY, PLUGGED, PLUGGED, READY)
    )
    assert actions(decisions) == [
        Action.START,
        Action.NOTHING,
        Action.STOP,
        Action.NOTHING,  # the cable still in does not restart it (edge, not level)
        Action.START,
    ]


def test_unplug_and_deauthorization_together_name_the_unplug() -> None:
    decisions = run("Authorized", "EVConnected,Authorized", plain(CHARGING, IDLE))
    assert decisions[1].point is TxPoint.EV_CONNECTED
    assert decisions[1].stopped_reason is R.ev_disconnected


def test_ev_present_at_first_observation_starts() -> None:
    machine = EvseTxPoints.from_member_lists("EVConnected", "EVConnected")
    assert machine.step(None, PLUGGED).action is Action.START
    assert machine.active


# --- property ----------------------------------------------------------------------------

facts_strategy = st.builds(
    EvseFacts,
    ev_connected=st.booleans(),
    authorized=st.booleans(),
    power_path_closed=st.booleans(),
    energy_transfer=st.booleans(),
    parking_bay_occupied=st.booleans(),
    data_signed=st.booleans(),
)
points_strategy = st.frozensets(st.sampled_from(list(TxPoint)))


@settings(max_examples=300, deadline=None)
@given(
    start=points_strategy,
    stop=points_strategy,
    sequence=st.lists(st.tuples(facts_strategy, st.sampled_from(list(EventHint))), max_size=30),
)
def test_starts_and_stops_alternate(
    start: frozenset[TxPoint],
    stop: frozenset[TxPoint],
    sequence: list[tuple[EvseFacts, EventHint]],
) -> None:
    machine = EvseTxPoints(start, stop)
    previous: EvseFacts | None = None
    active = False
    for facts, hint in sequence:
        decision = machine.step(previous, facts, hint)
        if decision.action is Action.START:
            assert not active, "started twice without a stop"
            assert decision.trigger_reason is not None and decision.stopped_reason is None
            active = True
        elif decision.action is Action.STOP:
            assert active, "stopped without a start"
            assert decision.trigger_reason is not None and decision.stopped_reason is not None
            active = False
        else:
            assert decision == Decision(Action.NOTHING)
        assert machine.active is active
        previous = facts
