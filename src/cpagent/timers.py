"""Waits on intervals that may change while they run (configuration keys such as
HeartbeatInterval or ClockAlignedDataInterval): a new value takes effect at once, not
after the wait begun under the old one has run out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Changes:
    """Tells every waiter at once that what it waits on has changed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """End every :meth:`wait` in progress."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None) -> bool:
        """Wait for the next :meth:`notify`, at most ``timeout`` seconds (None: no limit).
        True if notified."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that comes as the event is set, and the waiter would outlive its owner.
            async with asyncio.timeout(timeout):
                await event.wait()
                return True
        return False


async def wait_due(left: Callable[[], float | None], changes: Changes) -> None:
    """Return once ``left()``, the seconds until something is due (None: never), is no
    longer positive. It is asked again after every change, so a changed interval counts
    at once."""
    while (seconds := left()) is None or seconds > 0:
        await changes.wait(seconds)
