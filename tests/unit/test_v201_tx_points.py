"""Parsing TxCtrlr's TxStartPoint / TxStopPoint (Part 2, E01-E03, E06-E10); the station's
behaviour at each point is tested in tests/unit/test_station_tx_points.py."""

from __future__ import annotations

import pytest

from cpagent.protocol.v201.catalogue import TX_POINTS
from cpagent.protocol.v201.tx_points import TxPoint, TxPointsRejected, parse_tx_points

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


def test_the_catalogue_offers_only_points_the_station_has_facts_for() -> None:
    assert set(TX_POINTS) == {"EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer"}
