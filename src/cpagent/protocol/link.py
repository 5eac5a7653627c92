"""What both OCPP versions' adapters do the same way on a connection to the CSMS.

The boot (BootNotification until the CSMS accepts one, on the same connection), the
heartbeat, the durable queue and its delivery (:mod:`cpagent.protocol.delivery`), security
events (on disk in the security log and queued for the CSMS) and the link's part of
``cpagent status``. A version's adapter subclasses :class:`CsmsLink` and says how its
configuration holds the heartbeat interval and how its messages look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ocpp.exceptions import OCPPError

from cpagent.config import Config
from cpagent.exc import StoreError
from cpagent.protocol.delivery import Caller, Delivery, DeliveryPolicy, Outgoing
from cpagent.security.events import ROUTINE_EVENTS, SecurityEvent, SecurityEventType, SecurityLog
from cpagent.store import Store
from cpagent.systemd import journal_fields
from cpagent.timers import Changes, wait_due
from cpagent.timeutil import now_iso

log = logging.getLogger(__name__)


class CsmsLink:
    PROTOCOL = ""
    """The OCPP version the adapter's outbox rows are marked with."""

    def __init__(self, config: Config, store: Store, policy: DeliveryPolicy) -> None:
        self.config = config
        self.store = store
        self.delivery = Delivery(store, policy, response_timeout=config.csms.response_timeout_s)
        self.cp: Caller | None = None
        self.registration: str | None = None
        self.connected_since: str | None = None
        self.security_log: SecurityLog | None = None
        self.heartbeat_changes = Changes()
        """Notify when the heartbeat interval changed: the wait for the next re-reads it."""
        self._accepted = asyncio.Event()
        self._event_tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------- what a version says

    def boot_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    def heartbeat_interval(self) -> int:
        """Seconds between heartbeats (0: none)."""
        raise NotImplementedError

    def set_heartbeat_interval(self, seconds: int) -> None:
        """The interval a BootNotification answer gives, in force until the next start."""
        raise NotImplementedError

    def security_event_payload(self, event: SecurityEvent) -> dict[str, Any]:
        return event.payload()

    # --------------------------------------------------------------- the queue

    async def load_queue(self) -> None:
        await self.delivery.load(self.PROTOCOL)

    @property
    def queue_depth(self) -> int:
        return self.delivery.depth

    @property
    def failed_count(self) -> int:
        return self.delivery.failed_count

    async def _queue_durably(self, action: str, payload: dict[str, Any]) -> None:
        """Queue a message in the store (sent in order, kept until the CSMS answers)."""
        row = await self.store.run(self.store.enqueue, action, payload, protocol=self.PROTOCOL)
        self.delivery.append(Outgoing(row.action, row.payload, row))

    def send_triggered(self, action: str, payload: dict[str, Any]) -> None:
        """Queue a volatile message (TriggerMessage answers, report parts) behind what is
        already queued."""
        self.delivery.append(Outgoing(action, payload))

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued message is delivered (before a reset or a shutdown)."""
        return await self.delivery.drain(self.cp is not None, timeout)

    def hold_calls(self) -> contextlib.AbstractAsyncContextManager[None]:
        """See :meth:`Delivery.hold_calls`."""
        return self.delivery.hold_calls()

    def accept_late_answer(self, unique_id: str, payload: dict[str, Any]) -> bool:
        """A CALLRESULT for a message that timed out and waits for its next attempt."""
        return self.delivery.accept_late_answer(unique_id, payload)

    # ------------------------------------------------------------------- the boot

    @property
    def registered(self) -> bool:
        """Whether the CSMS accepted a BootNotification since the agent started."""
        return self._accepted.is_set()

    @property
    def accepted(self) -> bool:
        """Whether the CSMS's last answer to a BootNotification was Accepted. While it is
        not (Pending, Rejected, none yet), remote starts are refused."""
        return self.registration == "Accepted"

    async def _boot(self, cp: Caller) -> None:
        """BootNotification until the CSMS accepts one (or one a TriggerMessage asked for),
        on this connection. After Pending or Rejected the next one waits the answer's
        interval, after a CALLERROR or no answer ``[csms] boot_retry_s``: the connection is
        kept, since reconnecting would not change the CSMS's answer and would flood it with
        connections."""
        while not self.registered:
            try:
                result = await cp.call_payload("BootNotification", self.boot_payload())
            except (OCPPError, TimeoutError) as err:
                retry = self.config.csms.boot_retry_s
                log.warning(
                    "BootNotification failed (%s); retrying in %d s",
                    err,
                    retry,
                    extra=journal_fields(action="BootNotification"),
                )
            else:
                retry = self.boot_answered(result)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry):
                    await self._accepted.wait()

    def boot_answered(self, result: dict[str, Any]) -> int:
        """Take the CSMS's answer to a BootNotification, the agent's own or a triggered one.
        Returns the seconds to wait before the next one if it was not accepted: the
        answer's interval, or ``[csms] boot_retry_s`` when it gives none."""
        self.registration = result["status"]
        interval = int(result.get("interval", 0))
        if result["status"] == "Accepted":
            if interval > 0:
                self.set_heartbeat_interval(interval)
                self.heartbeat_changes.notify()
            log.info(
                "BootNotification accepted; heartbeat every %s s",
                self.heartbeat_interval(),
                extra=journal_fields(action="BootNotification"),
            )
            self._accepted.set()
            return 0
        retry = interval if interval > 0 else self.config.csms.boot_retry_s
        log.warning(
            "BootNotification %s; retrying in %d s",
            result["status"],
            retry,
            extra=journal_fields(action="BootNotification"),
        )
        return retry

    # --------------------------------------------------------------- heartbeat

    async def _heartbeat_loop(self, cp: Caller) -> None:
        """Heartbeat when nothing else was sent for the heartbeat interval; a changed
        interval takes effect at once."""

        def left() -> float | None:
            interval = self.heartbeat_interval()
            return self.delivery.last_sent + interval - time.monotonic() if interval > 0 else None

        while True:
            await wait_due(left, self.heartbeat_changes)
            await self.send_heartbeat(cp)

    async def send_heartbeat(self, cp: Caller) -> None:
        self.delivery.last_sent = time.monotonic()
        try:
            await cp.call_payload("Heartbeat", {})
        except (OCPPError, TimeoutError) as err:
            log.warning("Heartbeat failed: %s", err, extra=journal_fields(action="Heartbeat"))

    # ------------------------------------------------------------ security events

    async def security_event(self, kind: SecurityEventType, tech_info: str | None = None) -> None:
        """Record a security event: in the security log, and durably for the CSMS
        (SecurityEventNotification), like transaction messages."""
        event = SecurityEvent(kind, now_iso(), tech_info)
        log.log(
            logging.INFO if kind in ROUTINE_EVENTS else logging.WARNING,
            "security event %s%s",
            kind,
            f": {tech_info}" if tech_info else "",
            extra=journal_fields(action="SecurityEventNotification"),
        )
        if self.security_log is not None:
            try:
                await asyncio.to_thread(self.security_log.append, event)
            except OSError as err:
                log.error("security event %s not written to the security log: %s", kind, err)
        try:
            await self._queue_durably(
                "SecurityEventNotification", self.security_event_payload(event)
            )
        except StoreError as err:
            log.error("security event %s not queued for the CSMS: %s", kind, err)

    def report_security_event(self, kind: SecurityEventType, tech_info: str | None) -> None:
        """:meth:`security_event` for code that cannot wait (a connection attempt failing)."""
        task = asyncio.create_task(self.security_event(kind, tech_info), name="security-event")
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        return {
            "url": f"{self.config.csms.url}/{self.config.charge_point.id}",
            "connected": self.cp is not None,
            "connected_since": self.connected_since,
            "registration": self.registration,
        }
