"""Reservations as the adapter persists them under one ``state`` key."""

from __future__ import annotations

from datetime import UTC, datetime

from cpagent.station.model import Reservation
from cpagent.station.persistence import reservations_from_json, reservations_to_json


def test_round_trip() -> None:
    saved = [
        Reservation(1, 1, "A", None, datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        Reservation(2, 2, "B", "GROUP", datetime(2030, 1, 2, tzinfo=UTC)),
    ]
    assert reservations_from_json(reservations_to_json(saved)) == saved
    assert reservations_from_json(reservations_to_json([])) == []


def test_unreadable_entries_are_dropped() -> None:
    assert reservations_from_json(None) == []
    assert reservations_from_json("") == []
    assert reservations_from_json("not json") == []
    assert reservations_from_json('{"a": 1}') == []
    text = (
        '[1, {"reservationId": 3}, {"reservationId": 4, "connectorId": 1, "idTag": "T",'
        ' "expiryDate": "soon"}, {"reservationId": 5, "connectorId": 1, "idTag": "T",'
        ' "parentIdTag": null, "expiryDate": "2030-01-01T00:00:00Z"}]'
    )
    assert reservations_from_json(text) == [
        Reservation(5, 1, "T", None, datetime(2030, 1, 1, tzinfo=UTC))
    ]
