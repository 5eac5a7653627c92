"""The OCPP 2.0.1 transaction ledger (tests/integration/ledger201.py) on hand-made frames.

The crash soak trusts this checker to say "0 lost, 0 reordered": each way a CSMS could see
the guarantee broken (a seqNo gap, events out of order, a second event under a taken seqNo,
a transaction never ended, a falling register, interleaved transactions) must be reported
with its kind, and a clean stream, an in-flight re-send included, must pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from cpagent.testing.csms import Received
from tests.integration.ledger201 import (
    DUPLICATE,
    LOST,
    METER,
    REORDERED,
    STOP_REASON,
    analyse_ledger,
    check_ledger,
)

TX = "4f6c0a7e-0000-4000-8000-000000000001"
OTHER = "4f6c0a7e-0000-4000-8000-000000000002"


def _at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}Z"


def _register(second: int, wh: float, context: str) -> dict[str, Any]:
    return {
        "timestamp": _at(second),
        "sampledValue": [
            {
                "value": wh,
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"},
            }
        ],
    }


def _event(
    kind: str, seq_no: int, second: int, wh: float, tx: str = TX, **info: Any
) -> dict[str, Any]:
    context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
        kind, "Sample.Periodic"
    )
    payload: dict[str, Any] = {
        "eventType": kind,
        "timestamp": _at(second),
        "triggerReason": {"Started": "Authorized", "Ended": "StopAuthorized"}.get(
            kind, "MeterValuePeriodic"
        ),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx, **info},
        "meterValue": [_register(second, wh, context)],
    }
    if kind == "Started":
        payload["evse"] = {"id": 1, "connectorId": 1}
        payload["idToken"] = {"idToken": "CARD", "type": "ISO14443"}
    return payload


def _transaction(tx: str = TX, start: int = 0, wh: float = 100) -> list[dict[str, Any]]:
    """Started, two Updated, Ended (reason Local), one second apart, the register rising."""
    return [
        _event("Started", 0, start, wh, tx),
        _event("Updated", 1, start + 1, wh + 10, tx),
        _event("Updated", 2, start + 2, wh + 20, tx),
        _event("Ended", 3, start + 3, wh + 30, tx, stoppedReason="Local"),
    ]


def _frames(payloads: list[dict[str, Any]], ids: list[str] | None = None) -> list[Received]:
    """The CALLs as the loopback CSMS records them; message ids from ``ids`` or one each."""
    ids = ids or [f"m{i}" for i in range(len(payloads))]
    return [
        Received(i, "CP", uid, "TransactionEvent", payload, "2.0.1")
        for i, (uid, payload) in enumerate(zip(ids, payloads, strict=True))
    ]


def _kinds(frames: list[Received], **options: Any) -> set[str]:
    return {p.kind for p in analyse_ledger(frames, **options).problems}


def test_clean_transactions_pass_with_the_in_flight_event_sent_again() -> None:
    first, second = _transaction(), _transaction(OTHER, start=10, wh=130)
    events = [*first[:2], first[1], *first[2:], *second]
    ids = ["a0", "a1", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]
    report = check_ledger(_frames(events, ids), max_duplicates=1)
    assert [s.transaction_id for s in report.sessions] == [TX, OTHER]
    assert [s.reason for s in report.sessions] == ["Local", "Local"]
    assert (report.messages, report.received, len(report.duplicates)) == (8, 9, 1)
    assert report.summary()["lost"] == report.summary()["reordered"] == 0


def test_frames_of_1_6_and_other_actions_are_not_transaction_events() -> None:
    frames = _frames(_transaction())
    frames.append(Received(9, "CP", "x", "TransactionEvent", {"seqNo": 7}, "1.6"))
    frames.append(Received(10, "CP", "y", "Heartbeat", {}, "2.0.1"))
    assert check_ledger(frames).received == 4


def test_a_gap_in_seq_no_is_a_lost_event() -> None:
    events = _transaction()
    del events[2]
    report = analyse_ledger(_frames(events))
    assert {p.kind for p in report.problems} == {LOST}
    (problem,) = report.problems
    assert "no event with seqNo 2" in problem.text


def test_events_out_of_seq_no_order_are_reordered() -> None:
    events = _transaction()
    events[1], events[2] = events[2], events[1]
    # seqNo 1 arrives after seqNo 2, and its timestamp goes back.
    assert _kinds(_frames(events)) == {REORDERED}


def test_a_second_event_under_a_taken_seq_no_is_a_duplicate() -> None:
    events = _transaction()
    changed = dict(events[1], timestamp=_at(1), meterValue=[_register(1, 111, "Sample.Periodic")])
    frames = _frames([*events[:2], changed, *events[2:]], ["m0", "m1", "new", "m2", "m3"])
    report = analyse_ledger(frames)
    assert {p.kind for p in report.problems} == {DUPLICATE}
    assert "with another payload" in report.problems[0].text
    # The same payload under another message id is not a re-send either.
    frames = _frames([*events[:2], events[1], *events[2:]], ["m0", "m1", "new", "m2", "m3"])
    assert _kinds(frames) == {DUPLICATE}


def test_a_re_send_with_a_changed_payload_or_too_often_or_late_is_caught() -> None:
    events = _transaction()
    changed = dict(events[1], timestamp=_at(2))
    frames = _frames([*events[:2], changed, *events[2:]], ["m0", "m1", "m1", "m2", "m3"])
    assert _kinds(frames) == {DUPLICATE}
    thrice = _frames(
        [*events[:2], events[1], events[1], *events[2:]], ["0", "1", "1", "1", "2", "3"]
    )
    assert _kinds(thrice) == {DUPLICATE}
    assert _kinds(thrice, max_copies=3) == set()
    late = _frames([*events[:3], events[1], events[3]], ["0", "1", "2", "1", "3"])
    assert _kinds(late) == {REORDERED}


def test_a_transaction_without_ended_is_lost_unless_not_required() -> None:
    events = _transaction()[:3]
    report = analyse_ledger(_frames(events))
    assert [p.kind for p in report.problems] == [LOST]
    assert "never got an Ended" in report.problems[0].text
    assert _kinds(_frames(events), require_ended=False) == set()


def test_the_started_event_must_be_first_and_nothing_may_follow_the_ended() -> None:
    events = _transaction()
    no_start = _frames(events[1:])
    assert _kinds(no_start) == {LOST}  # seqNo 0 missing, no Started
    after_end = _transaction()
    after_end.append(_event("Updated", 4, 4, 130))
    assert _kinds(_frames(after_end)) == {REORDERED}
    updated_first = _transaction()
    updated_first[0] = dict(_event("Updated", 0, 0, 100), evse={"id": 1, "connectorId": 1})
    assert REORDERED in _kinds(_frames(updated_first))


def test_a_falling_register_is_a_meter_problem_within_and_across_transactions() -> None:
    events = _transaction()
    events[2] = _event("Updated", 2, 2, 105)
    assert _kinds(_frames(events)) == {METER}
    across = [*_transaction(), *_transaction(OTHER, start=10, wh=120)]
    assert _kinds(_frames(across)) == {METER}


def test_ended_repeating_kept_samples_is_not_a_falling_register() -> None:
    """TxEndedMeasurands: the Ended event repeats samples taken during the transaction."""
    events = _transaction()
    kept = [_register(1, 110, "Sample.Periodic"), _register(2, 120, "Sample.Periodic")]
    events[3]["meterValue"] = [*kept, *events[3]["meterValue"]]
    assert _kinds(_frames(events)) == set()
    # ... but a kept sample that no Updated event carried was lost on the way.
    events[3]["meterValue"].insert(0, _register(1, 115, "Sample.Clock"))
    events[3]["meterValue"][0]["timestamp"] = "2026-01-01T00:00:01.500Z"
    assert _kinds(_frames(events)) == {LOST}


def test_transactions_interleaving_on_one_evse_are_reordered() -> None:
    first, second = _transaction(), _transaction(OTHER, start=10, wh=130)
    assert _kinds(_frames([*first[:2], *second, *first[2:]])) >= {REORDERED}


def test_a_stopped_reason_outside_the_allowed_set() -> None:
    events = _transaction()
    events[3]["transactionInfo"]["stoppedReason"] = "Other"
    assert _kinds(_frames(events)) == {STOP_REASON}
    del events[3]["transactionInfo"]["stoppedReason"]  # absent: Local
    assert check_ledger(_frames(events)).sessions[0].reason == "Local"


@pytest.mark.parametrize("max_duplicates", [0, 1])
def test_re_sends_beyond_the_interruptions_are_duplicates(max_duplicates: int) -> None:
    events = _transaction()
    frames = _frames(
        [events[0], events[0], events[1], events[1], *events[2:]],
        ["0", "0", "1", "1", "2", "3"],
    )
    assert _kinds(frames, max_duplicates=max_duplicates) == {DUPLICATE}
    assert _kinds(frames, max_duplicates=2) == set()
