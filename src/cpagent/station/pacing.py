"""Pacing a periodic job whose cycles may take longer than its interval.

A connector's poll reads its meter and board over a bus that can be slow: an SDM630
read value by value over RS-485 at 9600 baud takes about 1.5 s, longer than the default
1 s poll interval. Such polls must not queue behind each other, nor pile up a backlog
to catch up: the next one starts when the last ends, as fast as the bus allows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

monotonic: Callable[[], float] = time.monotonic
"""The clock a :class:`Pacer` reads unless given one (tests replace it)."""


class Pacer:
    """Paces the cycles of one periodic job: each starts ``interval`` after the previous
    one started, or at once when that one took longer (one late start, never a burst of
    catch-up cycles). The first cycle that takes longer than its interval is logged once,
    as a warning naming ``what`` and the time it took.
    """

    def __init__(self, what: str, *, clock: Callable[[], float] | None = None) -> None:
        self.what = what
        self._clock = clock or monotonic
        self._started: float | None = None
        self.overran = False
        """Whether a cycle has taken longer than its interval (it was logged)."""

    def started(self) -> None:
        """A cycle starts now."""
        self._started = self._clock()

    def wait_s(self, interval_s: float) -> float:
        """How long to wait before the next cycle: the whole interval before the first."""
        if self._started is None:
            return interval_s
        took = self._clock() - self._started
        if took > interval_s and not self.overran:
            self.overran = True
            log.warning(
                "%s took %.2f s, longer than its %g s interval; from now on the next one "
                "starts as soon as one ends",
                self.what,
                took,
                interval_s,
            )
        return max(0.0, interval_s - took)
