"""Every device test leaves no thread and no asyncio task behind: a driver that leaks one
would leak it on a charger running for months."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("asyncio_")
    ]  # asyncio_N: the event loop's executor workers, shut down with the loop
    assert not leaked, leaked


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)  # let cancelled callbacks settle
    leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
    assert not leaked, leaked
