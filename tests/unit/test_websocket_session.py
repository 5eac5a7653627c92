"""The websocket session against the loopback CSMS, with a stand-in for the protocol: how
each way a connection ends is told to the CSMS (the close code, RFC 6455 §7.4.1), and that
only a connection the protocol declared established starts the backoff afresh."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from cpagent.config import CsmsSection
from cpagent.protocol import session as session_module
from cpagent.protocol.session import NetworkSwitch, Session
from cpagent.security.connection import ConnectionSecurity
from cpagent.testing import LoopbackCsms

Serve = Callable[[ClientConnection], Coroutine[Any, Any, None]]


class Trials:
    """The trial store ConnectionSecurity keeps its state in (nothing on trial here)."""

    def get_state(self, key: str) -> str | None:
        return None

    def set_state(self, key: str, value: str) -> None:
        pass


def make_session(url: str, serve: Serve, *, ping_interval: int = 0) -> Session:
    csms = CsmsSection(
        url=url,
        ocpp_version="1.6",
        password=None,
        reconnect_initial_s=0.01,
        reconnect_max_s=0.05,
        response_timeout_s=5.0,
        boot_retry_s=1,
    )
    security = ConnectionSecurity(
        base_url=url,
        charge_point_id="CP1",
        certificates=lambda: pytest.fail("no certificate is needed on profile 0"),
        allow_basic_auth_without_tls=False,
        value=lambda _name: None,
        restore=lambda _name, _previous: None,
        reconnect=lambda: None,
        report=lambda _kind, _info: None,
        trials=Trials(),
    )
    return Session(csms, "CP1", "ocpp1.6", serve, NetworkSwitch(), lambda: ping_interval, security)


@pytest.fixture
async def csms() -> AsyncIterator[LoopbackCsms]:
    async with LoopbackCsms() as server:
        yield server


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_close_codes_say_why_the_connection_ended(csms: LoopbackCsms) -> None:
    failing = [False, False, True, False]  # per connection: the protocol fails on the third
    served = asyncio.Queue[int]()
    count = itertools.count()

    async def serve(ws: ClientConnection) -> None:
        index = next(count)
        served.put_nowait(index)
        if failing[index]:
            raise RuntimeError("the protocol gave up on this connection")
        async for _ in ws:  # until the connection closes
            pass

    session = make_session(csms.url, serve)
    run = asyncio.create_task(session.run())
    try:
        assert await asyncio.wait_for(served.get(), 10) == 0
        session.reconnect()  # new connection settings: a normal closure
        assert await asyncio.wait_for(served.get(), 10) == 1
        await csms.disconnect()  # the CSMS closes: the agent echoes its code
        assert await asyncio.wait_for(served.get(), 10) == 2  # fails: an internal error
        assert await asyncio.wait_for(served.get(), 10) == 3
    finally:
        await stopped(run)  # the agent stops or restarts: going away
    assert await csms.wait_closed(4) == [1000, 1000, 1011, 1001]


async def test_backoff_restarts_only_after_an_established_connection(
    csms: LoopbackCsms, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []
    delays = asyncio.Queue[None]()

    def backoff(attempt: int, initial: float, cap: float) -> float:
        attempts.append(attempt)
        delays.put_nowait(None)
        return 0.0

    monkeypatch.setattr(session_module, "backoff_delay", backoff)
    accept_from = 3  # the connections before it are opened, then refused by the protocol
    served = 0

    async def serve(_ws: ClientConnection) -> None:
        nonlocal served
        if served >= accept_from:
            session.established()
        served += 1

    session = make_session(csms.url, serve)
    run = asyncio.create_task(session.run())
    try:
        for _ in range(accept_from + 2):
            await asyncio.wait_for(delays.get(), 10)
    finally:
        await stopped(run)
    # Handshakes that led nowhere kept the backoff growing; the established one reset it.
    assert attempts[: accept_from + 2] == [0, 1, 2, 0, 0]


async def test_a_connection_whose_pongs_stop_is_given_up(csms: LoopbackCsms) -> None:
    served = asyncio.Queue[None]()

    async def serve(ws: ClientConnection) -> None:
        served.put_nowait(None)
        await asyncio.Event().wait()

    session = make_session(csms.url, serve, ping_interval=1)
    run = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(served.get(), 10)
        await csms.wait_pings(1)  # pinged, and answered
        assert len(csms.subprotocols) == 1
        # The CSMS stops reading: no pong comes back, and the agent connects anew.
        deaf = csms.connections["CP1"]
        deaf.transport.pause_reading()
        await asyncio.wait_for(served.get(), 15)
        assert len(csms.subprotocols) == 2
        deaf.transport.abort()  # it would not notice the agent has gone
    finally:
        await stopped(run)
