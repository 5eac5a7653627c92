"""Calls to a CSMS that answers late, without sockets: the charge point's CALL and the
adapter's send queue."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from cpagent.config import Config
from cpagent.protocol.delivery import Outgoing
from cpagent.protocol.v16.adapter import V16Adapter
from cpagent.protocol.v16.charge_point import ChargePoint
from cpagent.protocol.v16.config_keys import SUPPORTED_FEATURE_PROFILES, ConfigurationKeys
from cpagent.store import Store
from tests.unit.test_profile_persistence import agent_config, no_reset

WAIT_S = 30.0
"""Guard for a wait on an event: reaching it fails the test, so it is generous."""


def adapter_on(config: Config, store: Store, **keys: Any) -> V16Adapter:
    """The adapter a running agent has on ``store``, with OCPP configuration ``keys``."""
    configuration = ConfigurationKeys(
        initial=keys,
        persisted=store.config_keys(),
        computed={
            "NumberOfConnectors": str(config.charge_point.connectors),
            "SupportedFeatureProfiles": SUPPORTED_FEATURE_PROFILES,
        },
    )
    return V16Adapter(config, store, configuration, meter_type="sim", request_reset=no_reset)


class SlowCsms:
    """A connection on which every CALL times out. While the CALL is out, the store is busy
    with something else (``busy`` holds its worker), as on a slow SD card."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sent: list[tuple[str, str | None]] = []
        self.timed_out = asyncio.Event()
        self.busy = threading.Event()
        self._holding: set[asyncio.Future[bool]] = set()

    async def call_payload(
        self, action: str, payload: dict[str, Any], *, unique_id: str | None = None, **_: Any
    ) -> dict[str, Any]:
        self.sent.append((action, unique_id))
        self._holding.add(asyncio.ensure_future(self.store.run(self.busy.wait, WAIT_S)))
        self.timed_out.set()
        raise TimeoutError(f"no answer to {action}")

    async def close(self) -> None:
        self.busy.set()
        await asyncio.gather(*self._holding)


async def test_an_answer_that_comes_while_the_attempt_is_counted_is_taken(
    tmp_path: Path,
) -> None:
    """The late answer arrives before the agent has counted the failed attempt in the store:
    it is still the answer, and the message is not sent again."""
    config = agent_config(tmp_path)
    store = Store(config.storage.data_dir)
    store.open()
    csms = SlowCsms(store)
    try:
        adapter = adapter_on(config, store, TransactionMessageRetryInterval=3600)
        event = {"type": "StartupOfTheDevice", "timestamp": "2025-01-01T00:00:00Z"}
        row = store.enqueue("SecurityEventNotification", event)
        await adapter.load_queue()
        sender = asyncio.create_task(adapter.delivery.run(csms))
        try:
            async with asyncio.timeout(WAIT_S):
                await csms.timed_out.wait()
            # The CALLRESULT comes in now, while the store has yet to count the attempt.
            assert adapter.accept_late_answer(row.message_id, {})
            csms.busy.set()
            async with asyncio.timeout(WAIT_S):  # the retry would come after an hour
                await adapter.delivery.queue_empty.wait()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        assert csms.sent == [("SecurityEventNotification", row.message_id)]
        assert store.pending() == []
    finally:
        await csms.close()
        store.close()


class Wire:
    """The charge point's side of a connection: what it sends, announced as it goes. With
    ``late`` set, the next CALL sent gets that answer as its response time runs out."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.charge_point: ChargePoint | None = None
        self.late: tuple[float, dict[str, Any]] | None = None

    async def send(self, frame: str) -> None:
        message = json.loads(frame)
        self.sent.put_nowait(message)
        if self.late is not None and self.charge_point is not None:
            # Due no later than the CALL's timeout, which is set after the frame is sent.
            loop = asyncio.get_running_loop()
            after_s, payload = self.late
            self.late = None
            loop.call_at(loop.time() + after_s, arrive, self.charge_point, [3, message[1], payload])


def arrive(charge_point: ChargePoint, frame: list[Any]) -> None:
    """Hand ``frame`` to the charge point at once, in the caller's turn of the event loop
    (a CALLRESULT is routed without waiting for anything)."""
    routing = charge_point.route_message(json.dumps(frame))
    try:
        routing.send(None)
    except StopIteration:
        return
    routing.close()
    raise AssertionError("routing a CALLRESULT waited for something")


async def test_an_answer_that_comes_as_the_call_times_out_is_not_the_next_calls(
    tmp_path: Path,
) -> None:
    """The answer and the timeout fall due in the same turn of a busy event loop: the
    answer is taken by its CALL, and never by the next one."""
    config = agent_config(tmp_path)
    store = Store(config.storage.data_dir)
    store.open()
    try:
        adapter = adapter_on(config, store)
        wire = Wire()
        response_timeout = 0.05
        charge_point = ChargePoint("CP001", wire, adapter, response_timeout=response_timeout)
        wire.charge_point = charge_point

        beat = {"currentTime": "2025-01-01T00:00:00Z"}
        wire.late = (response_timeout, beat)
        first = asyncio.create_task(charge_point.call_payload("Heartbeat", {}))
        async with asyncio.timeout(WAIT_S):
            await wire.sent.get()
        time.sleep(response_timeout * 2)  # noqa: ASYNC251 - the loop is busy past both
        async with asyncio.timeout(WAIT_S):
            assert await first == beat  # it came in time, just

        second = asyncio.create_task(
            charge_point.call_payload(
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
            )
        )
        async with asyncio.timeout(WAIT_S):
            _, second_id, _, _ = await wire.sent.get()
        assert not second.done(), "the next CALL took the earlier CALL's answer"
        arrive(charge_point, [3, second_id, {}])
        async with asyncio.timeout(WAIT_S):
            assert await second == {}
    finally:
        store.close()


class AnsweringCsms:
    """A connection that answers every CALL at once; as it answers the ``hold_at``-th, it
    first gives the store's worker something to wait on (``busy``)."""

    def __init__(self, store: Store, hold_at: int) -> None:
        self.store = store
        self.hold_at = hold_at
        self.sent: list[str] = []
        self.got: dict[str, asyncio.Event] = {}
        self.busy = threading.Event()
        self._holding: set[asyncio.Future[bool]] = set()

    async def call_payload(self, action: str, payload: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.sent.append(action)
        if len(self.sent) == self.hold_at:
            self._holding.add(asyncio.ensure_future(self.store.run(self.busy.wait, WAIT_S)))
        self.got.setdefault(action, asyncio.Event()).set()
        return {}

    async def close(self) -> None:
        self.busy.set()
        await asyncio.gather(*self._holding)


async def test_a_message_queued_while_the_deletions_settle_is_sent(tmp_path: Path) -> None:
    """When the queue runs empty the delivery waits for the store to take the answered
    messages' deletions to disk; a message queued during that wait goes out, it is not left
    until something else is queued."""
    config = agent_config(tmp_path)
    store = Store(config.storage.data_dir)
    store.open()
    csms = AnsweringCsms(store, hold_at=3)
    settling = asyncio.Event()
    settle = store.settle_answered

    async def announced_settle() -> None:
        settling.set()
        await settle()

    store.settle_answered = announced_settle  # type: ignore[method-assign]
    try:
        adapter = adapter_on(config, store)
        event = {"type": "StartupOfTheDevice", "timestamp": "2025-01-01T00:00:00Z"}
        for _ in range(3):  # the first deleted by the worker, the others at once
            store.enqueue("SecurityEventNotification", event)
        await adapter.load_queue()
        sender = asyncio.create_task(adapter.delivery.run(csms))
        try:
            async with asyncio.timeout(WAIT_S):
                await settling.wait()  # the worker is held: the settling waits for it
            adapter.delivery.append(Outgoing("Heartbeat", {}))
            csms.busy.set()
            async with asyncio.timeout(WAIT_S):
                await csms.got.setdefault("Heartbeat", asyncio.Event()).wait()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        assert csms.sent == ["SecurityEventNotification"] * 3 + ["Heartbeat"]
        assert store.pending() == []
    finally:
        await csms.close()
        store.close()
