"""The pending restart as pure logic (:mod:`cpagent.restart`): injected clocks, no agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cpagent.restart import RestartPlan, Verdict
from tests.unit.fakes import FakeClock

T0 = datetime(2026, 11, 25, 21, 0, 0, tzinfo=UTC)


class WallClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def plan(max_wait_s: float = 3600.0) -> tuple[RestartPlan, WallClock, FakeClock]:
    wall, mono = WallClock(), FakeClock()
    return RestartPlan(max_wait_s, clock=wall, monotonic=mono), wall, mono


def test_an_idle_charger_restarts_now() -> None:
    p, _, _ = plan()
    pending, again = p.request("cpagent 1.2 installed")
    assert not again
    assert p.verdict([]) is Verdict.NOW
    assert pending.describe([]) == {
        "reason": "cpagent 1.2 installed",
        "requested_at": "2026-11-25T21:00:00.000Z",
        "deadline": "2026-11-25T22:00:00.000Z",
        "waiting_for": [],
    }


def test_a_busy_charger_waits_until_its_last_transaction_ends() -> None:
    p, _, mono = plan()
    p.request(None)
    assert p.verdict([1, 2]) is Verdict.WAIT
    mono.advance(1800)
    assert p.verdict([2]) is Verdict.WAIT
    assert p.seconds_left() == 1800
    assert p.verdict([]) is Verdict.NOW


def test_at_the_deadline_a_running_transaction_no_longer_holds_the_restart() -> None:
    p, _, mono = plan(3600)
    p.request("upgrade")
    mono.advance(3599.5)
    assert p.verdict([1]) is Verdict.WAIT
    mono.advance(0.5)
    assert p.seconds_left() == 0.0
    assert p.verdict([1]) is Verdict.OVERDUE
    assert p.verdict([]) is Verdict.NOW  # idle at the deadline: an ordinary restart


def test_the_deadline_runs_on_the_monotonic_clock_not_the_wall_clock() -> None:
    p, wall, _ = plan(3600)
    p.request("upgrade")
    wall.now += timedelta(days=400)  # NTP's first answer on a board without a clock
    assert p.verdict([1]) is Verdict.WAIT


def test_a_second_request_replaces_the_reason_and_keeps_the_deadline() -> None:
    p, wall, mono = plan(3600)
    first, _ = p.request("first")
    wall.now += timedelta(minutes=50)
    mono.advance(3000)
    second, again = p.request("second")
    assert again
    assert second.reason == "second"
    assert (second.requested_at, second.deadline, second.due) == (
        first.requested_at,
        first.deadline,
        first.due,
    )
    assert p.seconds_left() == 600


def test_zero_max_wait_means_no_deadline() -> None:
    p, _, mono = plan(0)
    pending, _ = p.request(None)
    assert pending.deadline is None and p.seconds_left() is None
    mono.advance(10 * 365 * 86400)
    assert p.verdict([1]) is Verdict.WAIT
    assert pending.describe([1])["deadline"] is None


def test_a_verdict_needs_a_pending_restart() -> None:
    p, _, _ = plan()
    with pytest.raises(ValueError, match="no restart is pending"):
        p.verdict([])
