"""The ordered outgoing pipeline both OCPP versions deliver through.

Durable messages are rows of the store's outbox, queued before they are sent and removed
only once the CSMS answered them; volatile ones (statuses, triggered messages) live in
memory and go when the connection goes. While a connection is up and the CSMS has accepted
the boot, :meth:`Delivery.run` feeds it the queue head, one CALL at a time (OCPP-J allows
one in flight).

A CALLERROR is retried up to ``attempts()`` times, ``retry_interval()`` times the attempt
number apart, then the message is kept in the store as failed (never silently deleted); a
message the CSMS does not answer is retried on the same schedule without limit, and an
answer that arrives late, while the next attempt waits, is taken instead of sending again.
What each version adds (filling in a transaction id, acting on an answer) comes through a
:class:`DeliveryPolicy`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ocpp.exceptions import OCPPError

from cpagent.store import OutboxRow, Store
from cpagent.systemd import journal_fields
from cpagent.timers import Changes, wait_due

log = logging.getLogger(__name__)


@dataclass
class Outgoing:
    action: str
    payload: dict[str, Any]
    row: OutboxRow | None = None

    @property
    def durable(self) -> bool:
        return self.row is not None


def item_fields(item: Outgoing) -> dict[str, Any]:
    """Journal fields of a log line about a queued message."""
    row = item.row
    return journal_fields(
        action=item.action,
        message_id=row.message_id if row else None,
        local_transaction_id=row.tx_local_id if row else None,
    )


class Caller(Protocol):
    async def call_payload(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        unique_id: str | None = None,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]: ...


class DeliveryPolicy(Protocol):
    """What one OCPP version decides about its queued messages."""

    def attempts(self) -> int:
        """How often a message the CSMS refuses (CALLERROR) is sent before it is set aside."""

    def retry_interval(self) -> int:
        """Seconds between attempts, multiplied by the attempt number."""

    async def final_payload(self, item: Outgoing) -> dict[str, Any] | None:
        """The payload to send now; None when ``item`` was set aside instead."""

    def on_result(self, item: Outgoing) -> Callable[[dict[str, Any]], None] | None:
        """What must happen the moment ``item``'s answer is read (before later frames)."""

    async def delivered(self, item: Outgoing, result: dict[str, Any]) -> None:
        """Act on the CSMS's answer to a durable ``item``, before its row is removed."""

    def validate_result(self, action: str, payload: dict[str, Any]) -> None:
        """Raise the OCPPError for an answer its schema refuses."""


class Delivery:
    def __init__(self, store: Store, policy: DeliveryPolicy, *, response_timeout: float) -> None:
        self.store = store
        self.policy = policy
        self.response_timeout = response_timeout
        self.pending: collections.deque[Outgoing] = collections.deque()
        self.failed_count = 0
        self.held: dict[str, int] = {}
        """Messages waiting in another OCPP version, per version."""
        self.last_sent = time.monotonic()
        """When the last CALL went out (monotonic): heartbeats are due after a quiet spell."""
        self.wake = Changes()
        """Notify when the retry interval changed: a waiting retry re-reads it."""
        self.queue_empty = asyncio.Event()
        self._changed = asyncio.Event()
        self._sending = asyncio.Lock()  # held from sending a queued message to recording it
        self._late: tuple[Outgoing, str, asyncio.Future[dict[str, Any]]] | None = None

    async def load(self, protocol: str) -> None:
        """Queue what the store holds for ``protocol`` (after a restart). Messages queued in
        another OCPP version (the data_dir of an agent that spoke it) stay in the store, are
        counted in :attr:`held` and go out when an agent speaks that version again."""
        self.failed_count = await self.store.run(self.store.failed_count)
        for row in await self.store.run(self.store.pending, protocol):
            self.pending.append(Outgoing(row.action, row.payload, row))
        counts = await self.store.run(self.store.pending_by_protocol)
        self.held = {version: n for version, n in counts.items() if version != protocol}
        for version, n in self.held.items():
            log.warning(
                "%d message(s) queued in OCPP %s are kept, not sent: they go out when the"
                " agent speaks OCPP %s again",
                n,
                version,
                version,
            )

    @property
    def depth(self) -> int:
        return sum(1 for item in self.pending if item.durable)

    def append(self, item: Outgoing) -> None:
        self.pending.append(item)
        self.queue_empty.clear()
        self._changed.set()

    def drop_volatile(self) -> None:
        """The connection is gone: what was not stored goes with it."""
        self.pending = collections.deque(i for i in self.pending if i.durable)

    async def run(self, cp: Caller) -> None:
        """Deliver the queue head first, one CALL at a time, for as long as ``cp`` lasts."""
        while True:
            if not self.pending:
                # Answered messages deleted without a sync go to disk before anyone waiting
                # for the empty queue goes on; something queued meanwhile is taken first.
                await self.store.settle_answered()
                if self.pending:
                    continue
                self.queue_empty.set()
                self._changed.clear()
                await self._changed.wait()
                continue
            item = self.pending[0]
            async with self._sending:
                payload = await self.policy.final_payload(item)
                if payload is None:
                    continue
                self.last_sent = time.monotonic()
                try:
                    result = await cp.call_payload(
                        item.action,
                        payload,
                        unique_id=item.row.message_id if item.row else None,
                        on_result=self.policy.on_result(item),
                    )
                except OCPPError as err:
                    why, give_up = f"CALLERROR {err.code}: {err.description}", True
                except TimeoutError:
                    why, give_up = "no answer", False
                else:
                    await self._delivered(item, result)
                    continue
            late = await self._retry_or_give_up(item, why, give_up=give_up)
            if late is not None:
                log.info(
                    "%s answered late; taking that answer", item.action, extra=item_fields(item)
                )
                async with self._sending:
                    await self._delivered(item, late)

    async def _retry_or_give_up(
        self, item: Outgoing, why: str, *, give_up: bool = True
    ) -> dict[str, Any] | None:
        """Wait before the next attempt. An answer to the unanswered attempt that arrives
        meanwhile (a slow CSMS) is returned, so the message is not sent again."""
        row = item.row
        if row is None:
            log.warning(
                "%s not delivered (%s); not retried", item.action, why, extra=item_fields(item)
            )
            self.pending.popleft()
            return None
        late: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if not give_up:  # listening from now: an answer may come while the attempt is counted
            # An answer to the unanswered attempt ends the wait like a changed interval.
            late.add_done_callback(lambda _: self.wake.notify())
            self._late = (item, row.message_id, late)
        attempts = await self.store.run(self.store.bump_attempts, row.seq)
        limit = max(1, self.policy.attempts())
        if give_up and attempts >= limit:
            await self.set_aside(item, f"refused {attempts} times, last: {why}")
            return None
        failed_at = time.monotonic()

        def delay() -> int:
            return self.policy.retry_interval() * min(attempts, limit)

        log.warning(
            "%s %s not delivered (%s); attempt %d, retrying in %d s",
            item.action,
            row.message_id,
            why,
            attempts,
            delay(),
            extra=item_fields(item),
        )
        try:
            await wait_due(
                lambda: 0 if late.done() else failed_at + delay() - time.monotonic(), self.wake
            )
        finally:
            self._late = None
        return late.result() if late.done() else None

    def accept_late_answer(self, unique_id: str, payload: dict[str, Any]) -> bool:
        """A CALLRESULT for a message that timed out and waits for its next attempt."""
        late = self._late
        if late is None or late[1] != unique_id or late[2].done():
            return False
        action = late[0].action
        try:
            self.policy.validate_result(action, payload)
        except OCPPError as err:
            log.warning(
                "late answer to %s %s is invalid: %s",
                action,
                unique_id,
                err,
                extra=journal_fields(action=action, message_id=unique_id),
            )
            return False
        on_result = self.policy.on_result(late[0])
        if on_result is not None:
            on_result(payload)
        late[2].set_result(payload)
        return True

    async def set_aside(self, item: Outgoing, why: str) -> None:
        """Keep a message the CSMS will not take as a failed row: never silently deleted."""
        assert item.row is not None
        log.error(
            "%s %s kept as failed and no longer sent: %s",
            item.action,
            item.row.message_id,
            why,
            extra=item_fields(item),
        )
        await self.store.run(self.store.fail, item.row.seq, why)
        self.failed_count += 1
        self.pending.popleft()

    async def _delivered(self, item: Outgoing, result: dict[str, Any]) -> None:
        row = item.row
        if row is not None:
            await self.policy.delivered(item, result)
            await self.store.remove_answered(row.seq)
        self.pending.popleft()

    async def drain(self, connected: bool, timeout: float) -> bool:
        """Wait until every queued message is delivered (before a reset or a shutdown)."""
        if not connected:
            return not self.pending
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue_empty.wait(), timeout)
        return not self.pending

    @contextlib.asynccontextmanager
    async def hold_calls(self) -> AsyncIterator[None]:
        """While held, no queued message is between its sending and its recorded delivery:
        the one in flight is answered and recorded first (waited for at most the response
        timeout), and the next does not start. A reconnect the agent decides itself holds
        this, so it never cuts a message that would then go out twice."""
        try:
            async with asyncio.timeout(self.response_timeout):
                await self._sending.acquire()
        except TimeoutError:
            yield
            return
        try:
            yield
        finally:
            self._sending.release()
