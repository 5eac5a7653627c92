"""Fixtures shared by the hardware and integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cpagent.testing.modbus_devices import NullModem


@pytest.fixture
async def null_modem() -> AsyncIterator[NullModem]:
    """A serial cable between two ptys: devices on ``path_a``, the client on ``path_b``."""
    async with NullModem() as modem:
        yield modem
