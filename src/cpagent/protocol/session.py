"""The websocket session to the CSMS: connect, keep it up, reconnect forever.

Version-neutral: it owns the transport (subprotocol, pings, backoff with full jitter, the
simulated network switch) and hands each open connection to a protocol-specific ``serve``
coroutine. Where and how to connect (URL, TLS, basic auth: the security profile) comes
from :class:`~cpagent.security.connection.ConnectionSecurity` at every attempt, which also
learns how each attempt went, to confirm or fall back from a newly set profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode
from websockets.typing import Subprotocol

from cpagent.config import CsmsSection
from cpagent.security.connection import ConnectionSecurity, Endpoint, ProfileUnusable
from cpagent.timers import Changes, wait_due

log = logging.getLogger(__name__)


class NetworkSwitch:
    """The charger's network link as far as the agent can cut it (``cpagent sim network``).

    Real deployments leave it up; the simulator uses it to make outages on demand.
    """

    def __init__(self) -> None:
        self._up = asyncio.Event()
        self._up.set()
        self._down = asyncio.Event()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def set(self, up: bool) -> None:
        if up:
            self._down.clear()
            self._up.set()
        else:
            self._up.clear()
            self._down.set()

    async def wait_up(self) -> None:
        await self._up.wait()

    async def wait_down(self) -> None:
        await self._down.wait()


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, initial * 2**attempt)]."""
    return random.uniform(0, min(cap, initial * (2 ** min(attempt, 30))))


class Session:
    def __init__(
        self,
        csms: CsmsSection,
        charge_point_id: str,
        subprotocol: str,
        serve: Callable[[ClientConnection], Coroutine[Any, Any, None]],
        network: NetworkSwitch,
        ping_interval: Callable[[], int],
        security: ConnectionSecurity,
        hold_calls: Callable[[], contextlib.AbstractAsyncContextManager[None]] = (
            contextlib.nullcontext
        ),
        on_attempt: Callable[[bool], None] = lambda _established: None,
    ) -> None:
        """``hold_calls`` keeps the protocol from having a CALL in flight while held: a
        reconnect the agent asks for itself waits for the answer on the wire rather than
        cutting it (the message would go out twice). ``on_attempt(established)`` hears how
        each connection attempt ended (the CSMS accepted the station, or not)."""
        self.csms = csms
        self.charge_point_id = charge_point_id
        self.subprotocol = subprotocol
        self.serve = serve
        self.network = network
        self.ping_interval = ping_interval
        self.security = security
        self.hold_calls = hold_calls
        self.on_attempt = on_attempt
        self.connected = False
        self.last_error: str | None = None
        self._drop = asyncio.Event()
        self._established = False
        self._changes = Changes()

    @property
    def url(self) -> str:
        """The websocket URL of the security profile in force."""
        return self.security.url()

    def reconnect(self) -> None:
        """Drop the connection (if any) and connect again, with the settings then in force."""
        self._drop.set()

    def settings_changed(self) -> None:
        """A setting read at each use changed: a new ``ping_interval`` applies to the open
        connection at once."""
        self._changes.notify()

    def established(self) -> None:
        """The protocol took the current connection into full use (OCPP: the CSMS accepted
        the charge point). Only such a connection starts the backoff afresh: one the CSMS
        opens and then refuses or drops keeps it growing, so the agent never reconnects in
        a tight loop."""
        self._established = True

    async def run(self) -> None:
        attempt = 0
        while True:
            await self.network.wait_up()
            self._drop.clear()
            try:
                # Off the loop: reading the identity may ask a PKCS#11 token.
                endpoint = await asyncio.to_thread(self.security.endpoint)
                established = await self._connect_once(endpoint)
            except ProfileUnusable as err:
                self._note_failure(str(err))
                established = False
            except (OSError, InvalidHandshake, TimeoutError, ssl.SSLError) as err:
                self._note_failure(describe(err))
                established = False
                if self.security.failed(err):
                    attempt = 0
                    continue
            self.on_attempt(established)
            if established:
                attempt = 0
            delay = backoff_delay(attempt, self.csms.reconnect_initial_s, self.csms.reconnect_max_s)
            attempt += 1
            log.info("reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    def _note_failure(self, why: str) -> None:
        if why != self.last_error:
            log.warning("cannot connect to %s: %s", self.url, why)
        self.last_error = why

    async def _connect_once(self, endpoint: Endpoint) -> bool:
        """One connection's life; True if the protocol declared it :meth:`established`."""
        self._established = False
        async with connect(
            endpoint.url,
            ssl=endpoint.ssl_context,
            subprotocols=[Subprotocol(self.subprotocol)],
            additional_headers=endpoint.headers,
            ping_interval=None,  # see _keepalive
            open_timeout=self.csms.response_timeout_s,
            close_timeout=2,
            max_size=2**22,
        ) as ws:
            if ws.subprotocol != self.subprotocol:
                log.warning("CSMS did not confirm subprotocol %s; continuing", self.subprotocol)
            log.info("connected to %s (security profile %d)", endpoint.url, endpoint.profile)
            self.connected = True
            self.last_error = None
            self.security.connected()
            serve = asyncio.create_task(self.serve(ws), name="ocpp-connection")
            keepalive = asyncio.create_task(self._keepalive(ws), name="websocket-keepalive")
            cut = asyncio.create_task(self.network.wait_down(), name="network-down")
            drop = asyncio.create_task(self._drop.wait(), name="reconnect-request")
            try:
                await asyncio.wait(
                    {serve, keepalive, cut, drop}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                self.connected = False
                err = await self._end(ws, (serve, keepalive), cut, drop)
            if err is not None:
                log.warning("connection ended: %s", describe(err))
            else:
                log.warning("connection to %s closed", endpoint.url)
            return self._established

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping the CSMS every ``ping_interval()`` seconds (0: never), and end when a pong
        does not come within as long: the connection is dead. A changed interval counts at
        once, from the last ping."""
        last = time.monotonic()

        def left() -> float | None:
            interval = self.ping_interval()
            return last + interval - time.monotonic() if interval > 0 else None

        while True:
            await wait_due(left, self._changes)
            last, timeout = time.monotonic(), self.ping_interval()
            pong = await ws.ping()
            try:
                async with asyncio.timeout(timeout):
                    await pong
            except TimeoutError:
                raise TimeoutError(f"no pong within {timeout} s") from None

    async def _end(
        self,
        ws: ClientConnection,
        protocol: tuple[asyncio.Task[None], ...],
        cut: asyncio.Task[None],
        drop: asyncio.Task[bool],
    ) -> BaseException | None:
        """End one connection: stop its tasks and close it with the code that says why
        (RFC 6455 §7.4.1). 1000 (normal) for a reconnect the agent decided; 1001 (going
        away) when the session itself is cancelled, the agent stopping or restarting;
        1011 (internal error) only when the ``protocol`` tasks (serving, keepalive) gave up
        on the connection while it was still open, an error. A cut network sends nothing.
        Returns the error that ended one of them, if any."""
        held: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        code, reason = CloseCode.GOING_AWAY, "charge point going away"
        network_down = cut.done()
        if network_down:
            log.warning("network down: dropping the CSMS connection")
            ws.transport.abort()
        elif drop.done():
            log.info("reconnecting to the CSMS with new connection settings")
            held = self.hold_calls()
            code, reason = CloseCode.NORMAL_CLOSURE, "reconnecting"
        elif any(task.done() for task in protocol):
            code, reason = CloseCode.INTERNAL_ERROR, "protocol error"
        async with held:
            tasks = (*protocol, cut, drop)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        if not network_down:
            await ws.close(code, reason)
        for err in results[: len(protocol)]:
            if isinstance(err, BaseException) and not isinstance(err, asyncio.CancelledError):
                return err
        return None


def describe(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"the CSMS's TLS certificate is not trusted: {err.verify_message}"
    if isinstance(err, InvalidStatus):
        return f"HTTP {err.response.status_code} from the CSMS"
    if isinstance(err, ConnectionClosed):
        return f"closed ({err.rcvd.code if err.rcvd else 'no close frame'})"
    if isinstance(err, ExceptionGroup):
        return "; ".join(describe(e) for e in err.exceptions)
    text = str(err) or type(err).__name__
    return text
