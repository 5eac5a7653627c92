"""The adapter's send queue against a CSMS that answers late, without sockets."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from cpagent.protocol.v16.adapter import SUPPORTED_FEATURE_PROFILES, V16Adapter
from cpagent.protocol.v16.config_keys import ConfigurationKeys
from cpagent.store import Store
from tests.unit.test_profile_persistence import agent_config, no_reset

WAIT_S = 30.0
"""Guard for a wait on an event: reaching it fails the test, so it is generous."""


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
        self, action: str, payload: dict[str, Any], *, unique_id: str | None = None
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
        keys = ConfigurationKeys(
            initial={"TransactionMessageRetryInterval": 3600},
            persisted=store.config_keys(),
            computed={
                "NumberOfConnectors": "2",
                "SupportedFeatureProfiles": SUPPORTED_FEATURE_PROFILES,
            },
        )
        adapter = V16Adapter(config, store, keys, meter_type="sim", request_reset=no_reset)
        event = {"type": "StartupOfTheDevice", "timestamp": "2025-01-01T00:00:00Z"}
        row = store.enqueue("SecurityEventNotification", event)
        await adapter.load_queue()
        sender = asyncio.create_task(adapter._send_loop(csms))  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(WAIT_S):
                await csms.timed_out.wait()
            # The CALLRESULT comes in now, while the store has yet to count the attempt.
            assert adapter.accept_late_answer(row.message_id, {})
            csms.busy.set()
            async with asyncio.timeout(WAIT_S):  # the retry would come after an hour
                await adapter._queue_empty.wait()
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        assert csms.sent == [("SecurityEventNotification", row.message_id)]
        assert store.pending() == []
    finally:
        await csms.close()
        store.close()
