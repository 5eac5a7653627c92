"""A restart asked for "when idle": what is pending, and when it is due.

An upgrade of the installed package asks the running agent (``cpagent restart --when-idle``)
to restart into the new code once no session runs, so a car charging overnight is not
stopped. This module is the decision alone, with no I/O and injected clocks: the agent
(:mod:`cpagent.agent`) asks it again whenever the station's busy connectors change
(:attr:`cpagent.station.station.Station.activity`) and when the deadline comes.

* The first request records the reason, the time it was made and the deadline: that time
  plus ``[control] restart_max_wait_s`` (0: none).
* A later request while one is pending replaces the reason and keeps the earlier
  deadline, so asking again never postpones a restart.
* :meth:`RestartPlan.verdict`: :attr:`Verdict.NOW` when no connector is busy,
  :attr:`Verdict.OVERDUE` when some still are at the deadline (the agent restarts anyway,
  ending their sessions as a stop does), else :attr:`Verdict.WAIT`.

The deadline is kept on the monotonic clock (a board without a real-time clock may step
its wall clock by years when NTP answers); the wall-clock times are only for people.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cpagent.timeutil import iso, utcnow


class Verdict(enum.Enum):
    NOW = "now"
    """No connector is busy: restart now."""
    WAIT = "wait"
    """A session runs and the deadline has not come: keep serving it."""
    OVERDUE = "overdue"
    """A session still runs at the deadline: restart anyway, ending it."""


@dataclass(frozen=True)
class PendingRestart:
    reason: str | None
    requested_at: datetime
    """When the first request came (wall clock, UTC)."""
    deadline: datetime | None
    """When the restart happens even if a session runs (wall clock, UTC); None: never."""
    due: float | None
    """The deadline on the monotonic clock."""

    def describe(self, waiting_for: Sequence[int]) -> dict[str, Any]:
        """The JSON shape of ``cpagent status``'s ``"restart"`` and of a restart's answer."""
        return {
            "reason": self.reason,
            "requested_at": iso(self.requested_at),
            "deadline": iso(self.deadline) if self.deadline is not None else None,
            "waiting_for": list(waiting_for),
        }


class RestartPlan:
    """The pending restart, if any (``max_wait_s`` 0: wait without bound)."""

    def __init__(
        self,
        max_wait_s: float,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._monotonic = monotonic
        self.pending: PendingRestart | None = None

    def request(self, reason: str | None) -> tuple[PendingRestart, bool]:
        """Record a request; return the pending restart and whether one was pending already
        (its deadline then stays, its reason is replaced)."""
        if self.pending is not None:
            self.pending = replace(self.pending, reason=reason)
            return self.pending, True
        now = self._clock()
        bounded = self.max_wait_s > 0
        self.pending = PendingRestart(
            reason=reason,
            requested_at=now,
            deadline=now + timedelta(seconds=self.max_wait_s) if bounded else None,
            due=self._monotonic() + self.max_wait_s if bounded else None,
        )
        return self.pending, False

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (never below 0); None without one or nothing pending."""
        if self.pending is None or self.pending.due is None:
            return None
        return max(0.0, self.pending.due - self._monotonic())

    def verdict(self, busy: Sequence[int]) -> Verdict:
        """What to do with the pending restart while ``busy`` connectors have sessions."""
        if self.pending is None:
            raise ValueError("no restart is pending")
        if not busy:
            return Verdict.NOW
        if self.seconds_left() == 0.0:
            return Verdict.OVERDUE
        return Verdict.WAIT
